"""The Go port of Tailscale's connstats (benchmarks/goport) stays comparable.

The ratios themselves come from ``python benchmarks/go_compare.py``
(interleaved pairs of fresh processes, see RESULTS.md); here, in every mode,
the port must count exactly what connstats counts on the same packets (so
the comparison times the same work), and the comparison script must run.
Skipped where ``go`` is not installed (Debian: golang-go).
"""

from __future__ import annotations

import shutil

import go_compare
import pytest
import workloads

pytestmark = pytest.mark.skipif(
    shutil.which("go") is None, reason="go not on PATH (Debian package golang-go)"
)


@pytest.fixture(scope="module")
def goport(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("goport")
    return go_compare.build_goport(tmp), tmp


def test_go_port_counts_like_connstats(goport):
    exe, tmp = goport
    packets = workloads.mixed(packets=20_000, flows=2_000)
    # the service addresses, which both leave out (connstats: ignore_destinations)
    packets += [
        workloads.udp4(workloads.CLIENT4, 0x64646464, 5353, 53, 80),
        workloads.ipv6(
            workloads.CLIENT6, 0xFD7A115CA1E000000000000000000053, 17, 1, 53, 90
        ),
    ] * 3
    go = go_compare.go_table(exe, packets, tmp)
    assert len(go) == 2_000
    assert go == go_compare.connstats_table(packets)


@pytest.mark.parametrize("path", ["single", "batch"])
def test_go_compare_runs(goport, path):
    exe, tmp = goport
    result = go_compare.compare(exe, tmp, 1000, path, pairs=1, rounds=1)
    assert result["go_ns"] > 0 and result["connstats_ns"] > 0
