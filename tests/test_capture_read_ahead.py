"""The reader's read-ahead: a helper thread reads the next chunk of a file
while the caller scans and counts the one before.

Every test compares the reader with read-ahead against the same reader
without it: the same packets in the same order, the same counters, the same
errors after the same packets.  Small buffers and a small head room make a
short input take many turns of the two buffers, and records longer than the
head room take the way back to one buffer.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import captures as cap
import pytest
from captures import Interface, Section
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connstats.capture import CaptureReader, Stop, TruncatedCaptureError, open_capture
from connstats.capture import reader as reader_module
from connstats.capture.windows import Replayer

T0 = 1_700_000_000_000_000_000
HELPER = "connstats-read-ahead"


class CountedStream(io.RawIOBase):
    """A file in memory that notes which threads read it."""

    def __init__(self, data: bytes, *, fail_after: int | None = None) -> None:
        self._data = memoryview(data)
        self._fail_after = fail_after
        self.readers: list[str] = []

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        self.readers.append(threading.current_thread().name)
        if self._fail_after is not None and len(self.readers) > self._fail_after:
            raise OSError(5, "Input/output error (from the test)")
        n = min(len(b), len(self._data))
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def room_reader(room: int) -> type[CaptureReader]:
    return type("RoomReader", (CaptureReader,), {"_head_room": room})


def packets_of(reader: CaptureReader) -> tuple[list[tuple], BaseException | None]:
    """Every packet as (direction, time, bytes), in order; then the error."""
    out: list[tuple] = []
    try:
        while True:
            batch = reader.read()
            for name, offsets, lengths, times in (
                ("tx", batch.tx_offsets, batch.tx_lengths, batch.tx_times),
                ("rx", batch.rx_offsets, batch.rx_lengths, batch.rx_times),
            ):
                for off, length, ns in zip(offsets, lengths, times):
                    out.append((name, ns, bytes(batch.data[off : off + length])))
            if batch.stop is Stop.EOF:
                return out, None
    except Exception as exc:  # the error comes after every packet before it
        return out, exc


def counters(reader: CaptureReader) -> tuple:
    return (
        reader.packets,
        reader.skipped,
        reader.truncated,
        reader.offset,
        tuple(reader.warnings),
        tuple(reader.unsupported_linktypes),
    )


def both_ways(data: bytes, *, room: int, buffer_size: int, capacity: int = 65536, **kw):
    """(packets, error, counters, the threads that read) without and with read-ahead."""
    results = []
    for ahead in (False, True):
        stream = CountedStream(data)
        try:
            reader = room_reader(room)(
                stream,
                "test",
                buffer_size=buffer_size,
                capacity=capacity,
                read_ahead=ahead,
                **kw,
            )
        except Exception as exc:  # a header cut short: no reader, no helper
            results.append(([], (type(exc), str(exc)), None, stream.readers))
            continue
        got, error = packets_of(reader)
        reader.close()
        results.append(
            (
                got,
                None if error is None else (type(error), str(error)),
                counters(reader),
                stream.readers,
            )
        )
    return results


def frames(sizes: list[int]) -> list[bytes]:
    out = []
    for i, size in enumerate(sizes):
        payload = bytes([i % 251]) * size
        if i % 3 == 2:
            out.append(
                cap.ethernet(
                    cap.udp6("2001:db8::1", 1000 + i % 7, "2001:db8::2", 53, payload)
                )
            )
        else:
            out.append(
                cap.ethernet(
                    cap.tcp4("192.0.2.1", 1000 + i % 5, "192.0.2.2", 80, payload)
                )
            )
    return out


def pcap_of(sizes: list[int]) -> bytes:
    return cap.pcap([(T0 + i * 1000, f) for i, f in enumerate(frames(sizes))], 1)


def pcapng_of(sizes: list[int]) -> bytes:
    return cap.pcapng(
        Section(
            [Interface(1)],
            [(0, T0 + i * 1000, f) for i, f in enumerate(frames(sizes))],
            junk=True,
        )
    )


def test_many_turns_of_the_buffers_give_the_same_packets():
    data = pcap_of([(i * 37) % 700 for i in range(3000)])
    (plain, plain_err, plain_n, plain_helper), (ahead, ahead_err, ahead_n, helper) = (
        both_ways(data, room=1024, buffer_size=4096)
    )
    assert HELPER not in plain_helper
    assert helper.count(HELPER) > 100, (
        "the helper thread did not read: the test would prove nothing"
    )
    assert plain_err is None and ahead_err is None
    assert len(ahead) == 3000
    assert ahead == plain
    assert ahead_n == plain_n
    assert ahead_n[3] == len(data)


def test_a_record_longer_than_the_head_room_goes_back_to_one_buffer():
    # 2,000-byte payloads after many small ones: the tail left in a buffer
    # is then longer than the 512-byte head room.
    sizes = [10] * 400 + [2000] * 20 + [10] * 400
    for data in (pcap_of(sizes), pcapng_of(sizes)):
        plain, ahead = both_ways(data, room=512, buffer_size=3000)
        # the helper read, then the reader's own thread again (one buffer)
        first = ahead[3].index(HELPER)
        assert "MainThread" in ahead[3][first:]
        assert ahead[:3] == plain[:3]
        assert len(ahead[0]) == len(sizes)


def test_a_truncated_file_fails_after_the_same_packets():
    data = pcap_of([100] * 500)[:-30]
    plain, ahead = both_ways(data, room=600, buffer_size=2048)
    assert ahead[3].count(HELPER) > 10
    assert plain[1] is not None and plain[1][0] is TruncatedCaptureError
    assert ahead[:3] == plain[:3]
    assert len(ahead[0]) == 499


def test_an_error_of_the_helpers_read_is_raised_by_read():
    data = pcap_of([100] * 2000)
    stream = CountedStream(data, fail_after=5)
    reader = room_reader(600)(stream, "test", buffer_size=2048, read_ahead=True)
    got, error = packets_of(reader)
    assert isinstance(error, OSError) and "from the test" in str(error)
    assert HELPER in stream.readers
    # what was read before the error was all handed out, and nothing twice
    assert 0 < len(got) < 2000
    assert [p[1] for p in got] == [T0 + i * 1000 for i in range(len(got))]
    reader.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 1500), min_size=0, max_size=300),
    room=st.integers(64, 2048),
    extra=st.integers(0, 4096),
    capacity=st.integers(1, 64),
    pcapng=st.booleans(),
    cut=st.integers(0, 40),
)
def test_read_ahead_is_invisible(sizes, room, extra, capacity, pcapng, cut):
    data = pcapng_of(sizes) if pcapng else pcap_of(sizes)
    if cut:
        data = data[: max(len(data) - cut, 0)]
    plain, ahead = both_ways(
        data, room=room, buffer_size=2 * room + extra, capacity=capacity
    )
    assert ahead[:3] == plain[:3]
    if ahead[2] is not None:  # the reader was made: its helper read (if only the end)
        assert HELPER in ahead[3]


@pytest.mark.parametrize("scanner", cap.SCANNERS)
def test_windows_counted_with_read_ahead_are_the_same(scanner):
    data = pcap_of([(i * 53) % 1200 for i in range(4000)])
    tables = []
    for ahead in (False, True):
        windows: list = []
        reader = room_reader(2048)(
            io.BytesIO(data),
            "test",
            buffer_size=8192,
            read_ahead=ahead,
            scanner_class=cap.scanner_class(scanner),
        )
        replayer = Replayer(windows.append, max_period_ns=1_000_000)
        replayer.feed(reader)
        replayer.finish()
        reader.close()
        tables.append(
            [(w.start_ns, w.end_ns, cap.as_table(w.virtual)) for w in windows]
        )
    assert len(tables[1]) == 4
    assert tables[1] == tables[0]


def helper_threads() -> int:
    return sum(t.name == HELPER for t in threading.enumerate())


def test_the_helper_ends_with_close_and_with_a_dropped_reader():
    data = pcap_of([100] * 2000)
    before = helper_threads()
    reader = room_reader(600)(
        io.BytesIO(data), "test", buffer_size=2048, read_ahead=True
    )
    reader.read()
    assert helper_threads() == before + 1
    reader.close()
    assert helper_threads() == before
    reader.close()  # twice is fine

    reader = room_reader(600)(
        io.BytesIO(data), "test", buffer_size=2048, read_ahead=True
    )
    reader.read()  # a read is in flight on the helper now
    assert helper_threads() == before + 1
    del reader
    gc.collect()
    for _ in range(200):
        if helper_threads() == before:
            break
        threading.Event().wait(0.01)
    assert helper_threads() == before


def test_files_large_enough_are_read_ahead(tmp_path: Path):
    big = tmp_path / "big.pcap"
    one = pcap_of([1400])
    record = one[24:]
    count = reader_module.READ_AHEAD_MIN // len(record) + 1
    big.write_bytes(one[:24] + record * count)
    small = tmp_path / "small.pcap"
    small.write_bytes(one[:24] + record * 100)
    with open_capture(str(big)) as reader:
        assert reader._ahead is not None
        got, error = packets_of(reader)
        assert error is None and len(got) == count
        assert reader.offset == os.path.getsize(big)
    with open_capture(str(small)) as reader:
        assert reader._ahead is None
    with open_capture(str(big), read_ahead=False) as reader:
        assert reader._ahead is None
    with big.open(
        "rb"
    ) as f:  # not a file this reader can read ahead of alone: no size given
        assert CaptureReader(f, "big")._ahead is None


def test_connstats_read_of_a_large_file_counts_as_without(tmp_path: Path, capsys):
    # The command's own path (open_reader, the replayer, the output) on a
    # file it reads ahead, against the same bytes read on one thread.
    import json

    from connstats.cli import main
    from connstats.cli.read import open_reader

    sizes = [(i * 7919) % 1400 for i in range(12000)]
    records = []
    for i, size in enumerate(sizes):
        src = f"10.{i % 7}.{i % 11}.{i % 13}"
        packet = cap.tcp4(src, 1000 + i % 17, "192.0.2.2", 80 + i % 3, b"x" * size)
        records.append((T0 + i * 1_000_000, cap.ethernet(packet)))
    data = cap.pcap(records, 1)
    assert len(data) > reader_module.READ_AHEAD_MIN
    path = tmp_path / "large.pcap"
    path.write_bytes(data)
    with open_reader(str(path), "large.pcap") as reader:
        assert reader._ahead is not None, "the command would not read this file ahead"
    assert main(["read", str(path), "--format", "jsonl", "--max-period", "2s"]) == 0
    windows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got: dict = {}
    for window in windows:
        for row in window["virtualTraffic"]:
            key = (row["proto"], row["src"], row["dst"])
            old = got.get(key, (0, 0, 0, 0))
            counts = (row.get("txPkts", 0), row.get("txBytes", 0), 0, 0)
            got[key] = tuple(a + b for a, b in zip(old, counts))
    assert len(windows) == 6
    assert got == cap.read_table(data)
    assert sum(v[0] for v in got.values()) == len(sizes)


@pytest.mark.parametrize("taken", [True, False], ids=["after-the-result", "before-it"])
def test_ctrl_c_while_waiting_for_the_helper(monkeypatch, taken):
    # Ctrl-C can land in the reader's wait for the helper before or after it
    # takes the helper's result; either way the reader ends the helper and
    # the KeyboardInterrupt goes on (an earlier version hung here).
    data = pcap_of([100] * 2000)
    before = helper_threads()
    reader = room_reader(600)(
        io.BytesIO(data), "test", buffer_size=2048, read_ahead=True
    )
    original = reader_module._ReadAhead.wait

    def interrupted(self):
        if taken:
            original(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(reader_module._ReadAhead, "wait", interrupted)
    raised: list[BaseException] = []

    def drain() -> None:
        try:
            packets_of(reader)
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=drain, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the reader hung ending its helper"
    assert len(raised) == 1 and isinstance(raised[0], KeyboardInterrupt)
    assert reader._ahead is None
    reader.close()
    assert helper_threads() == before


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("seed", [1, 2])
def test_ctrl_c_at_random_moments_never_hangs(seed):
    # The version before the queues hung in 3 runs of 3 (a result taken,
    # then Ctrl-C before the reader noted it: close() waited for it again).
    from subproc import source_tree_env

    script = Path(__file__).parent / "isolated" / "read_ahead_interrupts.py"
    try:
        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", str(script), str(seed), "300"],
            env=source_tree_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"a reader hung after Ctrl-C: {exc.stderr}") from None
    words = done.stdout.split()
    assert done.returncode == 0, done.stderr
    assert words[0] == "ok" and int(words[1]) > 100, done.stdout
    assert words[2] == "0", "helper threads left running"
