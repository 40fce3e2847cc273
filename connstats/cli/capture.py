"""``connstats capture``: its options and its run (cli.py only delegates here).

Live capture is Linux-only (AF_PACKET); on any other platform the command
says so, naming the platform, before touching the network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any, BinaryIO, TextIO

from .._clock import ns_of
from .arguments import Fail

#: Exit status of a capture that completed but lost packets in the kernel,
#: with --fail-on-drop (1: error, 2: usage, 130: Ctrl-C).
EXIT_DROPPED = 3

_SIZE_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_PLATFORMS = {"darwin": "macOS", "win32": "Windows", "cygwin": "Cygwin"}


class CaptureFailed(Exception):
    """A one-line error for the user (cli.py prints it and exits 1)."""


def _size(text: str) -> int:
    """``64`` (MiB), ``512k``, ``64M``, ``1G`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size (examples: 64 (MiB), 512k, 256M, 1G)"
        )
    value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be greater than 0")
    return value


def _millis(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]+)\s*(ms)?\s*", text)
    if not match or not 1 <= int(match.group(1)) <= 60000:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a block timeout in milliseconds (1..60000)"
        )
    return int(match.group(1))


def _interface_names(**_: Any) -> list[str]:
    """Shell completion of ``-i`` (argcomplete calls it): this host's interfaces."""
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except OSError:
        names = []
    return [*names, "any"]


def add_arguments(live: argparse.ArgumentParser) -> None:
    """The capture-specific options (interfaces, filter, ring, drops, tee)."""
    from ..capture._consts import (
        DEFAULT_BLOCK_SIZE,
        DEFAULT_BLOCK_TIMEOUT_MS,
        DEFAULT_RING_SIZE,
        MIB,
    )

    interface = live.add_argument(
        "--interface",
        "-i",
        required=True,
        action="append",
        metavar="IF",
        help="interface to capture on (eth0, lo, ...); repeat for several; "
        "'any' for every interface (Linux cooked capture)",
    )
    interface.completer = _interface_names  # type: ignore[attr-defined]
    flt = live.add_argument_group(
        "capture filter",
        "Run by the kernel before a packet reaches the ring. The values of one "
        "option are alternatives; different options must all match.",
    )
    flt.add_argument("--host", action="append", default=[], metavar="ADDR",
                     help="source or destination address ADDR")  # fmt: skip
    flt.add_argument("--net", action="append", default=[], metavar="CIDR",
                     help="source or destination address in CIDR")  # fmt: skip
    flt.add_argument("--port", action="append", default=[], metavar="N",
                     help="TCP, UDP or SCTP source or destination port N")  # fmt: skip
    flt.add_argument("--proto", action="append", default=[], metavar="P",
                     help="IP protocol: number or name (tcp, udp, icmp, ...)")  # fmt: skip
    flt.add_argument(
        "--bpf",
        metavar="EXPR",
        help="a tcpdump filter expression, compiled by libpcap (needs libpcap "
        "installed; packets start at the IP header, so no link-layer primitives); "
        "combined with the options above by 'and'",
    )
    ring = live.add_argument_group("capture ring")
    ring.add_argument(
        "--ring-size",
        type=_size,
        default=DEFAULT_RING_SIZE,
        metavar="SIZE",
        help=f"memory shared with the kernel for packets not yet counted "
        f"(default {DEFAULT_RING_SIZE // MIB} MiB; 512k, 256M, 1G); larger rides out "
        "longer stalls",
    )
    ring.add_argument(
        "--block-size",
        type=_size,
        default=DEFAULT_BLOCK_SIZE,
        metavar="SIZE",
        help=f"the ring is handed over in blocks of this size (default "
        f"{DEFAULT_BLOCK_SIZE // MIB} MiB; a multiple of the page size)",
    )
    ring.add_argument(
        "--block-timeout",
        type=_millis,
        default=DEFAULT_BLOCK_TIMEOUT_MS,
        metavar="MS",
        help=f"hand a block over at the latest this many milliseconds after its "
        f"first packet, full or not (default {DEFAULT_BLOCK_TIMEOUT_MS})",
    )
    live.add_argument(
        "--fail-on-drop",
        action="store_true",
        help=f"exit with status {EXIT_DROPPED} if the kernel dropped any packet",
    )
    live.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while capturing: "
        "totals per traffic kind, protocol and address pair, and the capture's and "
        "windows' health (needs prometheus_client: pip install 'connstats[prometheus]'; "
        "port 0 picks a free port, printed on stderr)",
    )
    live.add_argument(
        "--write",
        "-w",
        metavar="FILE.pcapng",
        help="also write every counted packet to a pcapng file (raw IP, with its "
        "direction, epb_flags); 'connstats read FILE' gives the same counts. A new "
        "file is created readable by its owner only (mode 0600). An "
        "--output FILE ending in .pcapng means the same",
    )


def platform_error() -> str | None:
    """The message for platforms without live capture, or None on Linux."""
    if sys.platform.startswith("linux"):
        return None
    name = _PLATFORMS.get(sys.platform, sys.platform)
    if sys.platform.startswith(("freebsd", "openbsd", "netbsd", "dragonfly")):
        name = sys.platform.rstrip("0123456789")
    return (
        f"live capture is not supported on {name}: it needs Linux (AF_PACKET). "
        "Capture with 'tcpdump -w FILE' (or 'tcpdump -w - | connstats read -') "
        "and count with 'connstats read FILE'"
    )


def _program(args: argparse.Namespace) -> list[tuple[int, int, int, int]] | None:
    from ..capture import bpf

    try:
        parsed = bpf.parse_filter(args.host, args.net, args.port, args.proto)
    except bpf.FilterError as exc:
        raise CaptureFailed(str(exc)) from None
    program = bpf.compile_filter(parsed) if parsed else None
    if args.bpf:
        from ..capture import _libpcap

        try:
            with _libpcap.compile_filter(args.bpf, 101) as compiled:
                expr = compiled.instructions
        except _libpcap.LibpcapMissingError as exc:
            raise CaptureFailed(
                f"--bpf: {exc} (or use --host/--net/--port/--proto, which need no libpcap)"
            ) from None
        except _libpcap.FilterError as exc:
            raise CaptureFailed(f"--bpf: {exc}") from None
        program = bpf.conjoin(program, expr) if program else list(expr)
    return program


class _Status:
    """Counters shared between the capture loop and the flush thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.packets = 0
        self.received = 0
        self.dropped = 0
        self.reported_drops = 0
        self.next_report = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "interface": self.name,
            "packets": self.packets,
            "kernelReceived": self.received,
            "kernelDrops": self.dropped,
        }


def _listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (port 0: any free port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise CaptureFailed(
            f"--metrics: expected HOST:PORT or [IPV6]:PORT, got {text!r} "
            "(for example 127.0.0.1:9464, or 0.0.0.0:9464 to serve every interface)"
        )
    return host, int(port_text)


class _CaptureCollector:
    """The capture's own counters, for ``--metrics`` (read at scrape time)."""

    def __init__(self, status: _Status) -> None:
        self.status = status

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        status = self.status
        for name, text, value in (
            ("connstats_capture_packets", "IP packets counted.", status.packets),
            (
                "connstats_capture_kernel_received",
                "Packets the kernel passed to the capture ring.",
                status.received,
            ),
            (
                "connstats_capture_kernel_dropped",
                "Packets the kernel dropped because the capture ring was full.",
                status.dropped,
            ),
        ):
            family = CounterMetricFamily(name, text, labels=["interface"])
            family.add_metric([status.name], value)
            yield family


def _check_metrics(address: str) -> tuple[str, int]:
    # Before the capture opens: a bad address or a missing library is a
    # one-line error, not a half-started capture.
    where = _listen_address(address)
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise CaptureFailed(
            "--metrics needs prometheus_client: pip install 'connstats[prometheus]'"
        ) from None
    return where


def _serve_metrics(
    address: str, where: tuple[str, int], stack: ExitStack, status: _Status
) -> Any:
    """Start ``--metrics``' HTTP server (stopped on leaving ``stack``); returns
    the Totals that the windows go to."""
    import prometheus_client

    from ..export import prometheus
    from ..metrics import Totals

    host, port = where

    totals = Totals()
    # A registry of its own: the scrape shows the capture, not whatever else
    # the process registered globally.
    registry = prometheus_client.CollectorRegistry()
    prometheus.register(totals, registry)
    registry.register(_CaptureCollector(status))
    try:
        server, thread = prometheus_client.start_http_server(
            port, addr=host, registry=registry
        )
    except OSError as exc:
        raise CaptureFailed(
            f"--metrics: cannot listen on {address}: {exc.strerror or exc}"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack.callback(stop)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"connstats: serving Prometheus metrics at http://{shown}:{bound}/metrics",
        file=sys.stderr,
        flush=True,
    )
    return totals


def run(
    args: argparse.Namespace,
    open_output: Callable[[ExitStack, str | None, str], TextIO],
    make_writer: Callable[[argparse.Namespace, TextIO, Any], Any],
    make_exporter: Callable[[argparse.Namespace, ExitStack], Any],
) -> int:
    """Run ``connstats capture``; returns the exit status."""
    message = platform_error()
    if message:
        raise CaptureFailed(message)
    from .. import Statistics, __version__
    from ..capture._live import LiveCaptureError, capture, open_source
    from ..capture._pcapng_out import statistics, write_header
    from ..capture.windows import Window
    from .out_jsonl import window_message
    from .output import merge_windows
    from .outstream import create_private
    from .sinks import export_status

    write_path = args.write
    if write_path is None and args.output and args.output.endswith(".pcapng"):
        write_path, args.output = args.output, None
    program = _program(args)
    metrics_at = _check_metrics(args.metrics) if args.metrics else None
    with ExitStack() as stack:
        try:
            source = open_source(
                args.interface,
                program=program,
                ring_size=args.ring_size,
                block_size=args.block_size,
                block_timeout_ms=args.block_timeout,
                tee=write_path is not None,
            )
        except LiveCaptureError as exc:
            raise CaptureFailed(str(exc)) from None
        stack.callback(source.close)
        tee: BinaryIO | None = None
        if write_path is not None:
            try:
                tee = stack.enter_context(create_private(write_path, "wb"))
            except OSError as exc:
                raise CaptureFailed(
                    f"cannot write {write_path}: {exc.strerror}"
                ) from None
            write_header(tee, source.name, f"connstats {__version__}")
        out = open_output(stack, args.output, args.format)
        from .output import ReportOptions

        top = (
            args.top if args.top is not None else (20 if args.format == "table" else 0)
        )
        writer = make_writer(
            args, out, ReportOptions(top=top, community_id=args.community_id)
        )
        if hasattr(writer, "close"):
            stack.callback(writer.close)
        exporter = make_exporter(args, stack)
        jsonl = args.format == "jsonl"
        lock = threading.Lock()
        collected: list[Window] = []
        status = _Status(source.name)
        totals = (
            _serve_metrics(args.metrics, metrics_at, stack, status)
            if metrics_at is not None
            else None
        )
        title = None if (args.max_period or args.max_conns) else "Total"

        def show(window: Window, label: str | None) -> None:
            if jsonl:
                msg = window_message(
                    window, args.top or 0, community_id=args.community_id
                )
                msg["capture"] = status.as_dict()
                out.write(json.dumps(msg, separators=(",", ":")) + "\n")
                out.flush()
            else:
                writer.window(window, title=label)
                writer.note(
                    f"capture so far: {status.packets} packets counted, "
                    f"{status.dropped} dropped by the kernel"
                )

        def dump(
            start: datetime,
            end: datetime,
            virtual: dict[Any, Any],
            physical: dict[Any, Any],
        ) -> None:
            # Called from the Statistics flush thread.
            if exporter is not None:
                exporter(start, end, virtual, physical)
            if totals is not None:
                totals(start, end, virtual, physical)
            window = Window(ns_of(start), ns_of(end), virtual, physical)
            with lock:
                if args.total:
                    collected.append(window)
                else:
                    show(window, title)

        def tick(result: Any) -> None:
            status.packets = result.packets
            status.received = result.kernel.received
            status.dropped = result.kernel.dropped
            now = time.monotonic()
            if status.dropped > status.reported_drops and now >= status.next_report:
                print(
                    f"connstats: the kernel dropped {status.dropped - status.reported_drops} "
                    f"packets ({status.dropped} so far): the ring was full",
                    file=sys.stderr,
                    flush=True,
                )
                status.reported_drops = status.dropped
                status.next_report = now + 1.0

        stats = Statistics(
            max_period=args.max_period or 0,
            max_conns=args.max_conns,
            dump=dump,
            # Parquet rows carry first/last seen: the wall-clock time of the
            # update that counted the packet (the ring hands packets over
            # within a block timeout of their arrival)
            track_times=args.format == "parquet",
        )
        if totals is not None:
            totals.watch(stats)
        limits = []
        if args.duration:
            limits.append(f"for {args.duration:g} s")
        if args.count:
            limits.append(f"for {args.count} packets")
        until = " or ".join(limits) if limits else "until Ctrl-C"
        print(
            f"connstats: capturing on {source.name} {until}",
            file=sys.stderr,
            flush=True,
        )
        try:
            result = capture(
                source,
                stats,
                duration=args.duration,
                count=args.count,
                tee=tee,
                tick=tick,
                decap=args.decap or 0,
            )
            tick(result)
        finally:
            stats.shutdown()
        if tee is not None:
            tee.write(
                statistics(
                    time.time_ns(),
                    result.kernel.received,
                    result.kernel.dropped,
                    result.packets,
                )
            )
        with lock:
            if args.total:
                merged = merge_windows(collected)
                if merged is not None:
                    show(merged, "Total")
            summary = (
                f"{source.name}: {result.packets} IP packets counted, "
                f"{result.skipped} non-IP frames skipped"
            )
            if result.loopback_copies:
                summary += (
                    f", {result.loopback_copies} loopback copies not counted twice"
                )
            if result.truncated:
                summary += (
                    f", {result.truncated} larger than a block (cut short, counted "
                    "by their IP length)"
                )
            if args.decap:
                from .read import tunnel_summary

                summary += ", " + tunnel_summary(result.tunnels, result.bad_tunnels)
            summary += (
                f"; kernel: {result.kernel.received} received, "
                f"{result.kernel.dropped} dropped"
            )
            if jsonl:
                out.write(
                    json.dumps(
                        {
                            "captureSummary": {
                                **status.as_dict(),
                                "bytes": result.bytes,
                                "skipped": result.skipped,
                                "loopbackCopies": result.loopback_copies,
                                "truncated": result.truncated,
                                "mode": source.mode,
                                "interrupted": result.interrupted,
                                **(
                                    {
                                        "tunnels": result.tunnels,
                                        "badTunnels": result.bad_tunnels,
                                    }
                                    if args.decap
                                    else {}
                                ),
                            }
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
                out.flush()
            elif args.format in ("csv", "parquet"):
                # CSV rows stay rows: the summary goes to stderr
                print(summary, file=sys.stderr, flush=True)
            else:
                writer.note("")
                writer.note(summary)
    if result.error:
        raise CaptureFailed(result.error)
    if result.kernel.dropped:
        print(
            f"connstats: WARNING: the kernel dropped {result.kernel.dropped} of "
            f"{result.kernel.received} packets (the capture ring was full); the "
            "counts above miss them. A larger --ring-size, a capture filter or a "
            "less loaded machine helps",
            file=sys.stderr,
            flush=True,
        )
        if args.fail_on_drop:
            return EXIT_DROPPED
    return export_status(exporter)


def command(args: argparse.Namespace) -> int:
    """``connstats capture``: the command, with failures as one-line errors."""
    from .sinks import make_exporter, make_writer, open_output

    try:
        return run(args, open_output, make_writer, make_exporter)
    except CaptureFailed as exc:
        raise Fail(str(exc)) from None
