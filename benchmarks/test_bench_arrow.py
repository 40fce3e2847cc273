"""A window of 1,000,000 connections as an Arrow table, against building its dicts.

``connstats.export.arrow.window_table`` fills one buffer per column from the
cut window's C table in one pass and hands them to pyarrow without a copy;
``window.to_dicts()`` builds a Connection and a Counts per connection (what
``extract()`` and ``dump`` get).  The target (issue 20) is Arrow >= 5x faster.
``arrow.table`` from the dicts (what a ``dump`` callback can call) and the
pure-Python core's column pass (the baseline, on 100,000 connections) are in
the same run.
"""

import pytest
from harness import record
from workloads import joined, window_packets

import connstats
from connstats import _fastparse_py
from connstats._impl import IS_COMPILED

pa = pytest.importorskip(
    "pyarrow", reason="pyarrow is not installed (connstats[arrow])"
)

from connstats.export import arrow  # noqa: E402

CONNS = 1_000_000
BASELINE_CONNS = 100_000

pytestmark = pytest.mark.skipif(
    not IS_COMPILED, reason="the compiled core is not in use"
)


@pytest.fixture(scope="module")
def buffers():
    packets = window_packets("realistic", CONNS)
    return [joined(packets[i : i + 8192]) for i in range(0, CONNS, 8192)]


def _window(buffers, track_times=False):
    core = connstats._impl.core.Core(track_times=track_times)
    for buf, offsets, lengths in buffers:
        core.update_tx_virtual_buffer(buf, offsets, lengths)
    window = core.cut()
    assert len(window) == CONNS
    return window


@pytest.mark.benchmark(group="arrow")
def test_arrow_window_table_1m(benchmark, buffers):
    record(
        benchmark, unit="connection", count=CONNS, path="arrow", workload="window-1m"
    )
    table = benchmark.pedantic(
        lambda w: arrow.window_table(w, 0, 1),
        setup=lambda: ((_window(buffers),), {}),
        rounds=5,
    )
    assert table.num_rows == CONNS


@pytest.mark.benchmark(group="arrow")
def test_arrow_to_dicts_1m(benchmark, buffers):
    record(
        benchmark, unit="connection", count=CONNS, path="to_dicts", workload="window-1m"
    )
    virtual, _ = benchmark.pedantic(
        lambda w: w.to_dicts(), setup=lambda: ((_window(buffers),), {}), rounds=3
    )
    assert len(virtual) == CONNS


@pytest.mark.benchmark(group="arrow")
def test_arrow_table_from_dicts_1m(benchmark, buffers):
    record(
        benchmark,
        unit="connection",
        count=CONNS,
        path="arrow-dicts",
        workload="window-1m",
    )
    tables = _window(buffers).to_dicts()
    table = benchmark.pedantic(lambda: arrow.table(0, 1, *tables), rounds=3)
    assert table.num_rows == CONNS


@pytest.mark.benchmark(group="arrow")
def test_arrow_baseline_pure_100k(benchmark, buffers):
    record(
        benchmark,
        unit="connection",
        count=BASELINE_CONNS,
        path="arrow-pure",
        workload="window-100k",
    )
    core = _fastparse_py.Core()
    for buf, offsets, lengths in buffers[: BASELINE_CONNS // 8192 + 1]:
        core.update_tx_virtual_buffer(buf, offsets, lengths)
    virtual, physical = core.cut().to_dicts()
    some = dict(list(virtual.items())[:BASELINE_CONNS])
    cols = benchmark.pedantic(lambda: _fastparse_py.columns((some, physical)), rounds=1)
    assert cols.n == BASELINE_CONNS
