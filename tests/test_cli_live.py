"""``connstats capture``: live counting with AF_PACKET in a network namespace.

The live test builds two namespaces joined by a veth pair, captures on one
end and sends a known number of UDP and ICMP packets of known sizes from the
other; all traffic stays inside the namespaces (documentation addresses
192.0.2.0/24).  It needs root (CI runs as root) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from subproc import source_tree_env

from connstats.cli import main

IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="AF_PACKET capture is Linux-only"
)


_env = source_tree_env


@linux_only
def test_no_privilege_gives_one_line(capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refuse)
    assert main(["capture", "--interface", "lo", "--count", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "connstats: capturing needs root or the CAP_NET_RAW capability "
        "(try sudo, or 'setcap cap_net_raw+ep' on the Python binary)\n"
    )


@linux_only
@pytest.mark.skipif(not IS_ROOT, reason="opening an AF_PACKET socket needs root")
def test_unknown_interface(capsys):
    assert main(["capture", "--interface", "nosuchif0", "--count", "1"]) == 1
    assert (
        capsys.readouterr().err == "connstats: no such network interface: nosuchif0\n"
    )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


SENDER = r"""
import socket, struct, sys, time
def checksum(data):
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("192.0.2.2", 5000))
for _ in range(5):
    u.sendto(b"u" * 100, ("192.0.2.1", 6000))   # 20 + 8 + 100 = 128 bytes
    time.sleep(0.05)
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(1, 4):
    body = struct.pack(">BBHHH", 8, 0, 0, 0x4242, seq) + b"p" * 56
    body = body[:2] + struct.pack(">H", checksum(body)) + body[4:]
    r.sendto(body, ("192.0.2.1", 0))            # 20 + 8 + 56 = 84 bytes
    time.sleep(0.05)
"""

SINK = r"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 6000))
s.settimeout(30)
for _ in range(5):
    s.recv(2048)
"""


@linux_only
@pytest.mark.skipif(not IS_ROOT, reason="network namespaces and AF_PACKET need root")
@pytest.mark.skipif(
    shutil.which("ip") is None, reason="the 'ip' command (iproute2) is not installed"
)
def test_live_capture_counts_exact_packets_and_bytes():
    a, b = f"cs-live-a-{os.getpid()}", f"cs-live-b-{os.getpid()}"
    procs: list[subprocess.Popen] = []
    try:
        try:
            _ip("netns", "add", a)
        except subprocess.CalledProcessError as exc:
            # Root in a container without CAP_SYS_ADMIN: no namespaces to make.
            pytest.skip(
                f"cannot create a network namespace: {exc.stderr.decode().strip()}"
            )
        _ip("netns", "add", b)
        _ip(
            "link",
            "add",
            "cs-va",
            "netns",
            a,
            "type",
            "veth",
            "peer",
            "name",
            "cs-vb",
            "netns",
            b,
        )
        for ns, dev, addr in (
            (a, "cs-va", "192.0.2.1/24"),
            (b, "cs-vb", "192.0.2.2/24"),
        ):
            # No IPv6 on the link: no neighbour discovery or MLD packets to count.
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    f"net.ipv6.conf.{dev}.disable_ipv6=1",
                ],
                check=True,
                timeout=30,
            )
            _ip("-n", ns, "addr", "add", addr, "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        sink = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", SINK])
        procs.append(sink)
        capture = subprocess.Popen(
            ["ip", "netns", "exec", a, sys.executable, "-m", "connstats", "capture", "--interface", "cs-va",
             "--count", "11", "--duration", "30", "--format", "jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        procs.append(capture)
        assert capture.stderr is not None
        ready = capture.stderr.readline()
        assert ready == "connstats: capturing on cs-va for 30 s or for 11 packets\n", (
            ready
        )
        time.sleep(0.3)  # let the sink bind
        subprocess.run(
            ["ip", "netns", "exec", b, sys.executable, "-c", SENDER],
            check=True,
            timeout=60,
        )
        out, err = capture.communicate(timeout=60)
        assert capture.returncode == 0, err
        assert err == ""
        totals: dict[tuple, list[int]] = {}
        lines = [json.loads(line) for line in out.splitlines()]
        # the last line sums the capture up, kernel drop count included
        summary = lines.pop()["captureSummary"]
        assert (summary["packets"], summary["kernelDrops"]) == (11, 0)
        for message in lines:
            for entry in message["virtualTraffic"]:
                key = (entry["proto"], entry["src"], entry["dst"])
                counts = totals.setdefault(key, [0, 0, 0, 0])
                for i, field in enumerate(("txPkts", "txBytes", "rxPkts", "rxBytes")):
                    counts[i] += entry.get(field, 0)
        assert totals == {
            # Received UDP: src/dst swapped so the local side comes first.
            (17, "192.0.2.1:6000", "192.0.2.2:5000"): [0, 0, 5, 5 * 128],
            # Echo requests received (rx), replies sent by the kernel (tx).
            (1, "192.0.2.1:0", "192.0.2.2:0"): [3, 3 * 84, 3, 3 * 84],
        }
        sink.wait(timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
