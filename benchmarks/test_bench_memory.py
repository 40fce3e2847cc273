"""Memory per tracked connection at 100,000 and 1,000,000 connections.

Each case runs ``memory.py`` in a fresh interpreter (so earlier benchmarks'
allocations do not blur the RSS figure) and stores its figures in
``extra_info`` (unit "connection": the timed value is the insert cost per
new connection measured inside that process, not the subprocess's runtime).
In the short mode (``--benchmark-disable``) the 1,000,000-connection
baseline, the slowest case, shrinks to 100,000.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import record

SCRIPT = Path(__file__).resolve().parent / "memory.py"


def _measure(benchmark, impl, count, quick=False, family="ipv4"):
    if quick and impl == "baseline" and count > 100_000:
        count = 100_000
    result = {}

    def run():
        out = subprocess.run(
            [sys.executable, str(SCRIPT), impl, str(count), family],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        result.update(json.loads(out.stdout))

    benchmark.pedantic(run, rounds=1)
    assert result["connections"] == count
    record(
        benchmark,
        unit="memory",
        count=count,
        path=impl if family == "ipv4" else f"{impl}-{family}",
        workload=f"memory-{count}" if family == "ipv4" else f"memory-{family}-{count}",
        **{
            k: v
            for k, v in result.items()
            if k not in ("impl", "connections", "family")
        },
    )
    if impl == "connstats":
        assert result["table_per_connection"] < 200
        if family == "ipv4" and count == 1_000_000:
            # 48-byte entries and 16 bytes of index per IPv4 connection
            assert result["table_per_connection"] <= 72


@pytest.mark.benchmark(group="memory")
def test_memory_connstats_100k(benchmark):
    _measure(benchmark, "connstats", 100_000)


@pytest.mark.benchmark(group="memory")
def test_memory_connstats_1m(benchmark):
    _measure(benchmark, "connstats", 1_000_000)


@pytest.mark.benchmark(group="memory")
def test_memory_connstats_ipv6_1m(benchmark):
    # issue 24: IPv6 keeps the 72-byte entries
    _measure(benchmark, "connstats", 1_000_000, family="ipv6")


@pytest.mark.benchmark(group="memory")
def test_memory_baseline_100k(benchmark):
    _measure(benchmark, "baseline", 100_000)


@pytest.mark.benchmark(group="memory")
def test_memory_baseline_1m(benchmark, is_quick):
    _measure(benchmark, "baseline", 1_000_000, is_quick)
