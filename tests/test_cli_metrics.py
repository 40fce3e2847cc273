"""``connstats capture --metrics HOST:PORT``: Prometheus metrics while capturing.

The live test captures on the loopback of a network namespace of its own
(nothing else runs there), sends known UDP packets, scrapes the endpoint
from inside the namespace while the capture runs and compares the scraped
totals with what the same capture printed as JSON lines.  Needs root (CI
runs as root) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from subproc import source_tree_env

from connstats._protocols import protocol_name
from connstats.cli import main

pytest.importorskip("prometheus_client")

IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0
SENDER = r"""
import socket
for src, port, dport, n, size in (("127.0.0.1", 5000, 6000, 5, 100), ("127.0.0.2", 5001, 6001, 3, 40)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, port))
    for _ in range(n):
        s.sendto(b"m" * size, ("127.0.0.1", dport))
"""

SCRAPER = r"""
import json, sys, time, urllib.request
from prometheus_client.parser import text_string_to_metric_families
url, want = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    samples = [
        [s.name, s.labels, s.value]
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    packets = sum(v for n, _, v in samples if n in ("connstats_tx_packets_total", "connstats_rx_packets_total"))
    if packets == want or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps(samples))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only")
@pytest.mark.skipif(not IS_ROOT, reason="network namespaces and AF_PACKET need root")
@pytest.mark.skipif(
    shutil.which("ip") is None, reason="the 'ip' command (iproute2) is not installed"
)
def test_capture_serves_the_totals_it_prints():
    ns = f"cs-metrics-{os.getpid()}"
    capture = None
    try:
        try:
            subprocess.run(
                ["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30
            )
        except subprocess.CalledProcessError as exc:
            pytest.skip(
                f"cannot create a network namespace: {exc.stderr.decode().strip()}"
            )
        subprocess.run(
            ["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30
        )
        run_in_ns = ["ip", "netns", "exec", ns, sys.executable]
        capture = subprocess.Popen(
            [*run_in_ns, "-m", "connstats", "capture", "--interface", "lo",
             "--proto", "udp", "--max-period", "0.2", "--metrics", "127.0.0.1:0",
             "--format", "jsonl", "--duration", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=source_tree_env(),
        )  # fmt: skip
        assert capture.stderr is not None
        serving = capture.stderr.readline()
        prefix = "connstats: serving Prometheus metrics at "
        assert serving.startswith(prefix), serving
        url = serving[len(prefix) :].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert capture.stderr.readline().startswith("connstats: capturing on lo")
        subprocess.run([*run_in_ns, "-c", SENDER], check=True, timeout=60)
        scraped = subprocess.run(
            [*run_in_ns, "-c", SCRAPER, url, "8"],
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
            env=source_tree_env(),
        )
        samples = json.loads(scraped.stdout)
        capture.send_signal(signal.SIGINT)
        out, err = capture.communicate(timeout=60)
        assert capture.returncode in (0, 130), err
    finally:
        if capture is not None and capture.poll() is None:
            capture.kill()
            capture.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    # What the capture printed, summed per series (traffic, proto, src, dst).
    printed: dict[tuple, list[int]] = {}
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines.pop()["captureSummary"]
    assert summary["packets"] == 8 and summary["kernelDrops"] == 0
    for message in lines:
        for traffic in ("virtual", "physical"):
            for entry in message.get(f"{traffic}Traffic", []):
                key = (
                    traffic,
                    protocol_name(entry["proto"]),
                    entry["src"].rpartition(":")[0],
                    entry["dst"].rpartition(":")[0],
                )
                sums = printed.setdefault(key, [0, 0, 0, 0])
                for i, field in enumerate(("txPkts", "txBytes", "rxPkts", "rxBytes")):
                    sums[i] += entry.get(field, 0)

    series: dict[tuple, list[float]] = {}
    for i, name in enumerate(
        (
            "connstats_tx_packets_total",
            "connstats_tx_bytes_total",
            "connstats_rx_packets_total",
            "connstats_rx_bytes_total",
        )
    ):
        for sample_name, labels, value in samples:
            if sample_name == name:
                key = (labels["traffic"], labels["proto"], labels["src"], labels["dst"])
                series.setdefault(key, [0, 0, 0, 0])[i] = value
    assert series == printed
    flows = {k[2:]: v for k, v in series.items()}
    assert {k: v[0] + v[2] for k, v in flows.items()} == {
        ("127.0.0.1", "127.0.0.1"): 5,
        ("127.0.0.2", "127.0.0.1"): 3,
    } or {k: v[0] + v[2] for k, v in flows.items()} == {
        ("127.0.0.1", "127.0.0.1"): 5,
        ("127.0.0.1", "127.0.0.2"): 3,
    }
    assert sum(v[1] + v[3] for v in series.values()) == 5 * 128 + 3 * 68
    health = {name: value for name, labels, value in samples if not labels}
    assert health["connstats_windows_total"] >= 1
    assert health["connstats_dropped_windows_total"] == 0
    assert health["connstats_dump_errors_total"] == 0
    capture_counters = {
        name: (labels, value)
        for name, labels, value in samples
        if name.startswith("connstats_capture_")
    }
    assert capture_counters["connstats_capture_packets_total"] == (
        {"interface": "lo"},
        8,
    )
    assert capture_counters["connstats_capture_kernel_dropped_total"][1] == 0


@pytest.mark.parametrize(
    "address", ["nonsense", "127.0.0.1", ":9464", "127.0.0.1:99999", "host:port"]
)
def test_bad_metrics_address_is_a_one_line_error(capsys, address):
    if not sys.platform.startswith("linux"):
        pytest.skip("capture is Linux-only")
    assert main(["capture", "--interface", "lo", "--metrics", address]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("connstats: --metrics: expected HOST:PORT")
    assert err.count("\n") == 1
