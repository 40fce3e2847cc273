"""``connstats read``: replay captures through the counting core.

:func:`run` is the command.

:func:`open_reader` stacks, below the capture reader: the file (or stdin),
transparent decompression (:mod:`connstats.capture._compress`) and, with ``--bpf``,
the libpcap filter (:mod:`connstats.capture._bpf_input`).

:class:`FileTotals` sits between the reader and the replayer and adds up
each file's IP packets and bytes, so several files get a line each and a
combined line.  The bytes are summed from the batch's length arrays only
when there are several files (one C-level ``sum`` per batch).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from typing import Any, TextIO

from .._clock import datetime_of
from ..capture._compress import CompressionError, open_input
from ..capture.errors import CaptureError, TruncatedCaptureError
from ..capture.reader import CaptureReader
from .arguments import Fail
from .output import human_bytes
from .sinks import errmsg, export_status, make_exporter, make_writer, open_output


def open_reader(
    path: str,
    name: str,
    *,
    local: Any = None,
    bpf: str | None = None,
    decap: int = 0,
) -> CaptureReader:
    """A capture reader for ``path`` (``-``: stdin), decompressed and filtered.

    Raises OSError (cannot open), CaptureError (not a capture) or ValueError
    (compression not readable here, bad BPF expression, no libpcap).
    """
    try:
        stream, size, compression = open_input(path)
    except CompressionError as exc:
        raise ValueError(str(exc)) from None
    try:
        if bpf is not None:
            from ..capture._bpf_input import BpfFilteredStream

            stream = BpfFilteredStream(stream, bpf)  # type: ignore[assignment]
            size = None
        reader = CaptureReader(stream, name, local=local, size=size, decap=decap)
    except CompressionError as exc:
        _close(stream)
        raise ValueError(str(exc)) from None
    except CaptureError:
        cut = getattr(stream, "truncated", None)
        _close(stream)
        if cut:  # "empty input" would hide why it is empty
            raise TruncatedCaptureError(f"{name}: {cut}") from None
        raise
    except OSError as exc:
        _close(stream)
        from ..capture.errors import LibpcapMissingError

        if isinstance(exc, LibpcapMissingError):
            raise ValueError(f"--bpf: {exc}") from None
        raise
    except BaseException:
        _close(stream)
        raise
    reader.compression = compression  # type: ignore[attr-defined]
    reader.compressed_stream = stream if compression else None  # type: ignore[attr-defined]
    reader.bpf_stream = stream if bpf is not None else None  # type: ignore[attr-defined]
    return reader


def _close(stream: Any) -> None:
    import sys

    if stream is not getattr(sys.stdin, "buffer", None):
        stream.close()


class FileTotals:
    """The reader's ``read`` as the replayer calls it, counting as it goes."""

    def __init__(self, reader: CaptureReader, *, count_bytes: bool) -> None:
        self.reader = reader
        self.decap = reader.decap  # the replayer sizes its feeds by it
        self.packets = 0
        self.bytes: int | None = 0 if count_bytes else None
        self._read = reader.read

    def read(self, stop_ns: int | None = None, max_packets: int = 0) -> Any:
        batch = self._read(stop_ns, max_packets)
        self.packets += batch.packets
        if self.bytes is not None:
            self.bytes += sum(batch.tx_lengths) + sum(batch.rx_lengths)
            t = batch.tunneled
            if t is not None:
                self.bytes += sum(t.ptx_lengths) + sum(t.prx_lengths)
        return batch

    def summary(self) -> str:
        reader = self.reader
        parts = [f"{reader.packets} IP packets"]
        if self.bytes is not None:
            parts[0] += f" ({human_bytes(self.bytes)})"
        parts.append(f"{reader.skipped} non-IP frames skipped")
        if reader.truncated:
            parts.append(f"{reader.truncated} cut by the snap length")
        if reader.zero_total:
            parts.append(
                f"{reader.zero_total} with IPv4 total length 0 (TSO or BIG TCP: "
                "keyed by their captured length)"
            )
        if reader.decap:
            parts.append(tunnel_summary(reader.tunnels, reader.bad_tunnels))
        bpf = getattr(reader, "bpf_stream", None)
        if bpf is not None:
            parts.append(f"{bpf.packets_rejected} packets rejected by --bpf")
        compression = getattr(reader, "compression", None)
        text = ", ".join(parts)
        return f"{compression}-compressed, {text}" if compression else text

    @staticmethod
    def combined(files: list[FileTotals]) -> str:
        packets = sum(f.reader.packets for f in files)
        nbytes = sum(f.bytes or 0 for f in files)
        skipped = sum(f.reader.skipped for f in files)
        truncated = sum(f.reader.truncated for f in files)
        text = (
            f"all {len(files)} files: {packets} IP packets ({human_bytes(nbytes)}), "
            f"{skipped} non-IP frames skipped"
        )
        if truncated:
            text += f", {truncated} cut by the snap length"
        if any(f.reader.decap for f in files):
            text += ", " + tunnel_summary(
                sum(f.reader.tunnels for f in files),
                sum(f.reader.bad_tunnels for f in files),
            )
        return text


def tunnel_summary(tunnels: int, bad: int) -> str:
    """``12 decapsulated, 1 malformed tunnel counted whole`` (not decapsulated)."""
    text = f"{tunnels} decapsulated"
    if bad:
        text += f", {bad} malformed tunnel{'s' if bad != 1 else ''} counted whole"
    return text


# -- the command ----------------------------------------------------------------

_NS = 1_000_000_000
_SAMPLE = "sample.pcap"


def command(args: argparse.Namespace) -> int:
    """``connstats read``: tables of the captures named (or the built-in sample)."""
    from ..capture import CaptureError, local_networks
    from ..capture.errors import FilterError, LibpcapMissingError
    from ..capture.linktypes import describe_linktype, linktype_name
    from ..capture.windows import Replayer, Window
    from .filters import filter_table
    from .output import Progress, merge_windows
    from .read import FileTotals, open_reader
    from .read_options import report_options

    local = local_networks(args.local) if args.local else None
    period_ns = round(args.max_period * _NS) if args.max_period else 0
    options = report_options(args, 0 if args.format != "table" else 20)
    failure: str | None = None
    summaries: list[str] = []
    totals: list[FileTotals] = []
    with ExitStack() as stack:
        out = open_output(stack, args.output, args.format)
        writer = make_writer(args, out, options)
        if hasattr(writer, "close"):
            stack.callback(writer.close)
        paths: list[tuple[str, str]] = []  # (path to open, name shown)
        if args.files:
            paths = [(p, "<stdin>" if p == "-" else p) for p in args.files]
        elif piped_stdin():
            # `tcpdump -w - | connstats read`, `connstats read < trace.pcap`
            paths = [("-", "<stdin>")]
        else:
            paths = [(_sample_path(stack), f"{_SAMPLE} (built-in sample)")]
        sizes = [_size(p) for p, _ in paths]
        total_size = (
            sum(s for s in sizes if s is not None)
            if all(s is not None for s in sizes)
            else None
        )
        progress = Progress(sys.stderr, total_size, enabled=_isatty(sys.stderr))
        collected: list[Window] = []
        collected_times: dict[Any, list[int]] = {}
        exporter = make_exporter(args, stack)

        # Without window options the one window is the whole run.
        title = None if (period_ns or args.max_conns) else "Total"

        def show(window: Window, times: dict[Any, list[int]] | None = None) -> None:
            if exporter is not None:
                # The connections the tables select (--host/--net/--port/
                # --proto), every one of them (not just --top's).
                virtual = window.virtual
                if options.select is not None:
                    virtual = filter_table(virtual, options.select)
                if virtual or window.physical:
                    exporter(
                        datetime_of(window.start_ns),
                        datetime_of(window.end_ns),
                        virtual,
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

        # Each connection's first and last packet time, from the capture's
        # timestamps, when a row shows them (or an export sends them).
        timed = bool(options.times or args.format == "parquet" or args.export)
        if options.times and args.format != "parquet":
            # The text formats take the times from a dict; Parquet and the
            # exporters read them from the windows' values (the Parquet
            # writer straight from the core's arrays: no object per row).

            def show_timed(window: Window) -> None:
                times = {
                    conn: [counts.first_ns, counts.last_ns]
                    for table in (window.virtual, window.physical)
                    for conn, counts in table.items()
                }
                show(window, times)

            on_window = show_timed
        else:
            on_window = show
        replayer = Replayer(
            on_window,
            max_period_ns=period_ns,
            max_conns=args.max_conns,
            track_times=timed,
        )
        count_bytes = len(paths) > 1
        for (path, name), size in zip(paths, sizes):
            try:
                reader = open_reader(
                    path, name, local=local, bpf=args.bpf, decap=args.decap or 0
                )
            except OSError as exc:
                failure = errmsg(exc, name)
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
                failure = errmsg(exc, name)
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
            for warning in reader.warnings:
                print(f"connstats: warning: {name}: {warning}", file=sys.stderr)
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
        raise Fail(failure)
    return export_status(exporter)


def piped_stdin() -> bool:
    """Whether standard input is a pipe, a socket or a file (not a terminal).

    With no FILE, ``connstats read`` reads it then, and the built-in sample
    otherwise: a terminal, ``/dev/null`` (a character device, as cron and
    many CI runners give), no standard input at all, or a replaced
    ``sys.stdin`` without a file descriptor.
    """
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode)


def _sample_path(stack: ExitStack) -> str:
    """The built-in sample's file: next to the package when it is installed
    as files (no importlib.resources import: start-up time), else extracted."""
    here = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", _SAMPLE)
    if os.path.isfile(here):
        return here
    from importlib import resources

    return str(
        stack.enter_context(
            resources.as_file(resources.files("connstats") / "data" / _SAMPLE)
        )
    )


def _size(path: str) -> int | None:
    """Bytes the reader will go through, for progress; None when unknown."""
    from ..capture._compress import detect

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
