"""Statistics(track_times=True): each connection's first and last update time
(TimedCounts), on both cores; the default keeps plain Counts."""

from __future__ import annotations

import array
import pickle
import threading
import time

import captures as cap
import pytest

A = cap.udp4("10.0.0.1", 1000, "10.0.0.2", 53, b"q")
A_REPLY = cap.udp4("10.0.0.2", 53, "10.0.0.1", 1000, b"q")
B = cap.tcp6("2001:db8::1", 40000, "2001:db8::2", 443)


def test_default_values_are_plain_counts(impl):
    stats = impl.Statistics()
    stats.update_tx_virtual(A)
    virtual, _ = stats.extract()
    assert [type(c) for c in virtual.values()] == [impl.Counts]
    core = impl.Core()
    core.update_tx_virtual(A)
    assert core.cut().track_times is False


def test_first_and_last_update_call(impl):
    stats = impl.Statistics(track_times=True)
    t0 = time.time_ns()
    stats.update_tx_virtual(A)
    t1 = time.time_ns()
    time.sleep(0.02)
    stats.update_tx_virtual_batch([B, B])
    t2 = time.time_ns()
    time.sleep(0.02)
    stats.update_rx_virtual(A_REPLY)
    stats.update_tx_physical("100.64.0.1", ("198.51.100.9", 41641), 100)
    t3 = time.time_ns()
    virtual, physical = stats.extract()
    (a,) = [c for conn, c in virtual.items() if conn.proto == 17]
    (b,) = [c for conn, c in virtual.items() if conn.proto == 6]
    (p,) = physical.values()
    assert isinstance(a, impl.Counts) and type(a).__name__ == "TimedCounts"
    assert tuple(a) == (1, len(A), 1, len(A))
    assert t0 <= a.first_ns <= t1 and t2 <= a.last_ns <= t3
    # a batch is one update call: one time for its packets
    assert t1 <= b.first_ns == b.last_ns <= t2
    assert tuple(b) == (2, 2 * len(B), 0, 0)
    assert t2 <= p.first_ns == p.last_ns <= t3
    # the next window starts afresh
    stats.update_tx_virtual(A)
    (again,) = stats.extract()[0].values()
    assert again.first_ns >= t3


def test_windows_cut_by_max_conns_keep_times(impl):
    windows = []
    stats = impl.Statistics(
        max_conns=2,
        dump=lambda s, e, v, p: windows.append((s, e, v)),
        track_times=True,
    )
    packets = [cap.udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53) for i in range(7)]
    for p in packets:
        stats.update_tx_virtual(p)
    stats.shutdown()
    assert sum(len(v) for _s, _e, v in windows) == 7
    for _s, _e, v in windows:
        for c in v.values():
            assert type(c).__name__ == "TimedCounts" and c.first_ns == c.last_ns


def test_threads_exact_totals_and_times(impl):
    stats = impl.Statistics(track_times=True)
    per_thread = 2000
    flows = [cap.udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53) for i in range(50)]
    t0 = time.time_ns()

    def work(k):
        for i in range(per_thread):
            if i % 100 == 0:
                stats.update_tx_virtual_batch(flows[:10])
            else:
                stats.update_tx_virtual(flows[(i * 7 + k) % 50])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.time_ns()
    virtual, _ = stats.extract()
    assert sum(c.tx_packets for c in virtual.values()) == 4 * (
        per_thread - 20 + 20 * 10
    )
    for c in virtual.values():
        assert t0 <= c.first_ns <= c.last_ns <= t1


def test_timed_buffer_updates(impl):
    core = impl.Core(track_times=True)
    buf, offsets, lengths = _joined([A, B, A, A])
    times = array.array("q", [50, -7, 10, 2**63 - 1])
    core.update_tx_virtual_buffer_at(buf, offsets, lengths, times)
    virtual, _ = core.cut().to_dicts()
    spans = {
        conn.proto: (c.first_ns, c.last_ns, c.tx_packets) for conn, c in virtual.items()
    }
    assert spans == {17: (10, 2**63 - 1, 3), 6: (-7, -7, 1)}


@pytest.mark.parametrize(
    "times, error, match",
    [
        (array.array("i", [1, 2]), TypeError, "times"),
        (array.array("q", [1]), ValueError, "times: has 1 items"),
        ([1, 2], TypeError, "times"),
        (None, TypeError, "times"),
    ],
)
def test_bad_times_count_nothing(impl, times, error, match):
    core = impl.Core(track_times=True)
    buf, offsets, lengths = _joined([A, B])
    with pytest.raises(error, match=match):
        core.update_tx_virtual_buffer_at(buf, offsets, lengths, times)
    assert core.cut() is None


def test_times_ignored_by_a_core_without_them(impl):
    core = impl.Core()
    buf, offsets, lengths = _joined([A, B])
    core.update_tx_virtual_buffer_at(buf, offsets, lengths, array.array("q", [1, 2]))
    virtual, _ = core.cut().to_dicts()
    assert all(type(c) is impl.Counts for c in virtual.values())


def test_bad_track_times(impl):
    with pytest.raises(TypeError, match="track_times"):
        impl.Statistics(track_times=1)
    with pytest.raises(TypeError, match="track_times"):
        impl.Core(track_times="yes")


def test_table_memory(impl):
    if impl.name != "c":
        pytest.skip("table_bytes is the compiled core's")
    plain, timed = impl.Core(), impl.Core(track_times=True)
    packets = [cap.udp4("10.0.0.1", 1000 + i, "10.0.0.2", 53) for i in range(5000)]
    for core in (plain, timed):
        core.update_tx_virtual_batch(packets)
    # 16 bytes per entry of capacity: only in the core that keeps times
    entries = (timed.table_bytes - plain.table_bytes) // 16
    assert 5000 <= entries <= 2 * 5000 + 8 * 8


def test_timed_counts_values(impl):
    TimedCounts = impl.module.TimedCounts
    t = TimedCounts(1, 2, 3, 4, first_ns=-5, last_ns=6)
    assert (t.first_ns, t.last_ns) == (-5, 6)
    assert t == impl.Counts(1, 2, 3, 4) and hash(t) == hash(impl.Counts(1, 2, 3, 4))
    assert list(t) == [1, 2, 3, 4] and len(t) == 4
    both = t + TimedCounts(1, 1, 1, 1, first_ns=-9, last_ns=0)
    assert type(both) is TimedCounts and tuple(both) == (2, 3, 4, 5)
    assert (both.first_ns, both.last_ns) == (-9, 6)
    plain = t + impl.Counts(1, 1, 1, 1)
    assert type(plain) is impl.Counts and tuple(plain) == (2, 3, 4, 5)
    back = pickle.loads(pickle.dumps(t))
    assert type(back) is TimedCounts and (back.first_ns, back.last_ns) == (-5, 6)
    assert (
        repr(t)
        == "TimedCounts(tx_packets=1, tx_bytes=2, rx_packets=3, rx_bytes=4, first_ns=-5, last_ns=6)"
    )
    with pytest.raises(TypeError):
        TimedCounts(1, 2, 3, 4, first_ns=1.5, last_ns=2)
    with pytest.raises(ValueError):
        TimedCounts(first_ns=2**63, last_ns=0)
    zero = TimedCounts(1, 2, 3, 4)  # times default to 0
    assert (zero.first_ns, zero.last_ns) == (0, 0)
    with pytest.raises(TypeError):
        impl.Counts(1, 2, 3, 4, first_ns=1, last_ns=2)


def _joined(packets):
    lengths = array.array("q", map(len, packets))
    offsets = array.array("q", [sum(lengths[:i]) for i in range(len(packets))])
    return b"".join(packets), offsets, lengths
