"""Testing layer: tools for testing eventwire services and adapters (conformance suite).

Import submodules explicitly (``eventwire.testing.conformance``); this package imports
nothing so that ``import eventwire`` never loads pytest.
"""
