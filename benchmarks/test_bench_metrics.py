"""connstats.metrics.Totals: folding a 100,000-connection window (issue 19).

Totals runs as ``dump`` on the flush thread, off the packet path; the target
is <= 0.5 us per connection.  Timed in the steady state: a Totals that has
already seen the window (its ``max_series=1000`` series exist, the rest of
the window goes to the overflow series ``other``), on the two windows of
test_bench_materialize.py:

* realistic: 1,000 clients x 100 source ports to 4 servers (4,000 address
  pairs: 1,000 series of their own, 3,000 folded into ``other``);
* adversarial: every connection has its own address pair (100,000 pairs).

In the same run: the same Totals on the pure-Python core's SeriesTable
(``baseline``), and the obvious pure-Python fold keyed by ipaddress objects
(``naive``), whose Python-level ``__hash__`` is why the table is in C.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from harness import record
from workloads import joined, window_packets

import connstats
from connstats import _fastparse_py, metrics

CONNS = 100_000
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def tables(is_quick):
    count = 5_000 if is_quick else CONNS
    out = {}
    for kind in ("realistic", "adversarial"):
        packets = window_packets(kind, count)
        stats = connstats.Statistics()
        for i in range(0, count, 4096):
            stats.update_tx_virtual_buffer(*joined(packets[i : i + 4096]))
        virtual, physical = stats.extract()
        assert len(virtual) == count and not physical
        out[kind] = virtual
    return out


class PythonTotals(metrics.Totals):
    _core_module = _fastparse_py


def naive_fold(series, table, max_series=1000):
    """What one would write first: series keyed by ipaddress objects."""
    other = series.setdefault(None, [0, 0, 0, 0])
    for conn, c in table.items():
        key = ("virtual", conn.proto, conn.src.addr, conn.dst.addr)
        sums = series.get(key)
        if sums is None:
            if len(series) <= max_series:  # `other` is one of them
                sums = series[key] = [0, 0, 0, 0]
            else:
                sums = other
        sums[0] += c.tx_packets
        sums[1] += c.tx_bytes
        sums[2] += c.rx_packets
        sums[3] += c.rx_bytes


def _fold(benchmark, tables, kind, cls, path, rounds):
    table = tables[kind]
    record(
        benchmark,
        unit="connection",
        count=len(table),
        path=path,
        workload=f"window-{kind}",
    )
    totals = cls()
    totals(NOW, NOW, table, {})  # steady state: the series exist
    calls = [0]

    def fold():
        calls[0] += 1
        totals(NOW, NOW, table, {})

    benchmark.pedantic(fold, rounds=rounds)
    packets = sum(c.tx_packets for c in totals.snapshot().values())
    assert packets == len(table) * (1 + calls[0])
    assert totals.series == min(1000, len(table))


@pytest.mark.benchmark(group="metrics")
def test_totals_fold_realistic_100k(benchmark, tables):
    _fold(benchmark, tables, "realistic", metrics.Totals, "totals", 20)


@pytest.mark.benchmark(group="metrics")
def test_totals_fold_adversarial_100k(benchmark, tables):
    _fold(benchmark, tables, "adversarial", metrics.Totals, "totals", 20)


@pytest.mark.benchmark(group="metrics")
def test_totals_fold_baseline_realistic_100k(benchmark, tables):
    _fold(benchmark, tables, "realistic", PythonTotals, "baseline", 3)


@pytest.mark.benchmark(group="metrics")
def test_totals_fold_baseline_adversarial_100k(benchmark, tables):
    _fold(benchmark, tables, "adversarial", PythonTotals, "baseline", 3)


@pytest.mark.benchmark(group="metrics")
@pytest.mark.parametrize("kind", ["realistic", "adversarial"])
def test_totals_fold_naive(benchmark, tables, kind):
    table = tables[kind]
    record(
        benchmark,
        unit="connection",
        count=len(table),
        path="naive",
        workload=f"window-{kind}",
    )
    series: dict = {}
    naive_fold(series, table)
    benchmark.pedantic(naive_fold, args=(series, table), rounds=5)
    assert len(series) == min(1000, len(table)) + 1
