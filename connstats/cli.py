"""The ``connstats`` command: per-connection traffic tables from captures.

``connstats read [FILE...]`` replays pcap/pcapng files (or the built-in
sample) through the counting core, with windows on the capture's own clock;
``connstats capture --interface IF`` counts live traffic on Linux.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from importlib import resources
from typing import Any, TextIO

from ._clock import datetime_of
from ._readopts import add_read_options
from ._version import __version__

_NS = 1_000_000_000
_SAMPLE = "sample.pcap"
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class _Fail(Exception):
    """A one-line error for the user: printed as ``connstats: MESSAGE``, exit 1."""


# -- argument types ------------------------------------------------------------------


def _seconds(text: str) -> float:
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


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def _cidr(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP network (examples: 10.0.0.0/8, fd00::/8, 192.0.2.7)"
        ) from None
    return text


# -- parser ----------------------------------------------------------------------------

_READ_EPILOG = """\
examples:
  connstats read                          the built-in sample capture
  connstats read trace.pcapng --top 5     the five biggest connections
  connstats read trace.pcap --local 10.0.0.0/8 --max-period 60s
  tcpdump -i eth0 -w - | connstats read - --max-period 10 --format jsonl
  connstats read trace.pcap.gz --conversations --sort packets
  connstats read a.pcap b.pcapng --group-by host --total
  connstats read trace.pcap --proto udp --port 53 --times --format csv
  connstats read trace.pcap --bpf 'tcp port 443 and not host 10.0.0.1'

Windows follow the capture's timestamps: --max-period cuts a window when
that much capture time has passed since its first packet; --max-conns cuts
it when a new connection would exceed the bound.  Bytes are IP bytes (from
the IP header on; link headers and Ethernet padding are not counted).
gzip, bzip2, xz and zstd captures are read as they are.  Rows labelled
'undecoded' (no addresses could be read), 'ip' (no usable transport header)
and 'fragment' (IP fragments after the first) are explained under the table.
"""


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=("table", "jsonl", "csv"),
        default="table",
        help="table: aligned columns for people (default); jsonl: one JSON object per "
        "window, with the field names of Tailscale's network log; csv: one header "
        "line, then one line per row of every window",
    )
    group.add_argument(
        "--total",
        action="store_true",
        help="one table for the whole run instead of one per window",
    )
    group.add_argument(
        "--top",
        type=_count,
        metavar="N",
        help="show the N biggest connections by bytes (default: 20 in tables, all in "
        "jsonl; 0: all)",
    )
    group.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write to FILE instead of standard output",
    )
    group.add_argument(
        "--export",
        metavar="URL",
        help="also send every window as IPFIX flow records to a collector: "
        "ipfix://HOST:PORT (UDP) or ipfix+tcp://HOST:PORT",
    )


def _add_window_options(parser: argparse.ArgumentParser, clock: str) -> None:
    group = parser.add_argument_group("windows")
    group.add_argument(
        "--max-period",
        type=_seconds,
        metavar="SECONDS",
        help=f"end a window after this much {clock}: 10, 2.5, 500ms, 5m, 1h",
    )
    group.add_argument(
        "--max-conns",
        type=_count,
        default=0,
        metavar="N",
        help="end a window when a new connection would make it hold more than N (0: no bound)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connstats",
        description="Per-connection packet and byte counts from capture files and live "
        "interfaces, computed by the connstats core.",
        epilog="Run 'connstats COMMAND --help' for the options of a command.",
    )
    parser.add_argument(
        "--version", action="version", version=f"connstats {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    read = commands.add_parser(
        "read",
        help="count the connections in pcap/pcapng files",
        description="Count packets and bytes per connection in pcap or pcapng files\n"
        "(the format is detected from the content). With no FILE, read a small\n"
        "sample capture shipped with connstats.",
        epilog=_READ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    read.add_argument(
        "files", nargs="*", metavar="FILE", help="capture files, '-' for standard input"
    )
    read.add_argument(
        "--local",
        action="append",
        type=_cidr,
        default=[],
        metavar="CIDR",
        help="a local network (repeatable): packets to it count as received (rx), so "
        "both directions of a conversation merge into one connection, as a "
        "forwarder sees them. Default: every packet counts as sent (tx)",
    )
    _add_window_options(read, "capture time (packet timestamps)")
    _add_output_options(read)
    add_read_options(read)
    read.set_defaults(handler=_cmd_read)

    live = commands.add_parser(
        "capture",
        help="count live traffic on a network interface (Linux, needs root or CAP_NET_RAW)",
        description="Count packets and bytes per connection on a network interface, "
        "through a memory-mapped AF_PACKET ring (Linux). Packets the host sends are "
        "tx, packets it receives are rx; on loopback each packet counts once. Windows "
        "are printed as they close; the last one when the capture ends (--duration, "
        "--count or Ctrl-C), with the kernel's drop count.",
    )
    from ._live_cmd import add_arguments as _add_capture_arguments

    _add_capture_arguments(live)
    live.add_argument(
        "--duration", type=_seconds, metavar="SECONDS", help="stop after this long"
    )
    live.add_argument(
        "--count", "-c", type=_positive, metavar="N", help="stop after N IP packets"
    )
    _add_window_options(live, "wall-clock time")
    _add_output_options(live)
    live.set_defaults(handler=_cmd_capture)
    return parser


# -- shared plumbing -----------------------------------------------------------------------


def _writer(args: argparse.Namespace, out: TextIO, options: Any = None) -> Any:
    from ._output import CsvWriter, JsonlWriter, TableWriter

    if args.format == "jsonl":
        return JsonlWriter(out, args.top if args.top is not None else 0, options)
    if args.format == "csv":
        return CsvWriter(out, args.top if args.top is not None else 0, options)
    return TableWriter(out, args.top if args.top is not None else 20, options)


def _open_output(stack: ExitStack, path: str | None) -> Any:
    from ._outstream import GuardedOutput

    if path is None or path == "-":
        return GuardedOutput(sys.stdout, "standard output")
    try:
        stream = stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as exc:
        raise _Fail(f"cannot write {path}: {exc.strerror}") from None
    return GuardedOutput(stream, path)


def _exporter(args: argparse.Namespace, stack: ExitStack) -> Any:
    """The IPFIX exporter of ``--export``, closed (with a summary) on leaving."""
    if not args.export:
        return None
    from .export import IPFIXExporter

    try:
        exporter = IPFIXExporter(args.export)
    except (TypeError, ValueError) as exc:
        raise _Fail(f"--export: {exc}") from None

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


def _errmsg(exc: OSError, path: str) -> str:
    return f"{path}: {exc.strerror or exc}"


# -- read --------------------------------------------------------------------------------------


def _cmd_read(args: argparse.Namespace) -> int:
    from ._libpcap import FilterError, LibpcapMissingError
    from ._output import Progress, merge_windows
    from ._readopts import report_options
    from ._readrun import FileTotals, open_reader
    from ._times import DEFAULT_RESOLUTION_NS, TimedWindows
    from .capture import CaptureError, local_networks
    from .capture.linktypes import describe_linktype, linktype_name
    from .capture.windows import Replayer, Window

    local = local_networks(args.local) if args.local else None
    period_ns = round(args.max_period * _NS) if args.max_period else 0
    options = report_options(args, 0 if args.format != "table" else 20)
    if options.times and args.max_conns:
        raise _Fail(
            "--times (and sorting by times) cannot be combined with --max-conns"
        )
    failure: str | None = None
    summaries: list[str] = []
    totals: list[FileTotals] = []
    with ExitStack() as stack:
        out = _open_output(stack, args.output)
        writer = _writer(args, out, options)
        paths: list[tuple[str, str]] = []  # (path to open, name shown)
        if args.files:
            paths = [(p, "<stdin>" if p == "-" else p) for p in args.files]
        else:
            sample = stack.enter_context(
                resources.as_file(resources.files("connstats") / "data" / _SAMPLE)
            )
            paths = [(str(sample), f"{_SAMPLE} (built-in sample)")]
        sizes = [_size(p) for p, _ in paths]
        total_size = (
            sum(s for s in sizes if s is not None)
            if all(s is not None for s in sizes)
            else None
        )
        progress = Progress(sys.stderr, total_size, enabled=_isatty(sys.stderr))
        collected: list[Window] = []
        collected_times: dict[Any, list[int]] = {}
        exporter = _exporter(args, stack)

        # Without window options the one window is the whole run.
        title = None if (period_ns or args.max_conns) else "Total"

        def show(window: Window, times: dict[Any, list[int]] | None = None) -> None:
            if exporter is not None:
                exporter(
                    datetime_of(window.start_ns),
                    datetime_of(window.end_ns),
                    window.virtual,
                    window.physical,
                )
            if args.total:
                collected.append(window)
                if times:
                    for conn, (first, last) in times.items():
                        seen = collected_times.get(conn)
                        if seen is None:
                            collected_times[conn] = [first, last]
                        else:
                            seen[0] = min(seen[0], first)
                            seen[1] = max(seen[1], last)
                return
            progress.clear()
            writer.window(window, title=title, times=times)

        if options.times:
            resolution = (
                round(args.resolution * _NS)
                if args.resolution
                else DEFAULT_RESOLUTION_NS
            )
            if period_ns:
                resolution = min(resolution, period_ns)
            timed = TimedWindows(show, period_ns)
            replayer = Replayer(timed.sub_window, max_period_ns=resolution)
        else:
            timed = None
            replayer = Replayer(show, max_period_ns=period_ns, max_conns=args.max_conns)
        count_bytes = len(paths) > 1
        for (path, name), size in zip(paths, sizes):
            try:
                reader = open_reader(path, name, local=local, bpf=args.bpf)
            except OSError as exc:
                failure = _errmsg(exc, name)
                break
            except (CaptureError, ValueError) as exc:
                failure = str(exc)
                break
            tally = FileTotals(reader, count_bytes=count_bytes)
            progress.current = lambda r=reader: (r.name, r.offset, replayer.packets)
            try:
                with reader:
                    replayer.feed(tally, progress.update)  # type: ignore[arg-type]
            except (CaptureError, FilterError) as exc:
                failure = str(exc)
            except LibpcapMissingError as exc:
                failure = f"--bpf: {exc}"
            except OSError as exc:
                failure = _errmsg(exc, name)
            finally:
                progress.file_done(size or 0)
            cut = getattr(getattr(reader, "compressed_stream", None), "truncated", None)
            if cut and not failure:
                failure = f"{name}: {cut}"
            totals.append(tally)
            kinds = (
                ", ".join(dict.fromkeys(linktype_name(lt) for lt in reader.linktypes))
                or "no interfaces"
            )
            summaries.append(f"{name}: {reader.format}, {kinds}, {tally.summary()}")
            if reader.unsupported:
                types = ", ".join(
                    describe_linktype(lt) for lt in reader.unsupported_linktypes
                )
                print(
                    f"connstats: warning: {name}: skipped {reader.unsupported} "
                    f"packets of interfaces with unsupported link type {types}",
                    file=sys.stderr,
                )
            if failure:
                break
        progress.clear()
        replayer.finish()
        if timed is not None:
            timed.flush()
        if args.total:
            merged = merge_windows(collected)
            if merged is not None:
                writer.window(
                    merged, title="Total", times=collected_times if timed else None
                )
        if replayer.windows == 0 and summaries and args.format == "table":
            writer.note("No IP packets.")
        if summaries and args.format == "table":
            writer.note("")
            for line in summaries:
                writer.note(line)
            if len(totals) > 1:
                writer.note(FileTotals.combined(totals))
    if failure:
        raise _Fail(failure)
    return 0


def _size(path: str) -> int | None:
    """Bytes the reader will go through, for progress; None when unknown."""
    from ._compress import detect

    if path == "-":
        return None
    try:
        with open(path, "rb") as f:
            if detect(f.read(6)):
                return None  # the reader counts decompressed bytes
            return os.fstat(f.fileno()).st_size
    except OSError:
        return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- capture -----------------------------------------------------------------------------------


def _cmd_capture(args: argparse.Namespace) -> int:
    from ._live_cmd import CaptureFailed, run

    try:
        return run(args, _open_output, _writer, _exporter)
    except CaptureFailed as exc:
        raise _Fail(str(exc)) from None


# -- entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    from ._outstream import EXIT_BROKEN_PIPE, OutputError, flush_stdout

    try:
        status = handler(args)
        failed = flush_stdout()
        if failed is not None:
            raise failed
        return status
    except _Fail as exc:
        flush_stdout()
        print(f"connstats: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        flush_stdout()
        print("connstats: interrupted", file=sys.stderr)
        return 130
    except OutputError as exc:
        # `connstats read big.pcap | head`: the reader went away, which is
        # not an error; say nothing and exit as a tool killed by SIGPIPE.
        flush_stdout()
        if exc.broken_pipe:
            return EXIT_BROKEN_PIPE
        print(f"connstats: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        flush_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
