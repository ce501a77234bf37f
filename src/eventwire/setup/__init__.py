"""eventwire.setup"""
