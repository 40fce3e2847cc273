"""Argument types of the command line, and the one-line error it prints.

Shared by every subcommand's parser (:mod:`connstats.cli.main`,
:mod:`connstats.cli.read_options`, :mod:`connstats.cli.capture`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from typing import Any

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size().columns`` finds it:
    ``COLUMNS`` if set, else standard output's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """Help that reads well at any terminal width (80 columns and less).

    Descriptions and epilogs are paragraphs separated by blank lines, each
    filled to the width; indented lines (examples), and a line ending in
    ``:`` above them, are kept as written.  Words are never broken at a hyphen, so option values such as
    ``tx-bytes`` and option names stay whole.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
        **more: Any,  # what later Pythons add (3.14: color)
    ) -> None:
        # argparse makes a formatter for every add_argument and, without a
        # width, imports shutil (and with it bz2, lzma and zlib) for the
        # terminal's: start-up that `connstats read` pays on every run.
        if width is None:
            width = terminal_columns() - 2  # argparse's own margin
        super().__init__(prog, indent_increment, max_help_position, width, **more)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(
            " ".join(text.split()),
            width,
            break_on_hyphens=False,
            break_long_words=False,
        )

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in re.split(r"\n\s*\n", text.strip("\n")):
            lines = block.splitlines()
            head, rest = lines[0], lines[1:]
            if (head[:1].isspace() or head.endswith(":")) and all(
                line[:1].isspace() for line in rest
            ):
                # indented lines, or a heading ("examples:") over them: as written
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(
                    textwrap.fill(
                        " ".join(block.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_on_hyphens=False,
                        break_long_words=False,
                    )
                )
        return "\n\n".join(blocks)


class Fail(Exception):
    """A one-line error for the user: printed as ``connstats: MESSAGE``, exit 1."""


def seconds(text: str) -> float:
    """``10``, ``2.5``, ``500ms``, ``30s``, ``5m``, ``1h`` -> seconds (> 0)."""
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|ms|s|m|h)?\s*", text
    )
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (examples: 10, 2.5, 500ms, 5m)"
        )
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the duration must be greater than 0"
        )
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def positive(text: str) -> int:
    value = count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def tunnels(text: str) -> int:
    """``vxlan,gre`` (or ``all``) -> the mask of tunnels to decapsulate."""
    from .._protocols import TUNNELS, tunnel_mask

    try:
        mask = tunnel_mask(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of tunnels (from: {', '.join(TUNNELS)}, all)"
        ) from None
    if not mask:
        raise argparse.ArgumentTypeError("name at least one tunnel (or all)")
    return mask


def is_tunnel_list(text: str) -> bool:
    """Does ``text`` read as a --decap list (rather than a file name)?"""
    from .._protocols import TUNNELS

    parts = [p.strip().lower() for p in text.split(",")]
    return bool(parts) and all(p in TUNNELS or p == "all" for p in parts)


def attach_optional_lists(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``--decap FILE`` is the option without its list, then a file: make it
    ``--decap=all FILE`` (argparse would take FILE as the list).  A word that
    reads as a list (``--decap vxlan,gre``) stays the option's."""
    out = list(argv)
    for i, word in enumerate(out):
        if word in options and (i + 1 == len(out) or not is_tunnel_list(out[i + 1])):
            out[i] = f"{word}=all"
    return out


def cidr(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP network (examples: 10.0.0.0/8, fd00::/8, 192.0.2.7)"
        ) from None
    return text
