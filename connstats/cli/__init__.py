# PYTHON_ARGCOMPLETE_OK (the marker argcomplete's global completion looks for)
"""The ``connstats`` command line: ``connstats read`` and ``connstats capture``.

Only :func:`main` (and :func:`build_parser`, for documentation tools) is
public; the modules below are the command's own, one per command
(:mod:`.read`, :mod:`.capture`) and one per output format
(:mod:`.out_table`, :mod:`.out_jsonl`, :mod:`.out_csv`).
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
