"""Share of a capture corpus that ``connstats`` reads without a link-type error.

Usage: ``python scripts/corpus_linktypes.py DIR [DIR...]`` (every ``*.pcap``
and ``*.pcapng`` below the directories; the tcpdump project's ``tests/``
folder is the corpus of the figure in docs/cli.md).  It prints one line per
link type (files, and how many of them were refused or had packets skipped
for it), then the totals.  A file counts as read without a link-type error
when opening and reading it raised no ``UnsupportedLinkTypeError`` and not
every one of its packets was skipped for an unsupported link type; other
errors (corrupt or truncated files, which the corpus has on purpose) are
counted separately.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from connstats.capture import CaptureError, UnsupportedLinkTypeError, open_capture
from connstats.capture.linktypes import describe_linktype
from connstats.capture.reader import Stop


def classify(path: Path) -> tuple[str, list[int]]:
    """("ok" | "linktype" | "other-error", link types declared by the file)."""
    linktypes: list[int] = []
    try:
        with open_capture(str(path)) as reader:
            linktypes = reader.linktypes
            while reader.read().stop is not Stop.EOF:
                pass
    except UnsupportedLinkTypeError as exc:
        return "linktype", linktypes or [exc.linktype]
    except CaptureError:
        return "other-error", linktypes
    unsupported = getattr(reader, "unsupported", 0)
    if unsupported and not reader.packets and not reader.skipped:
        return "linktype", linktypes
    return "ok", linktypes


def main(argv: list[str]) -> int:
    files = sorted(
        p
        for d in argv
        for p in Path(d).rglob("*")
        if p.suffix in (".pcap", ".pcapng") and p.is_file()
    )
    outcome: Counter[str] = Counter()
    per_type: Counter[int] = Counter()
    refused: Counter[int] = Counter()
    for path in files:
        result, linktypes = classify(path)
        outcome[result] += 1
        for lt in set(linktypes):
            per_type[lt] += 1
            if result == "linktype":
                refused[lt] += 1
    for lt, n in per_type.most_common():
        print(f"{describe_linktype(lt):32} {n:4} files, {refused[lt]:4} refused")
    total = len(files)
    ok = total - outcome["linktype"]
    print(
        f"{total} captures: {ok} ({100 * ok / max(total, 1):.1f}%) read without a "
        f"link-type error; {outcome['linktype']} refused for their link type; "
        f"{outcome['other-error']} of the former stop on another error "
        "(corrupt or truncated input)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
