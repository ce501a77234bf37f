"""eventwire.testing.conformance"""
