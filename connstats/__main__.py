"""``python -m connstats``: the same as the ``connstats`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
