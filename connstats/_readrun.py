"""Opening the inputs of ``connstats read`` and keeping per-file totals.

:func:`open_reader` stacks, below the capture reader: the file (or stdin),
transparent decompression (:mod:`connstats._compress`) and, with ``--bpf``,
the libpcap filter (:mod:`connstats._bpf_input`).

:class:`FileTotals` sits between the reader and the replayer and adds up
each file's IP packets and bytes, so several files get a line each and a
combined line.  The bytes are summed from the batch's length arrays only
when there are several files (one C-level ``sum`` per batch).
"""

from __future__ import annotations

from typing import Any

from ._compress import CompressionError, open_input
from ._output import human_bytes
from .capture.errors import CaptureError, TruncatedCaptureError
from .capture.reader import CaptureReader


def open_reader(
    path: str, name: str, *, local: Any = None, bpf: str | None = None
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
            from ._bpf_input import BpfFilteredStream

            stream = BpfFilteredStream(stream, bpf)  # type: ignore[assignment]
            size = None
        reader = CaptureReader(stream, name, local=local, size=size)
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
        from ._libpcap import LibpcapMissingError

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

    if stream is not sys.stdin.buffer:
        stream.close()


class FileTotals:
    """The reader's ``read`` as the replayer calls it, counting as it goes."""

    def __init__(self, reader: CaptureReader, *, count_bytes: bool) -> None:
        self.reader = reader
        self.packets = 0
        self.bytes: int | None = 0 if count_bytes else None
        self._read = reader.read

    def read(self, stop_ns: int | None = None, max_packets: int = 0) -> Any:
        batch = self._read(stop_ns, max_packets)
        self.packets += batch.packets
        if self.bytes is not None:
            self.bytes += sum(batch.tx_lengths) + sum(batch.rx_lengths)
        return batch

    def summary(self) -> str:
        reader = self.reader
        parts = [f"{reader.packets} IP packets"]
        if self.bytes is not None:
            parts[0] += f" ({human_bytes(self.bytes)})"
        parts.append(f"{reader.skipped} non-IP frames skipped")
        if reader.truncated:
            parts.append(f"{reader.truncated} cut by the snap length")
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
        return text + f", {truncated} cut by the snap length" if truncated else text
