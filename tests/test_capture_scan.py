"""The two record scanners: same contract numbers, same results on any input."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap
from captures import Interface, Section

from connstats.capture import CaptureError, CaptureReader, Stop, _consts, linktypes
from connstats.capture._scan_py import Scanner as PyScanner

T0 = 1_600_000_000_000_000_000


@pytest.fixture(scope="module")
def c_scanner():
    return cap.scanner_class("c")


def test_compiled_scanner_uses_the_same_numbers(c_scanner):
    module = sys.modules[c_scanner.__module__]
    for name in (
        "ST_FULL",
        "ST_NEED_MORE",
        "ST_STOP_TIME",
        "ST_BLOCK",
        "ST_CORRUPT",
        "ST_UNSUPPORTED",
    ):
        assert getattr(module, name) == getattr(_consts, name), name
    for name in (
        "KIND_RAW",
        "KIND_NULL",
        "KIND_LOOP",
        "KIND_ETHERNET",
        "KIND_SLL",
        "KIND_SLL2",
        "KIND_UNSUPPORTED",
    ):
        assert getattr(module, name) == getattr(linktypes, name), name


def trace(
    data: bytes,
    scanner_class,
    *,
    local=None,
    stops=(),
    max_packets=0,
    buffer_size=4096,
    capacity=5,
):
    """Everything a reader reports for ``data``: batches, counters and the final error."""
    out: list = []
    try:
        reader = CaptureReader(
            io.BytesIO(data),
            "x",
            scanner_class=scanner_class,
            local=local,
            buffer_size=buffer_size,
            capacity=capacity,
        )
    except CaptureError as exc:
        return [("open-error", type(exc).__name__, str(exc))]
    stop_iter = iter(stops)
    stop = next(stop_iter, None)
    try:
        while True:
            batch = reader.read(stop, max_packets)
            out.append(
                (
                    [
                        bytes(batch.data[o : o + n])
                        for o, n in zip(batch.tx_offsets, batch.tx_lengths)
                    ],
                    [
                        bytes(batch.data[o : o + n])
                        for o, n in zip(batch.rx_offsets, batch.rx_lengths)
                    ],
                    batch.first_ns if batch.packets else None,
                    batch.last_ns if batch.packets else None,
                    batch.stop,
                    batch.next_ns,
                    (batch.min_ns, batch.max_ns) if batch.packets else None,
                    reader.skipped,
                    reader.truncated,
                    reader.unsupported,
                    tuple(reader.unsupported_linktypes),
                    reader.offset,
                )
            )
            if batch.stop is Stop.TIME:
                stop = next(stop_iter, None)
            if batch.stop is Stop.EOF:
                break
    except CaptureError as exc:
        out.append(("error", type(exc).__name__, str(exc)))
    return out


def sample_captures():
    pkts = [
        cap.tcp4("10.0.0.1", 1, "10.0.0.2", 2, b"x" * 5),
        cap.udp6("fd00::1", 3, "fd00::2", 4, b"y" * 9),
        cap.icmp4("10.0.0.2", "10.0.0.1"),
        cap.ipv4("10.0.0.3", "10.0.0.1", 17, cap.udp(5, 6), frag=0x2000),
        cap.ipv6("fd00::2", "fd00::1", 44, bytes(8) + cap.udp(7, 8)),
    ]
    recs = [(T0 + i * 250_000_000, p) for i, p in enumerate(pkts * 3)]
    out = []
    for lt in (
        1,
        113,
        276,
        0,
        108,
        101,
        8,
        9,
        50,
        51,
        104,
        105,
        107,
        109,
        117,
        127,
        226,
        239,
    ):
        wrap = cap.LINK_WRAPPERS[lt]
        frames = [(t, wrap(p)) for t, p in recs]
        frames.insert(2, (T0, cap.ARP_FRAME))
        out.append(cap.pcap(frames, lt))
        out.append(cap.pcap(frames, lt, big_endian=True, nanosecond=True))
        out.append(
            cap.pcapng(
                Section(
                    [Interface(lt, tsresol=9), Interface(lt, tsresol=0x80 | 20)],
                    [(i % 2, t, f) for i, (t, f) in enumerate(frames)],
                    junk=True,
                )
            )
        )
        out.append(
            cap.pcapng(
                Section(
                    [Interface(lt, snaplen=40)],
                    [(None if i % 3 else 0, t, f) for i, (t, f) in enumerate(frames)],
                    big_endian=True,
                )
            )
        )
    # An unsupported interface between two Ethernet ones, times out of order.
    frames = [
        (T0 - i * 1000 if i % 4 == 0 else T0 + i, cap.ethernet(p))
        for i, (t, p) in enumerate(recs)
    ]
    out.append(
        cap.pcapng(
            Section(
                [Interface(1, snaplen=60), Interface(192), Interface(1)],
                [(i % 3, t, f) for i, (t, f) in enumerate(frames)],
            )
        )
    )
    return out


SAMPLES = sample_captures()
LOCAL = (
    [(0x0A000001, 0xFFFFFFFF)],
    [(0xFD000000000000000000000000000001, (1 << 128) - 1)],
)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_same_results_on_valid_captures(c_scanner, index):
    data = SAMPLES[index]
    for kw in (
        {},
        {"local": LOCAL},
        {
            "stops": [T0 + 500_000_000, T0 + 1_000_000_000, T0 + 3_000_000_000],
            "local": LOCAL,
        },
        {"max_packets": 1, "capacity": 3, "buffer_size": 64},
    ):
        expected = trace(data, PyScanner, **kw)
        assert expected[-1][0] != "error"
        assert trace(data, c_scanner, **kw) == expected


def mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        b = bytearray(data)
        kind = rng.randrange(4)
        if kind == 0:  # flip a few bytes
            for _ in range(rng.randrange(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1:  # cut the end
            del b[rng.randrange(len(b)) :]
        elif kind == 2:  # overwrite a 32-bit field with an extreme value
            at = rng.randrange(0, len(b) - 4)
            b[at : at + 4] = rng.choice(
                [
                    b"\xff\xff\xff\xff",
                    b"\0\0\0\0",
                    b"\x00\x00\x00\x80",
                    b"\x0c\x00\x00\x00",
                ]
            )
        else:  # splice garbage in
            at = rng.randrange(len(b))
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        yield bytes(b)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_same_results_on_damaged_captures(c_scanner, index):
    """Garbage must give the same packets, counters and error text in both."""
    rng = random.Random(index)
    for bad in mutations(SAMPLES[index], rng, 60):
        for kw in (
            {"local": LOCAL},
            {"stops": [T0 + 700_000_000], "max_packets": 2, "buffer_size": 64},
        ):
            assert trace(bad, c_scanner, **kw) == trace(bad, PyScanner, **kw)


@pytest.mark.parametrize("name", cap.SCANNERS)
def test_scan_statuses(name):
    scanner = cap.scanner_class(name)(4)
    frames = [
        (T0 + i * 1000, cap.ethernet(cap.tcp4("10.0.0.1", i, "10.0.0.2", 80)))
        for i in range(6)
    ]
    data = cap.pcap(frames, 1)
    scanner.set_pcap(False, False, 1, 262144)
    # Capacity 4: FULL after four packets.
    assert scanner.scan(data, 24, len(data), False, 0, 0) == _consts.ST_FULL
    assert (scanner.n_tx, scanner.n_rx, scanner.first_ns, scanner.last_ns) == (
        4,
        0,
        T0,
        T0 + 3000,
    )
    pos = scanner.pos
    # A stop time at the fifth packet: nothing consumed, its time reported.
    assert (
        scanner.scan(data, pos, len(data), True, T0 + 4000, 0) == _consts.ST_STOP_TIME
    )
    assert (scanner.n_tx, scanner.pos, scanner.next_ns) == (0, pos, T0 + 4000)
    assert scanner.scan(data, pos, len(data), False, 0, 1) == _consts.ST_FULL
    assert scanner.n_tx == 1
    assert (
        scanner.scan(data, scanner.pos, len(data), False, 0, 0) == _consts.ST_NEED_MORE
    )
    assert scanner.n_tx == 1 and scanner.pos == len(data)
    # Half a record: NEED_MORE without consuming it.
    assert scanner.scan(data, pos, len(data) - 3, False, 0, 0) == _consts.ST_NEED_MORE
    assert (
        scanner.n_tx == 1 and scanner.pos == len(data) - 70
    )  # 16-byte header + 54-byte frame
    with pytest.raises(ValueError):
        scanner.scan(data, 0, len(data) + 1, False, 0, 0)
    with pytest.raises(ValueError):
        scanner.scan(data, 10, 5, False, 0, 0)


def test_threads_sharing_or_not_sharing_scanners(c_scanner):
    """Own scanners per thread: exact results.  One shared scanner: no crash.

    The compiled scanner releases the GIL (and is declared free-threading
    compatible): its lock must keep concurrent scans from corrupting it.
    """
    import threading

    frames = [
        (T0 + i, cap.ethernet(cap.udp4("10.0.0.1", i, "10.0.0.2", 9)))
        for i in range(500)
    ]
    data = cap.pcap(frames, 1, nanosecond=True)
    shared = c_scanner(64)
    shared.set_pcap(False, True, 1, 262144)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            own = c_scanner(64)
            own.set_pcap(False, True, 1, 262144)
            barrier.wait()
            for _ in range(50):
                pos, total = 24, 0
                while True:
                    status = own.scan(data, pos, len(data), False, 0, 0)
                    total += own.n_tx
                    pos = own.pos
                    if status == _consts.ST_NEED_MORE:
                        break
                assert total == 500 and pos == len(data)
                shared.set_local([(0x0A000002, 0xFFFFFFFF)], [])
                status = shared.scan(data, 24, len(data), False, 0, 0)
                assert status == _consts.ST_FULL
                assert 0 <= shared.n_tx + shared.n_rx <= 64
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


_ERROR_TEXT_RACE = r"""
import sys, threading, time
import captures as cap
name, seconds = sys.argv[1], float(sys.argv[2])
Scanner = cap.scanner_class(name)
T0 = 1_700_000_000_000_000_000
frames = [(T0 + i, cap.ethernet(cap.udp4("10.0.0.1", i, "10.0.0.2", 9))) for i in range(4)]
good = cap.pcap(frames, 1, nanosecond=True)
shared = Scanner(16)
shared.set_pcap(False, True, 1, 262144)
stop = time.monotonic() + seconds
changed, scans = [], [0]

def work(k):
    # Each thread's first record claims its own length: its own error text.
    data = bytearray(good)
    data[32:36] = (10**6 + k).to_bytes(4, "little")
    data = bytes(data)
    held = []
    while time.monotonic() < stop:
        for _ in range(100):
            shared.scan(data, 24, len(data), False, 0, 0)
            text = shared.error
            held.append((text, "".join(list(text))))  # and a private copy
        scans[0] += 100
        # A text still referenced must not have changed under us (freed and
        # its memory reused by another thread's text).
        changed.extend(t for t, copy in held if t != copy)
        held.clear()

threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(changed), scans[0])
"""


@pytest.mark.parametrize("name", cap.SCANNERS)
def test_threads_replacing_a_shared_scanners_error_text(name):
    """Six threads, one scanner, each scan replacing ``error``: no crash.

    The compiled scanner used to assign ``error`` outside its lock: two
    threads dropped the same old text, freeing it while a third still held
    it; on free-threaded 3.13 this crashed the process within half a second
    (segfault, 3 runs of 3).  Run in a child so that a crash is a failure
    with its exit status, not the end of the test session.
    """
    import subprocess

    cap.scanner_class(name)  # skips as the other scanner tests do
    seconds = "2" if name == "c" else "0.5"
    proc = subprocess.run(
        [sys.executable, "-c", _ERROR_TEXT_RACE, name, seconds],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    changed, scans = map(int, proc.stdout.split())
    assert changed == 0
    assert scans >= 600


@pytest.mark.parametrize("name", cap.SCANNERS)
def test_threads_sharing_a_scanner_on_corrupt_input(name):
    """Many threads, one scanner, corrupt and valid buffers: no crash, sane state.

    Each corrupt scan sets the scanner's error and each valid one clears it;
    done by several threads at once, the compiled scanner used to assign its
    ``error`` str outside its lock, so two threads dropped the same old
    reference (a double free on free-threaded builds).  Its fields may mix
    two scans (sharing is misuse) but each must be one a scan can produce.
    """
    import threading

    scanner_class = cap.scanner_class(name)
    frames = [
        (T0 + i, cap.ethernet(cap.udp4("10.0.0.1", i, "10.0.0.2", 9)))
        for i in range(40)
    ]
    good = cap.pcap(frames, 1, nanosecond=True)
    # The second record claims more bytes than the limit: ST_CORRUPT there.
    bad = bytearray(good)
    second = 24 + 16 + len(frames[0][1])
    bad[second + 8 : second + 12] = (10**6).to_bytes(4, "little")
    bad = bytes(bad)
    corrupt_text = "record length 1000000 exceeds the limit 262144"
    shared = scanner_class(16)
    shared.set_pcap(False, True, 1, 262144)
    n_threads = 8
    rounds = 5000 if name == "c" else 40
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                # mostly corrupt scans: each one sets a new error string
                data = good if (i + index) % 8 == 0 else bad
                status = shared.scan(data, 24, len(data), False, 0, 0)
                assert status in (_consts.ST_FULL, _consts.ST_CORRUPT)
                assert shared.error in ("", corrupt_text)
                assert 0 <= shared.n_tx + shared.n_rx <= 16
                if i % 256 == 0:
                    shared.set_local([(0x0A000002, 0xFFFFFFFF)], [])
                    shared.set_pcap(False, True, 1, 262144)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # Alone again, the scanner is exact.
    assert shared.scan(bad, 24, len(bad), False, 0, 0) == _consts.ST_CORRUPT
    assert (shared.error, shared.n_tx + shared.n_rx, shared.pos) == (
        corrupt_text,
        1,
        second,
    )
    assert shared.scan(good, 24, len(good), False, 0, 0) == _consts.ST_FULL
    assert (shared.error, shared.n_tx + shared.n_rx) == ("", 16)
