"""Example service: orders -> billing -> notifications on eventwire (run demo.py to see it)."""
