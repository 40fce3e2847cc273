"""connstats.metrics.Totals: exact cumulative counters per series, and health.

The oracle (``reference``) is written from docs/metrics.md, independently of
the implementation: it keys series by label *strings* in a plain dict,
whereas Totals keys them by ints built from raw address bytes (the compiled
SeriesTable) or from ``int(address)`` (the pure-Python twin).  Every test
runs against both cores (``impl``).
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import re
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from captures import udp4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connstats
from connstats import _fastparse_py, metrics
from connstats._protocols import protocol_name

U64 = (1 << 64) - 1
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def Totals(impl):
    class BoundTotals(metrics.Totals):
        _core_module = impl.module

    return BoundTotals


# -- the oracle ---------------------------------------------------------------


def label(name, traffic, conn):
    if name == "traffic":
        return traffic
    if name == "proto":
        return "ip" if conn.proto == 0 else protocol_name(conn.proto)
    if name in ("src", "dst"):
        addr = getattr(conn, name).addr
        return "invalid" if addr is None else str(addr)
    return str(getattr(conn, name[:3]).port)


def reference(windows, labels=metrics.DEFAULT_LABELS, max_series=1000):
    """{label strings: (tx_packets, tx_bytes, rx_packets, rx_bytes)}."""
    series: dict[tuple, list[int]] = {}
    other = None
    for virtual, physical in windows:
        for traffic, table in (("virtual", virtual), ("physical", physical)):
            for conn, c in table.items():
                key = tuple(label(n, traffic, conn) for n in labels)
                if key not in series and len(series) >= max_series:
                    if other is None:
                        other = [0, 0, 0, 0]
                    sums = other
                else:
                    sums = series.setdefault(key, [0, 0, 0, 0])
                for i, v in enumerate(c):
                    sums[i] = (sums[i] + v) & U64
    out = {k: tuple(v) for k, v in series.items()}
    if other is not None:
        out[("other",) * len(labels)] = tuple(other)
    return out


def as_tuples(snapshot):
    return {k: tuple(v) for k, v in snapshot.items()}


# -- strategies ------------------------------------------------------------------

ADDRESSES = [
    None,
    ipaddress.ip_address("1.2.3.4"),
    ipaddress.ip_address("10.0.0.1"),
    ipaddress.ip_address("0.0.0.0"),
    ipaddress.ip_address("255.255.255.255"),
    # same int as 1.2.3.4: the family must keep them apart
    ipaddress.ip_address("::102:304"),
    ipaddress.ip_address("::ffff:1.2.3.4"),
    ipaddress.ip_address("::"),
    ipaddress.ip_address("fd7a:115c:a1e0::53"),
    ipaddress.ip_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
]
PROTOS = [0, 1, 6, 17, 58, 99, 132, 255, 47]
PORTS = [0, 1, 53, 443, 65535]
counters = st.one_of(
    st.integers(0, 3), st.integers(0, U64), st.sampled_from([U64, U64 - 1])
)


@st.composite
def tables(draw, impl, size=12):
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PROTOS),
                st.sampled_from(ADDRESSES),
                st.sampled_from(PORTS),
                st.sampled_from(ADDRESSES),
                st.sampled_from(PORTS),
                st.tuples(counters, counters, counters, counters),
            ),
            max_size=size,
        )
    )
    return {
        impl.Connection(p, impl.AddrPort(s, sp), impl.AddrPort(d, dp)): impl.Counts(*c)
        for p, s, sp, d, dp, c in entries
    }


label_choices = st.lists(
    st.sampled_from(metrics.LABELS), unique=True, max_size=len(metrics.LABELS)
).map(tuple)


@pytest.fixture(scope="module")
def c_module():
    module = pytest.importorskip("connstats._fastparse")
    return type(
        "C",
        (),
        {
            "module": module,
            "Connection": module.Connection,
            "AddrPort": module.AddrPort,
            "Counts": module.Counts,
        },
    )


# -- exact totals ---------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_totals_equal_the_reference(impl, Totals, data):
    labels = data.draw(label_choices, "labels")
    max_series = data.draw(st.integers(0, 8), "max_series")
    windows = data.draw(
        st.lists(st.tuples(tables(impl), tables(impl)), max_size=6), "windows"
    )
    totals = Totals(max_series=max_series, labels=labels)
    for virtual, physical in windows:
        totals(NOW, NOW, virtual, physical)
    expected = reference(windows, labels, max_series)
    snapshot = totals.snapshot()
    assert as_tuples(snapshot) == expected
    assert all(type(c) is impl.Counts for c in snapshot.values())
    # the overflow series keeps the sum over all series exact
    for i in range(4):
        assert sum(c[i] for c in snapshot.values()) & U64 == (
            sum(c[i] for v, p in windows for c in [*v.values(), *p.values()]) & U64
        )
    distinct = {
        tuple(label(n, traffic, conn) for n in labels)
        for v, p in windows
        for traffic, table in (("virtual", v), ("physical", p))
        for conn in table
    }
    assert totals.series == min(max_series, len(distinct))
    assert totals.health().windows == len(windows)
    if windows:
        v, p = windows[-1]
        assert totals.health().connections == len(v) + len(p)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_compiled_and_python_series_tables_agree(c_module, py_impl, data):
    """Differential: both SeriesTables give the same keys and sums."""
    impl = c_module
    fields = data.draw(
        st.lists(st.integers(0, 5), unique=True, max_size=6).map(tuple), "fields"
    )
    max_series = data.draw(st.integers(0, 6), "max_series")
    windows = data.draw(st.lists(tables(impl), max_size=4), "windows")
    c_table = impl.module.SeriesTable(fields, max_series)
    py_table = _fastparse_py.SeriesTable(fields, max_series)
    for table in windows:
        for traffic in ("virtual", "physical"):
            for _ in c_table.fold_slices(table, traffic):
                pass
            # the twin gets the same connections as the Python value types
            py_version = {
                py_impl.Connection(
                    k.proto,
                    py_impl.AddrPort(k.src.addr, k.src.port),
                    py_impl.AddrPort(k.dst.addr, k.dst.port),
                ): py_impl.Counts(*c)
                for k, c in table.items()
            }
            for _ in py_table.fold_slices(py_version, traffic):
                pass
    assert c_table.items() == py_table.items()
    assert len(c_table) == len(py_table)


def test_foreign_value_types_are_folded_too(impl, py_impl, Totals):
    """A user's dump may hand Totals tables of the other core's value types
    (NamedTuples) or its own: the generic path counts them the same."""
    conn = py_impl.Connection(
        6,
        py_impl.AddrPort(ipaddress.ip_address("10.0.0.1"), 1),
        py_impl.AddrPort(ipaddress.ip_address("fd00::1"), 2),
    )
    totals = Totals()
    totals(NOW, NOW, {conn: py_impl.Counts(1, 2, 3, 4)}, {})
    totals(NOW, NOW, {conn: py_impl.Counts(1, 2, 3, 4)}, {})
    assert as_tuples(totals.snapshot()) == {
        ("virtual", "tcp", "10.0.0.1", "fd00::1"): (2, 4, 6, 8)
    }


def test_labels_and_defaults(impl, Totals):
    totals = Totals()
    assert totals.labels == ("traffic", "proto", "src", "dst")
    assert totals.max_series == 1000
    conn = impl.Connection(
        17,
        impl.AddrPort(ipaddress.ip_address("192.0.2.1"), 5353),
        impl.AddrPort(None, 0),
    )
    phys = impl.Connection(
        0,
        impl.AddrPort(ipaddress.ip_address("2001:db8::1"), 0),
        impl.AddrPort(ipaddress.ip_address("198.51.100.7"), 41641),
    )
    totals(NOW, NOW, {conn: impl.Counts(1, 10, 0, 0)}, {phys: impl.Counts(0, 0, 2, 20)})
    assert as_tuples(totals.snapshot()) == {
        ("virtual", "udp", "192.0.2.1", "invalid"): (1, 10, 0, 0),
        ("physical", "ip", "2001:db8::1", "198.51.100.7"): (0, 0, 2, 20),
    }
    ports = Totals(labels=("dst_port", "src_port"))
    ports(NOW, NOW, {conn: impl.Counts(1, 10, 0, 0)}, {phys: impl.Counts(0, 0, 2, 20)})
    assert as_tuples(ports.snapshot()) == {
        ("0", "5353"): (1, 10, 0, 0),
        ("41641", "0"): (0, 0, 2, 20),
    }
    everything = Totals(labels=())
    everything(
        NOW, NOW, {conn: impl.Counts(1, 10, 0, 0)}, {phys: impl.Counts(0, 0, 2, 20)}
    )
    assert as_tuples(everything.snapshot()) == {(): (1, 10, 2, 20)}


def test_protocol_label_values_are_distinct():
    # The label value of proto must tell every protocol number apart.
    values = [label("proto", "virtual", connstats.Connection(p)) for p in range(256)]
    assert len(set(values)) == 256
    assert values[0] == "ip" and values[6] == "tcp" and values[255] == "fragment"


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"max_series": -1}, ValueError, "max_series"),
        ({"max_series": 1.5}, TypeError, "max_series"),
        ({"max_series": True}, TypeError, "max_series"),
        ({"labels": "src"}, TypeError, "labels"),
        ({"labels": ("src", "port")}, ValueError, "labels: unknown label 'port'"),
        ({"labels": ("src", "src")}, ValueError, "labels"),
        ({"labels": 5}, TypeError, "labels"),
    ],
)
def test_bad_arguments(Totals, kwargs, exc, text):
    with pytest.raises(exc, match=text):
        Totals(**kwargs)


def test_bad_tables_raise_and_keep_earlier_windows(impl, Totals):
    totals = Totals()
    conn = impl.Connection(6, impl.AddrPort(ipaddress.ip_address("10.0.0.1"), 1))
    totals(NOW, NOW, {conn: impl.Counts(1, 1, 1, 1)}, {})
    with pytest.raises(AttributeError):
        totals(NOW, NOW, {"not a connection": impl.Counts(1, 1, 1, 1)}, {})
    bad_counts = _fastparse_py.Counts(-1, 0, 0, 0)
    with pytest.raises(ValueError, match="tx_packets"):
        totals(NOW, NOW, {conn: bad_counts}, {})

    class Odd:
        proto = 6
        src = dst = _fastparse_py.AddrPort("10.0.0.1", 1)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="address"):
        totals(NOW, NOW, {Odd(): impl.Counts()}, {})
    assert as_tuples(totals.snapshot()) == {
        ("virtual", "tcp", "10.0.0.1", "invalid"): (1, 1, 1, 1)
    }
    with pytest.raises(TypeError, match="statistics"):
        totals.watch(object())  # type: ignore[arg-type]


# -- threads ----------------------------------------------------------------------


def _window(impl, thread, i, per_window):
    table = {}
    for j in range(per_window):
        n = (i * per_window + j) % 40
        conn = impl.Connection(
            17,
            impl.AddrPort(ipaddress.ip_address(f"10.{thread}.0.{n}"), 1000 + j),
            impl.AddrPort(ipaddress.ip_address("192.0.2.1"), 53),
        )
        table[conn] = impl.Counts(1, 100 + n, 2, 7)
    return table


@pytest.mark.parametrize("max_series", [10_000, 25])
def test_threads_fold_and_snapshot_exactly(impl, Totals, max_series):
    """Four threads fold 100 windows each while a fifth takes snapshots: the
    totals equal the reference, and no snapshot ever sees part of a window."""
    threads, rounds, per_window = 4, 100, 60
    windows = {
        t: [_window(impl, t, i, per_window) for i in range(rounds)]
        for t in range(threads)
    }
    totals = Totals(max_series=max_series)
    start = threading.Barrier(threads + 1)
    done = threading.Event()
    seen: list[int] = []

    def fold(t):
        start.wait()
        for table in windows[t]:
            totals(NOW, NOW, table, {})

    def snap():
        start.wait()
        while not done.is_set():
            seen.append(sum(c.tx_packets for c in totals.snapshot().values()))

    workers = [threading.Thread(target=fold, args=(t,)) for t in range(threads)]
    reader = threading.Thread(target=snap)
    for w in [*workers, reader]:
        w.start()
    for w in workers:
        w.join()
    done.set()
    reader.join()
    snapshot = as_tuples(totals.snapshot())
    all_windows = [(w, {}) for t in range(threads) for w in windows[t]]
    total = [sum(c[i] for w, _ in all_windows for c in w.values()) for i in range(4)]
    assert [sum(c[i] for c in snapshot.values()) for i in range(4)] == total
    if max_series >= 10_000:
        # no overflow: the order the threads came in does not matter
        assert snapshot == reference(all_windows, max_series=max_series)
    else:
        assert totals.series == max_series
        assert snapshot[("other",) * 4][0] > 0
    # whole windows only, and never going down
    assert all(s % per_window == 0 for s in seen)
    assert seen == sorted(seen)
    assert totals.health().windows == threads * rounds


# -- with Statistics ---------------------------------------------------------------


def flow_packet(i: int, size: int) -> bytes:
    return udp4(
        f"10.1.{i // 200}.{i % 200 + 1}", 2000 + i % 7, "192.0.2.9", 53, b"x" * size
    )


def test_many_windows_from_statistics(impl, Totals):
    """Statistics(dump=totals) cutting a window every 37 connections: the
    totals are what was sent, per series, and the health says how many
    windows came."""
    totals = Totals(max_series=50)
    sent: dict[tuple, list[int]] = {}
    with impl.Statistics(max_conns=37, dump=totals) as stats:
        for rnd in range(3):
            for i in range(600):
                size = 20 + (i + rnd) % 50
                stats.update_tx_virtual(flow_packet(i, size))
                key = ("virtual", "udp", f"10.1.{i // 200}.{i % 200 + 1}", "192.0.2.9")
                sums = sent.setdefault(key, [0, 0, 0, 0])
                sums[0] += 1
                sums[1] += 28 + size
    delivered = stats._flusher.windows_delivered
    assert delivered > 10
    health = totals.health()
    assert health.windows == delivered
    assert health.dump_errors == 0
    snapshot = as_tuples(totals.snapshot())
    packets = sum(c[0] for c in snapshot.values())
    assert packets + health.dropped_packets == 1800
    assert health.dropped_windows == stats.dropped_windows
    if health.dropped_windows == 0:
        own = {k: v for k, v in snapshot.items() if k[0] != "other"}
        assert len(own) == 50
        for key, counts in own.items():
            assert counts == tuple(sent[key])
        other = [sum(sent[k][i] for k in sent if k not in own) for i in range(4)]
        assert snapshot[("other",) * 4] == tuple(other)


def test_health_reports_dump_errors_and_dropped_windows(impl, Totals, caplog):
    """A user dump that calls totals: watch() brings in the instance's
    dropped windows (dump blocked while max_conns=1 cuts a window per new
    connection) and dump errors; they stay after the instance is gone."""
    caplog.set_level(logging.CRITICAL, logger="connstats")
    totals = Totals()
    release = threading.Event()
    calls = [0]

    def dump(start, end, virtual, physical):
        calls[0] += 1
        release.wait(10)
        totals(start, end, virtual, physical)
        if calls[0] % 5 == 0:
            raise RuntimeError("a failing dump")

    stats = impl.Statistics(max_conns=1, dump=dump)
    totals.watch(stats)
    totals.watch(stats)  # twice is once
    sent = 3000
    for i in range(sent):
        stats.update_tx_physical("10.0.0.1", (f"10.2.{i // 250}.{i % 250}", 1), 10)
    release.set()
    assert stats.shutdown(timeout=30)
    health = totals.health()
    assert stats.dropped_windows > 0
    assert stats.dump_errors > 0
    assert health.dropped_windows == stats.dropped_windows
    assert health.dropped_packets == stats.dropped_packets
    assert health.dropped_bytes == stats.dropped_bytes
    assert health.dump_errors == stats.dump_errors
    packets = sum(c.tx_packets for c in totals.snapshot().values())
    assert packets + health.dropped_packets == sent
    del stats
    gc.collect()
    assert totals.health() == health


def test_statistics_with_totals_as_dump_is_watched(impl, Totals):
    totals = Totals()
    stats = impl.Statistics(max_period=60, dump=totals)
    stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 10)
    stats.shutdown()
    assert totals._watched  # the instance is watched without a watch() call
    assert totals.health().windows == 1
    # a weak reference only: the instance goes away
    del stats
    gc.collect()
    totals.health()
    assert not totals._watched


# -- coroutine dumps ------------------------------------------------------------------


async def async_dump(start, end, virtual, physical):
    pass


class AsyncCallable:
    async def __call__(self, start, end, virtual, physical):
        pass


class InheritsAsyncCall(AsyncCallable):
    pass


async def async_gen_dump(start, end, virtual, physical):
    yield


@pytest.mark.parametrize(
    "dump",
    [
        async_dump,
        AsyncCallable(),
        InheritsAsyncCall(),
        AsyncCallable().__call__,
        async_gen_dump,
        pytest.param(__import__("functools").partial(async_dump, NOW), id="partial"),
    ],
)
def test_statistics_refuses_coroutine_dumps(impl, dump):
    with pytest.raises(TypeError, match=r"dump: .*connstats\.aio\.AsyncStatistics"):
        impl.Statistics(max_period=1, dump=dump)


def test_dump_returning_a_coroutine_counts_as_an_error(impl, caplog):
    """A lambda around an async def cannot be seen at construction: each
    window it gets is counted in dump_errors and logged, not lost silently
    (and no "never awaited" warning, which this suite turns into errors)."""
    stats = impl.Statistics(max_period=60, dump=lambda *a: async_dump(*a))
    stats.update_tx_physical("10.0.0.1", ("10.0.0.2", 1), 10)
    with caplog.at_level(logging.ERROR, logger="connstats"):
        assert stats.shutdown(timeout=10)
        gc.collect()
    assert stats.dump_errors == 1
    assert "AsyncStatistics" in caplog.text


def test_sync_callables_are_accepted(impl):
    class Sync:
        def __call__(self, *args):
            pass

    for dump in (print, lambda *a: None, Sync(), Sync().__call__, metrics.Totals()):
        impl.Statistics(max_period=1, dump=dump).shutdown()


# -- no dependency in the core --------------------------------------------------------


def test_importing_connstats_imports_no_metrics_library():
    code = (
        "import sys, connstats, connstats.metrics, connstats.aio, connstats.export\n"
        "t = connstats.metrics.Totals()\n"
        "s = connstats.Statistics(max_period=1, dump=t); s.shutdown()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_repr(Totals):
    totals = Totals(max_series=3)
    assert "series=0/3" in repr(totals) and "windows=0" in repr(totals)


def test_fold_is_sliced_for_packet_threads(impl):
    """fold_slices yields every 2048 connections (both cores), as window
    materialization does, so a packet thread gets the GIL back in between."""
    table = {
        impl.Connection(
            6, impl.AddrPort(ipaddress.ip_address(f"10.0.{i // 256}.{i % 256}"), i)
        ): impl.Counts(1, 1, 0, 0)
        for i in range(5000)
    }
    series = impl.module.SeriesTable((2,), 10)
    assert sum(1 for _ in series.fold_slices(table, "virtual")) == 2
    assert sum(v[0] for _, v in series.items()) == 5000


# -- the docs' examples run ------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_blocks(page: str) -> list[str]:
    path = DOCS / page
    if not path.exists():
        pytest.skip(f"{path} is not in this tree (an sdist without docs/)")
    text = path.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", ["metrics.md", "asyncio.md"])
def test_docs_examples_run(page):
    """Every ```python block of the page is a complete program: run each in a
    fresh interpreter, as a reader would paste it."""
    blocks = _python_blocks(page)
    assert blocks
    for block in blocks:
        for needed in ("prometheus_client", "opentelemetry"):
            if needed in block:
                pytest.importorskip(needed)
        subprocess.run(
            [sys.executable, "-c", block], check=True, timeout=120, cwd=DOCS.parent
        )
