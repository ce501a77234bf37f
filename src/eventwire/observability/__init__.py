"""eventwire.observability"""
