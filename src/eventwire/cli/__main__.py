"""CLI layer: ``python -m eventwire.cli`` runs the ``eventwire`` command without the script."""

from __future__ import annotations

from eventwire.cli.main import main

if __name__ == "__main__":
    main()
