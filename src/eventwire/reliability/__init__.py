"""eventwire.reliability"""
