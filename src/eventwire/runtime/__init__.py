"""eventwire.runtime"""
