"""Fuzzing of the capture-file reader (``connstats.capture``).

Every input is a whole pcap or pcapng file.  Reading it must give a result
or a clean ``CaptureError``: any other exception, a hang or a crash is a
finding.  The input is read with the compiled scanner (``connstats.capture._capture``)
and with the pure-Python one, through a tiny buffer and small batches so that
refills and batch boundaries are exercised, and both must give the same
batches, packets and error; every offset/length the reader hands out must lie
inside its buffer, and the packets are fed to a core.  A second pass replays
the file into windows on the capture's clock (``max_period`` and
``max_conns``), which drives the reader's time stops.  Both passes run a
second time with every tunnel decapsulated (docs/tunnels.md): the inner and
outer packets, their VNIs and the tunnel counters must agree too, and they
are fed to the core as virtual and physical traffic.

    python fuzz/fuzz_capture.py -max_total_time=60 fuzz/corpus/capture
    python fuzz/fuzz_capture.py --replay fuzz/corpus/capture

Exits 0 with a message when ``connstats.capture`` does not exist (yet).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import instrumented_imports, main

SKIP_MESSAGE = "fuzz_capture: SKIPPED"

try:
    with instrumented_imports():
        from connstats.capture import (
            CaptureError,
            CaptureReader,
            Stop,
            _scan_py,
            local_networks,
        )
        from connstats.capture.windows import Replayer
except ImportError as exc:
    print(f"{SKIP_MESSAGE}: connstats.capture is not importable ({exc})", flush=True)
    raise SystemExit(0) from None

try:
    from connstats.capture import _capture as compiled_scanner
except ImportError:  # pragma: no cover - a pure-Python install
    compiled_scanner = None
    print(
        "fuzz_capture: no compiled scanner: checking the pure-Python one only",
        flush=True,
    )

from connstats import _impl  # noqa: E402

SCANNERS: dict[str, Any] = {"py": _scan_py.Scanner}
if compiled_scanner is not None:
    SCANNERS["c"] = compiled_scanner.Scanner

LOCAL = local_networks(["10.0.0.0/8", "fd00::/8", "192.0.2.1"])
MAX_READS = 20_000


DECAP_ALL = 31


def _tunneled(batch: Any, core: Any, size: int) -> list:
    """The decapsulated packets of a batch, checked and counted."""
    t = batch.tunneled
    if t is None:
        return []
    out = []
    for name in ("vtx", "vrx", "ptx", "prx"):
        offsets = getattr(t, f"{name}_offsets")
        lengths = getattr(t, f"{name}_lengths")
        vnis = getattr(t, f"{name}_vnis")
        if not len(offsets) == len(lengths) == len(vnis):
            raise AssertionError(f"{name}: arrays of different lengths")
        for off, n, vni in zip(offsets, lengths, vnis):
            if not (0 <= off and 0 <= n and off + n <= size):
                raise AssertionError(
                    f"{name} packet {off}+{n} outside the {size}-byte buffer"
                )
            if not -1 <= vni <= 0xFFFFFFFF:
                raise AssertionError(f"{name}: VNI {vni} out of range")
            out.append((name, bytes(batch.data[off : off + n]), vni))
        if len(offsets):
            kind = "virtual" if name[0] == "v" else "physical"
            direction = "rx" if name[1:] == "rx" else "tx"
            getattr(core, f"update_{direction}_{kind}_buffer")(
                batch.data, offsets, lengths, vnis
            )
    return out


def _read_all(data: bytes, scanner_class: Any, decap: int = 0) -> list:
    """Everything observable about reading ``data``: batches, counters, error."""
    events: list = []
    core = _impl.core.Core()
    try:
        reader = CaptureReader(
            io.BytesIO(data),
            "fuzz",
            local=LOCAL,
            capacity=3,
            buffer_size=64,
            scanner_class=scanner_class,
            decap=decap,
        )
    except CaptureError as exc:
        return [("open", type(exc).__name__, str(exc))]
    events.append(("header", reader.format, tuple(reader.linktypes)))
    try:
        for _ in range(MAX_READS):
            batch = reader.read()
            size = len(batch.data)
            packets = []
            for direction, offsets, lengths in (
                ("tx", batch.tx_offsets, batch.tx_lengths),
                ("rx", batch.rx_offsets, batch.rx_lengths),
            ):
                if len(offsets) != len(lengths):
                    raise AssertionError(
                        f"{direction}: {len(offsets)} offsets, {len(lengths)} lengths"
                    )
                for off, n in zip(offsets, lengths):
                    if not (0 <= off and 0 <= n and off + n <= size):
                        raise AssertionError(
                            f"{direction} packet {off}+{n} outside the {size}-byte buffer"
                        )
                    packets.append((direction, bytes(batch.data[off : off + n])))
                getattr(core, f"update_{direction}_virtual_buffer")(
                    batch.data, offsets, lengths
                )
            tunneled = _tunneled(batch, core, size)
            events.append(
                (
                    batch.stop,
                    batch.first_ns,
                    batch.last_ns,
                    batch.next_ns,
                    packets,
                    tunneled,
                )
            )
            if batch.stop is Stop.EOF:
                break
        else:
            raise AssertionError(
                f"no end of input after {MAX_READS} reads of {len(data)} bytes"
            )
    except CaptureError as exc:
        events.append(("error", type(exc).__name__, str(exc)))
    events.append(
        (
            "counters",
            reader.packets,
            reader.skipped,
            reader.tunnels,
            reader.bad_tunnels,
            tuple(reader.linktypes),
            tuple(reader.warnings),
        )
    )
    window = core.cut()
    if window is not None:
        virtual, physical = window.to_dicts()
        events.append(
            (
                sorted((str(c), tuple(n)) for c, n in virtual.items()),
                sorted((str(c), tuple(n)) for c, n in physical.items()),
            )
        )
    return events


def _windows(data: bytes, scanner_class: Any, decap: int = 0) -> list:
    windows: list = []
    try:
        reader = CaptureReader(
            io.BytesIO(data),
            "fuzz",
            capacity=5,
            scanner_class=scanner_class,
            decap=decap,
        )
    except CaptureError as exc:
        return [("open", type(exc).__name__)]
    replayer = Replayer(windows.append, max_period_ns=1_000_000_000, max_conns=3)
    error = None
    try:
        replayer.feed(reader)
    except CaptureError as exc:
        error = (type(exc).__name__, str(exc))
    replayer.finish()
    out = []
    for w in windows:
        if w.start_ns > w.end_ns:
            raise AssertionError(f"window ends before it starts: {w}")
        if len(w.virtual) + len(w.physical) > 3:
            raise AssertionError(f"window holds more than max_conns connections: {w}")
        out.append(
            (
                w.start_ns,
                w.end_ns,
                sorted((str(c), tuple(n)) for c, n in w.virtual.items()),
                sorted((str(c), tuple(n)) for c, n in w.physical.items()),
            )
        )
    return [error, out]


def test_one_input(data: bytes) -> None:
    for decap in (0, DECAP_ALL):
        results = {name: _read_all(data, cls, decap) for name, cls in SCANNERS.items()}
        if len(results) == 2 and results["c"] != results["py"]:
            raise AssertionError(
                f"scanners disagree on {data.hex()} (decap {decap}):\n"
                f" c  {results['c']}\n py {results['py']}"
            )
        replays = {name: _windows(data, cls, decap) for name, cls in SCANNERS.items()}
        if len(replays) == 2 and replays["c"] != replays["py"]:
            raise AssertionError(
                f"replays disagree on {data.hex()} (decap {decap}):\n"
                f" c  {replays['c']}\n py {replays['py']}"
            )


if __name__ == "__main__":
    main(test_one_input)
