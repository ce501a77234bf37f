"""eventwire.cli"""
