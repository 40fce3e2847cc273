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
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, TextIO

from ._version import __version__

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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

Windows follow the capture's timestamps: --max-period cuts a window when
that much capture time has passed since its first packet; --max-conns cuts
it when a new connection would exceed the bound.  Bytes are IP bytes (from
the IP header on; link headers and Ethernet padding are not counted).
"""


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table: aligned columns for people (default); jsonl: one JSON object per "
        "window, with the field names of Tailscale's network log",
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
    read.set_defaults(handler=_cmd_read)

    live = commands.add_parser(
        "capture",
        help="count live traffic on a network interface (Linux, needs root or CAP_NET_RAW)",
        description="Count packets and bytes per connection on a network interface, "
        "using an AF_PACKET socket (Linux). Packets the host sends are tx, packets it "
        "receives are rx. Windows are printed as they close; the last one when the "
        "capture ends (--duration, --count or Ctrl-C).",
    )
    live.add_argument(
        "--interface",
        "-i",
        required=True,
        metavar="IF",
        help="interface to capture on (eth0, lo, ...)",
    )
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


def _writer(args: argparse.Namespace, out: TextIO) -> Any:
    from ._output import JsonlWriter, TableWriter

    if args.format == "jsonl":
        return JsonlWriter(out, args.top if args.top is not None else 0)
    return TableWriter(out, args.top if args.top is not None else 20)


def _open_output(stack: ExitStack, path: str | None) -> TextIO:
    if path is None or path == "-":
        return sys.stdout
    try:
        return stack.enter_context(open(path, "w", encoding="utf-8"))
    except OSError as exc:
        raise _Fail(f"cannot write {path}: {exc.strerror}") from None


def _errmsg(exc: OSError, path: str) -> str:
    return f"{path}: {exc.strerror or exc}"


# -- read --------------------------------------------------------------------------------------


def _cmd_read(args: argparse.Namespace) -> int:
    from ._output import Progress, merge_windows
    from .capture import CaptureError, local_networks, open_capture
    from .capture.linktypes import describe_linktype, linktype_name
    from .capture.windows import Replayer, Window

    local = local_networks(args.local) if args.local else None
    period_ns = round(args.max_period * _NS) if args.max_period else 0
    failure: str | None = None
    summaries: list[str] = []
    with ExitStack() as stack:
        out = _open_output(stack, args.output)
        writer = _writer(args, out)
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

        # Without window options the one window is the whole run.
        title = None if (period_ns or args.max_conns) else "Total"

        def on_window(window: Window) -> None:
            if args.total:
                collected.append(window)
                return
            progress.clear()
            writer.window(window, title=title)

        replayer = Replayer(
            on_window, max_period_ns=period_ns, max_conns=args.max_conns
        )
        for (path, name), size in zip(paths, sizes):
            try:
                reader = open_capture(path, name=name, local=local)
            except OSError as exc:
                failure = _errmsg(exc, name)
                break
            except CaptureError as exc:
                failure = str(exc)
                break
            progress.current = lambda r=reader: (r.name, r.offset, replayer.packets)
            try:
                with reader:
                    replayer.feed(reader, progress.update)
            except CaptureError as exc:
                failure = str(exc)
            except OSError as exc:
                failure = _errmsg(exc, name)
            finally:
                progress.file_done(size or 0)
            kinds = (
                ", ".join(dict.fromkeys(linktype_name(lt) for lt in reader.linktypes))
                or "no interfaces"
            )
            summary = (
                f"{name}: {reader.format}, {kinds}, {reader.packets} IP packets, "
                f"{reader.skipped} non-IP frames skipped"
            )
            if reader.truncated:
                summary += f", {reader.truncated} cut by the snap length"
            summaries.append(summary)
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
        if args.total:
            merged = merge_windows(collected)
            if merged is not None:
                writer.window(merged, title="Total")
        if replayer.windows == 0 and summaries and args.format == "table":
            writer.note("No IP packets.")
        if summaries and args.format == "table":
            writer.note("")
            for line in summaries:
                writer.note(line)
    if failure:
        raise _Fail(failure)
    return 0


def _size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- capture -----------------------------------------------------------------------------------


def _ns(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _cmd_capture(args: argparse.Namespace) -> int:
    if not sys.platform.startswith("linux"):
        raise _Fail(
            "live capture needs Linux (AF_PACKET); elsewhere, capture with "
            "'tcpdump -w FILE' and run 'connstats read FILE'"
        )
    from . import Statistics
    from ._live_linux import LiveCaptureError, capture, open_socket
    from ._output import merge_windows
    from .capture.windows import Window

    with ExitStack() as stack:
        try:
            sock = open_socket(args.interface)
        except LiveCaptureError as exc:
            raise _Fail(str(exc)) from None
        stack.callback(sock.close)
        out = _open_output(stack, args.output)
        writer = _writer(args, out)
        lock = threading.Lock()
        collected: list[Window] = []

        title = None if (args.max_period or args.max_conns) else "Total"

        def dump(
            start: datetime,
            end: datetime,
            virtual: dict[Any, Any],
            physical: dict[Any, Any],
        ) -> None:
            # Called from the Statistics flush thread.
            window = Window(_ns(start), _ns(end), virtual, physical)
            with lock:
                if args.total:
                    collected.append(window)
                else:
                    writer.window(window, title=title)

        stats = Statistics(
            max_period=args.max_period or 0, max_conns=args.max_conns, dump=dump
        )
        limits = []
        if args.duration:
            limits.append(f"for {args.duration:g} s")
        if args.count:
            limits.append(f"for {args.count} packets")
        until = " or ".join(limits) if limits else "until Ctrl-C"
        print(
            f"connstats: capturing on {args.interface} {until}",
            file=sys.stderr,
            flush=True,
        )
        try:
            result = capture(
                sock,
                stats.update_tx_virtual,
                stats.update_rx_virtual,
                duration=args.duration,
                count=args.count,
            )
        finally:
            stats.shutdown()
        with lock:
            if args.total:
                merged = merge_windows(collected)
                if merged is not None:
                    writer.window(merged, title="Total")
            if args.format == "table":
                writer.note("")
                writer.note(
                    f"{args.interface}: {result.packets} IP packets, "
                    f"{result.skipped} non-IP frames skipped"
                )
    return 0


# -- entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _Fail as exc:
        _flush_quietly()
        print(f"connstats: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _flush_quietly()
        print("connstats: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `connstats read big.pcap | head`: the reader went away; say nothing.
        _silence_stdout()
        return 1


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _silence_stdout()


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that this
    # does not print a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
