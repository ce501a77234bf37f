"""eventwire.testing"""
