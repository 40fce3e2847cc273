"""Windows on the capture's clock: --max-period and --max-conns, by hand."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap

from connstats.capture import CaptureReader
from connstats.capture.windows import Replayer

S = 1_000_000_000
T0 = 1_650_000_000 * S

A = cap.tcp4("10.0.0.1", 1, "10.0.0.2", 80)  # 40 bytes
B = cap.udp4("10.0.0.1", 2, "10.0.0.2", 53)  # 28 bytes
C = cap.icmp4("10.0.0.1", "10.0.0.2")  # 28 bytes
D = cap.tcp6("fd00::1", 3, "fd00::2", 443)  # 60 bytes
KEY = {
    "A": (6, "10.0.0.1:1", "10.0.0.2:80"),
    "B": (17, "10.0.0.1:2", "10.0.0.2:53"),
    "C": (1, "10.0.0.1:0", "10.0.0.2:0"),
    "D": (6, "[fd00::1]:3", "[fd00::2]:443"),
}
SIZE = {"A": 40, "B": 28, "C": 28, "D": 60}
PACKET = {"A": A, "B": B, "C": C, "D": D}


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


def capture(seq: list[tuple[str, float]], fmt: str = "pcap") -> bytes:
    recs = [(T0 + round(t * S), cap.ethernet(PACKET[name])) for name, t in seq]
    if fmt == "pcap":
        return cap.pcap(recs, 1, nanosecond=True)
    return cap.pcapng(
        cap.Section([cap.Interface(1, tsresol=9)], [(0, t, f) for t, f in recs])
    )


def expect(start: float, end: float, **packets: int):
    table = {KEY[name]: (n, n * SIZE[name], 0, 0) for name, n in packets.items()}
    return (T0 + round(start * S), T0 + round(end * S), table)


def windows_of(data: bytes, scanner, **kw):
    windows, _ = cap.read_windows(data, scanner_class=scanner, **kw)
    return [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_max_period_cuts_on_packet_time(scanner, fmt):
    data = capture(
        [("A", 0.0), ("B", 0.4), ("A", 0.9), ("C", 1.0), ("A", 2.5), ("D", 2.6)], fmt
    )
    assert windows_of(data, scanner, max_period_ns=1 * S) == [
        # Opened by A at 0.0; ends when 1 s of capture time has passed.
        expect(0.0, 1.0, A=2, B=1),
        # C at exactly 1.0 belongs to the next window, which it opens.
        expect(1.0, 2.0, C=1),
        # Nothing from 2.0 to 2.5: no empty window; the last ends at its last packet.
        expect(2.5, 2.6, A=1, D=1),
    ]


def test_max_conns_cuts_where_a_new_connection_overflows(scanner):
    data = capture(
        [("A", 0), ("B", 1), ("A", 2), ("C", 3), ("A", 4), ("D", 5), ("D", 6), ("C", 7)]
    )
    assert windows_of(data, scanner, max_conns=2) == [
        # C at 3 would be the third connection: the window ends at 3 and C opens the next.
        expect(0, 3, A=2, B=1),
        expect(3, 5, C=1, A=1),
        expect(5, 7, D=2, C=1),
    ]


def test_max_conns_and_max_period_together(scanner):
    data = capture(
        [("A", 0), ("B", 1), ("A", 2), ("C", 3), ("A", 4), ("D", 5), ("D", 6), ("C", 7)]
    )
    assert windows_of(data, scanner, max_conns=1, max_period_ns=round(1.5 * S)) == [
        expect(0, 1, A=1),
        expect(1, 2, B=1),
        expect(2, 3, A=1),
        expect(3, 4, C=1),
        expect(4, 5, A=1),
        expect(5, 6.5, D=2),  # C at 7 is past 5 + 1.5: a time cut, not a size cut
        expect(7, 7, C=1),
    ]


def test_max_conns_with_directions(scanner):
    # With --local the reply of a conversation is rx and lands on the same
    # connection: it must not count as a new one.
    reply = cap.tcp4("10.0.0.2", 80, "10.0.0.1", 1)
    recs = [
        (T0, cap.ethernet(A)),
        (T0 + S, cap.ethernet(reply)),
        (T0 + 2 * S, cap.ethernet(B)),
        (T0 + 3 * S, cap.ethernet(reply)),
    ]
    windows, _ = cap.read_windows(
        cap.pcap(recs, 1), scanner_class=scanner, max_conns=1, local=["10.0.0.1"]
    )
    assert [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows] == [
        (T0, T0 + 2 * S, {KEY["A"]: (1, 40, 1, 40)}),
        (T0 + 2 * S, T0 + 3 * S, {KEY["B"]: (1, 28, 0, 0)}),
        (T0 + 3 * S, T0 + 3 * S, {KEY["A"]: (0, 0, 1, 40)}),
    ]


def test_time_going_backwards_stays_in_the_open_window(scanner):
    data = capture([("A", 5), ("B", 3), ("C", 6), ("D", 7.5)])
    # The window holds B (at 3 s): it starts at its earliest packet.
    assert windows_of(data, scanner, max_period_ns=2 * S) == [
        expect(3, 7, A=1, B=1, C=1),
        expect(7.5, 7.5, D=1),
    ]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_total_spans_the_earliest_to_the_latest_packet(scanner, fmt):
    # A merged capture whose first packet is not its earliest nor its last
    # its latest: the one window still spans 0 s to 69 s.
    data = capture([("A", 40), ("B", 0), ("C", 69), ("D", 12)], fmt)
    assert windows_of(data, scanner) == [expect(0, 69, A=1, B=1, C=1, D=1)]
    many = capture([(name, (17 * i) % 70) for i, name in enumerate("ABCD" * 50)], fmt)
    assert windows_of(many, scanner, capacity=3)[0][:2] == (T0, T0 + 69 * S)


def test_files_given_out_of_date_order(scanner):
    later = capture([("A", 100), ("B", 160)])
    earlier = capture([("C", 0), ("D", 30)], "pcapng")
    windows: list = []
    replayer = Replayer(windows.append)
    for data in (later, earlier):
        replayer.feed(CaptureReader(io.BytesIO(data), "f", scanner_class=scanner))
    replayer.finish()
    assert [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows] == [
        expect(0, 160, A=1, B=1, C=1, D=1)
    ]


def test_windows_continue_across_files(scanner):
    first = capture([("A", 0), ("B", 1)])
    second = capture([("C", 1.5), ("D", 3)], "pcapng")
    windows: list = []
    replayer = Replayer(windows.append, max_period_ns=2 * S)
    for data in (first, second):
        replayer.feed(CaptureReader(io.BytesIO(data), "f", scanner_class=scanner))
    replayer.finish()
    assert [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows] == [
        expect(0, 2, A=1, B=1, C=1),
        expect(3, 3, D=1),
    ]


def test_many_windows_by_size(scanner):
    # 600 packets over 300 connections, 2 packets each in a row: max_conns=7
    # gives windows of exactly 7 connections (the last one fewer).
    seq = [(f"{i}", i * 0.001) for i in range(300) for _ in range(2)]
    recs = [
        (
            T0 + round(t * S) + k,
            cap.ethernet(cap.udp4("10.0.0.1", 1000 + int(n), "10.0.0.2", 9)),
        )
        for k, (n, t) in enumerate(seq)
    ]
    windows, reader = cap.read_windows(
        cap.pcap(recs, 1, nanosecond=True), scanner_class=scanner, max_conns=7
    )
    assert [len(w.virtual) for w in windows] == [7] * 42 + [6]
    assert all(c.tx_packets == 2 for w in windows for c in w.virtual.values())
    assert reader.packets == 600
    for before, after in zip(windows, windows[1:]):
        assert before.end_ns == after.start_ns


def test_replayer_rejects_negative_bounds():
    with pytest.raises(ValueError):
        Replayer(lambda w: None, max_period_ns=-1)
    with pytest.raises(ValueError):
        Replayer(lambda w: None, max_conns=-1)


REGRESSIONS = (
    Path(__file__).resolve().parent.parent / "fuzz" / "regressions" / "capture"
)


@pytest.mark.parametrize(
    "name", ["replay_stop_overflow.pcapng", "idb_tsresol_30.pcapng"]
)
def test_fuzz_regressions_end_with_a_result(name):
    """Packet times saturating at INT64_MAX once made the replayer loop
    forever, and a huge if_tsresol overflowed the compiled scanner."""
    import subprocess

    path = REGRESSIONS / name
    if not path.exists():
        pytest.skip("fuzz/ is not shipped in the sdist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "connstats",
            "read",
            "--max-period",
            "1",
            "--total",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
