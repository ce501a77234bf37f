"""eventwire.serialization"""
