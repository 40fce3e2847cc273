"""Where a command's windows go: the output stream, the format writer, the exporter.

Shared by ``connstats read`` and ``connstats capture``.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any, TextIO

from .arguments import Fail
from .outstream import create_private

#: Exit status of a run that completed but could not export some flow
#: records (--export: collector down or refusing, records not encodable).
EXIT_NOT_EXPORTED = 4


def make_writer(args: argparse.Namespace, out: TextIO, options: Any = None) -> Any:
    # only the module of the format asked for (start-up time)
    if args.format == "parquet":
        from .out_parquet import ParquetWriter

        return ParquetWriter(
            args.output,
            args.top if args.top is not None else 0,
            options,
            community_id=args.community_id,
        )
    if args.format == "jsonl":
        from .out_jsonl import JsonlWriter

        return JsonlWriter(out, args.top if args.top is not None else 0, options)
    if args.format == "csv":
        from .out_csv import CsvWriter

        return CsvWriter(out, args.top if args.top is not None else 0, options)
    from .out_table import TableWriter

    return TableWriter(out, args.top if args.top is not None else 20, options)


def open_output(stack: ExitStack, path: str | None, fmt: str = "") -> Any:
    from .outstream import GuardedOutput

    if fmt == "parquet":
        # the Parquet writer opens its own (binary) file; text goes nowhere
        return GuardedOutput(sys.stdout, "standard output")
    if path is None or path == "-":
        return GuardedOutput(sys.stdout, "standard output")
    try:
        stream = stack.enter_context(create_private(path))
    except OSError as exc:
        raise Fail(f"cannot write {path}: {exc.strerror}") from None
    return GuardedOutput(stream, path)


def make_exporter(args: argparse.Namespace, stack: ExitStack) -> Any:
    """The IPFIX exporter of ``--export``, closed (with a summary) on leaving."""
    if not args.export:
        return None
    from ..export import IPFIXExporter

    try:
        exporter = IPFIXExporter(args.export)
    except (TypeError, ValueError) as exc:
        raise Fail(f"--export: {exc}") from None

    def close() -> None:
        exporter.close()
        print(
            f"connstats: exported {exporter.records_sent} flow records in "
            f"{exporter.messages_sent} IPFIX messages to {args.export} "
            f"({exporter.records_not_sent} not sent, {exporter.export_errors} errors)",
            file=sys.stderr,
        )

    stack.callback(close)
    return exporter


def export_status(exporter: Any) -> int:
    """0, or EXIT_NOT_EXPORTED (and a line saying so) if records were not sent.

    Call it once the exporter is closed (its counts are then final).
    """
    if exporter is None or not exporter.records_not_sent:
        return 0
    print(
        f"connstats: {exporter.records_not_sent} flow records were not exported "
        f"(exit status {EXIT_NOT_EXPORTED})",
        file=sys.stderr,
    )
    return EXIT_NOT_EXPORTED


def errmsg(exc: OSError, path: str) -> str:
    return f"{path}: {exc.strerror or exc}"
