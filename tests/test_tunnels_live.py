"""The kernel's own tunnel devices, captured: tcpdump's file and a live
``connstats capture --decap`` against tshark.

Each test builds two network namespaces ``cs-tun-*`` joined by a veth pair
(IPv4 192.0.2.2 -> 192.0.2.1, IPv6 2001:db8:1::2 -> ::1, static neighbours),
puts a tunnel device of one kind in each (``ip link add ... type vxlan``,
``geneve``, ``gre``, ``gretap``, ``erspan``, ``ipip``, ``sit``, ``ip6tnl``,
``ip6gre``) with inner addresses, and pings and sends UDP through it while
tcpdump and ``connstats capture --decap -w TEE.pcapng`` capture the veth in
the receiving namespace.  Then:

* ``connstats read --decap`` of tcpdump's file gives tshark's table of it;
* the live counts (tx as sent, rx swapped back) give tshark's table of the
  packets the live capture wrote to its tee file;
* the pings are in both, with the tunnel's VNI or key.

Everything is removed afterwards.  A kind the running kernel lacks (no
``CONFIG_GENEVE``, say) is skipped with the kernel's answer; without root,
``ip``, tcpdump or tshark everything is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import tshark_tunnels as tt

from connstats.cli import main


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "network namespaces and AF_PACKET need root"
    for tool in ("ip", "tcpdump", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if tt.TSHARK is None:
        return "tshark is not installed"
    return None


_REASON = _why_not()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
ROOT = Path(__file__).resolve().parents[1]

A4, B4 = "192.0.2.2", "192.0.2.1"
A6, B6 = "2001:db8:1::2", "2001:db8:1::1"
INNER4 = ("10.9.0.2", "10.9.0.1")
INNER6 = ("fd09::2", "fd09::1")

# kind -> (ip link type and arguments with {local}/{remote}, underlay 4|6,
#          inner 4|6, layer 2?, VNI or key the rows carry)
KINDS = {
    "vxlan": ("vxlan id 42 dstport 4789 local {local} remote {remote}", 4, 4, True, 42),
    "vxlan-linux-port": ("vxlan id 43 dstport 8472 local {local} remote {remote}", 4, 4, True, 43),
    "vxlan-over-ipv6": ("vxlan id 44 dstport 4789 local {local} remote {remote}", 6, 6, True, 44),
    "geneve": ("geneve id 45 remote {remote}", 4, 4, True, 45),
    "gre": ("gre key 46 local {local} remote {remote}", 4, 4, False, 46),
    "gretap": ("gretap key 47 local {local} remote {remote}", 4, 4, True, 47),
    "erspan-ii": ("erspan seq key 48 local {local} remote {remote} erspan_ver 1 erspan 123",
                  4, 4, True, 123),
    "erspan-iii": ("erspan seq key 49 local {local} remote {remote} erspan_ver 2 "
                   "erspan_dir egress erspan_hwid 7", 4, 4, True, 49),
    "ipip": ("ipip local {local} remote {remote}", 4, 4, False, None),
    "sit": ("sit local {local} remote {remote}", 4, 6, False, None),
    "ip4ip6": ("ip6tnl mode ip4ip6 local {local} remote {remote}", 6, 4, False, None),
    "ip6ip6": ("ip6tnl mode ip6ip6 encaplimit none local {local} remote {remote}",
               6, 6, False, None),
    "ip6gre": ("ip6gre key 50 local {local} remote {remote}", 6, 4, False, 50),
}  # fmt: skip


def _env() -> dict[str, str]:
    import connstats

    env = dict(os.environ)
    if Path(connstats.__file__ or "").resolve().is_relative_to(ROOT):
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH")) if p
        )
    return env


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    )


class TunnelLab:
    """Namespaces a (sender) and b (capturer), a veth pair, one tunnel each."""

    def __init__(self, kind: str) -> None:
        tag = f"{os.getpid() % 100000}"
        self.a, self.b = f"cs-tun-{tag}-a", f"cs-tun-{tag}-b"
        self.spec = KINDS[kind]

    def __enter__(self) -> TunnelLab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sh(self, ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _setup(self) -> None:
        link, under, inner, l2, _vni = self.spec
        _ip("netns", "add", self.a)
        _ip("netns", "add", self.b)
        _ip("link", "add", "veth0", "netns", self.a, "type", "veth",
            "peer", "name", "veth0", "netns", self.b)  # fmt: skip
        for ns in (self.a, self.b):
            # no router solicitations, DAD or link-local chatter on any device
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_ra=0")
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1")
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.all.addr_gen_mode=1")
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.veth0.addr_gen_mode=1")
            _ip("-n", ns, "link", "set", "lo", "up")
        for ns, v4, v6 in ((self.a, A4, A6), (self.b, B4, B6)):
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", "veth0")
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", "veth0", "nodad")
            _ip("-n", ns, "link", "set", "veth0", "up")
        for ns, peer, v4, v6 in ((self.a, self.b, B4, B6), (self.b, self.a, A4, A6)):
            mac = self.mac(peer, "veth0")
            _ip("-n", ns, "neigh", "replace", v4, "lladdr", mac, "dev", "veth0",
                "nud", "permanent")  # fmt: skip
            _ip("-n", ns, "neigh", "replace", v6, "lladdr", mac, "dev", "veth0",
                "nud", "permanent")  # fmt: skip
        local_remote = {self.a: (A4, B4), self.b: (B4, A4)}
        if under == 6:
            local_remote = {self.a: (A6, B6), self.b: (B6, A6)}
        inner_addr = {self.a: INNER4[0], self.b: INNER4[1]}
        if inner == 6:
            inner_addr = {self.a: INNER6[0], self.b: INNER6[1]}
        for ns in (self.a, self.b):
            local, remote = local_remote[ns]
            args = link.format(local=local, remote=remote).split()
            try:
                _ip("-n", ns, "link", "add", "tun0", "type", *args)
            except subprocess.CalledProcessError as exc:
                pytest.skip(
                    f"the kernel has no such tunnel device "
                    f"('ip link add tun0 type {' '.join(args)}': {exc.stderr.strip()})"
                )
            self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.tun0.addr_gen_mode=1")
            if inner == 4:
                self.sh(ns, "sysctl", "-qw", "net.ipv6.conf.tun0.disable_ipv6=1")
            plen = "24" if inner == 4 else "64"
            extra = ["nodad"] if inner == 6 else []
            _ip(
                "-n",
                ns,
                "addr",
                "add",
                f"{inner_addr[ns]}/{plen}",
                "dev",
                "tun0",
                *extra,
            )
            _ip("-n", ns, "link", "set", "tun0", "up")
        if l2:
            for ns, peer in ((self.a, self.b), (self.b, self.a)):
                _ip("-n", ns, "neigh", "replace", inner_addr[peer], "lladdr",
                    self.mac(peer, "tun0"), "dev", "tun0", "nud", "permanent")  # fmt: skip
        self.inner = inner_addr
        time.sleep(0.3)  # let the devices settle before anything listens

    def mac(self, ns: str, dev: str) -> str:
        out = _ip("-j", "-n", ns, "link", "show", "dev", dev).stdout
        return str(json.loads(out)[0]["address"])

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)

    def traffic(self) -> None:
        """Three pings, then four UDP datagrams (port 5000, answered by ICMP)."""
        dst = self.inner[self.b]
        self.sh(self.a, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)
        family = "AF_INET6" if ":" in dst else "AF_INET"
        self.sh(
            self.a,
            sys.executable,
            "-c",
            "import socket, time\n"
            f"s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
            f"s.bind(('{self.inner[self.a]}', 40000))\n"
            "for i in range(4):\n"
            f"    s.sendto(b'x' * (100 + i), ('{dst}', 5000))\n"
            "    time.sleep(0.05)\n",
        )
        time.sleep(0.5)  # the last packets reach both captures


def _start(lab: TunnelLab, cmd: list[str], ready: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.b, *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if ready in line:
            return proc
    proc.kill()
    raise AssertionError(f"{cmd[0]} did not start: {proc.communicate()}")


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


def _swap(key: tuple) -> tuple:
    proto, src, dst, vni = key
    return (proto, dst, src, vni)


def _port(endpoint: str) -> str:
    """Special rows (protocol 0) write no ports; tshark's keys always have one."""
    if endpoint.startswith("[") or endpoint.count(":") == 1:
        return endpoint
    return f"[{endpoint}]:0" if ":" in endpoint else f"{endpoint}:0"


def _rows(messages: list[dict]) -> tuple[dict, dict]:
    """Per-packet tables from connstats' JSON: tx rows as they are, rx rows
    swapped back to the packets' own direction."""
    tables: tuple[dict, dict] = (
        defaultdict(lambda: [0, 0]),
        defaultdict(lambda: [0, 0]),
    )
    for message in messages:
        for name, table in (
            ("virtualTraffic", tables[0]),
            ("physicalTraffic", tables[1]),
        ):
            for r in message.get(name, []):
                key = (
                    r.get("proto", 0),
                    _port(r["src"]),
                    _port(r["dst"]),
                    r.get("vni"),
                )
                if r.get("txPkts"):
                    table[key][0] += r["txPkts"]
                    table[key][1] += r["txBytes"]
                if r.get("rxPkts"):
                    table[_swap(key)][0] += r["rxPkts"]
                    table[_swap(key)][1] += r["rxBytes"]
    return tuple({k: tuple(v) for k, v in t.items()} for t in tables)  # type: ignore[return-value]


def _pings(table: dict, lab: TunnelLab, vni: int | None) -> tuple[int, int]:
    a, b = lab.inner[lab.a], lab.inner[lab.b]
    proto = 1 if ":" not in a else 58
    wrap = (lambda t: f"[{t}]:0") if ":" in a else (lambda t: f"{t}:0")
    there = table.get((proto, wrap(a), wrap(b), vni), (0, 0))[0]
    back = table.get((proto, wrap(b), wrap(a), vni), (0, 0))[0]
    return there, back


@pytest.mark.parametrize("kind", list(KINDS))
def test_kernel_tunnels_against_tshark(kind, tmp_path, capsys):
    _link, _under, _inner, _l2, vni = KINDS[kind]
    pure = kind == "vxlan-linux-port"  # the recvfrom fallback once
    file = tmp_path / "tcpdump.pcap"
    tee = tmp_path / "tee.pcapng"
    with TunnelLab(kind) as lab:
        dump = _start(
            lab,
            [
                "tcpdump",
                "-n",
                "--immediate-mode",
                "-i",
                "veth0",
                "-s",
                "0",
                "-U",
                "-w",
                str(file),
            ],
            "listening on",
        )
        env_pure = ["env", "CONNSTATS_NO_EXTENSIONS=1"] if pure else []
        live = _start(
            lab,
            [*env_pure, sys.executable, "-m", "connstats", "capture", "-i", "veth0",
             "--decap", "--format", "jsonl", "-w", str(tee)],
            "connstats: capturing",
        )  # fmt: skip
        time.sleep(0.3)
        lab.traffic()
        live_out, live_err = _stop(live)
        _stop(dump)
    # 1. tcpdump's file, read with --decap, against tshark
    assert main(["read", "--decap", str(file), "--format", "jsonl"]) == 0
    read_out = capsys.readouterr().out
    want_file = tt.expected(file)
    got_file = _rows([json.loads(line) for line in read_out.splitlines()])
    assert got_file == want_file
    # three echo requests; replies and port unreachables come back
    there, back = _pings(got_file[0], lab, vni)
    assert there == 3 and back >= 3
    # 2. the live capture against tshark on the packets it counted (its tee)
    messages = [json.loads(line) for line in live_out.splitlines()]
    summary = messages.pop()["captureSummary"]
    got_live = _rows(messages)
    assert got_live == tt.expected(tee)
    assert _pings(got_live[0], lab, vni) == (there, back)
    assert summary["tunnels"] == sum(n for n, _ in got_live[1].values())
    assert summary["badTunnels"] == 0
    # physical rows: the tunnel's endpoints and its VNI or key
    ends = {(r[1].rsplit(":", 1)[0], r[2].rsplit(":", 1)[0]) for r in got_live[1]}
    assert ends <= {
        (A4, B4),
        (B4, A4),
        (f"[{A6}]", f"[{B6}]"),
        (f"[{B6}]", f"[{A6}]"),
    }
    assert {r[3] for r in got_live[1]} == {vni}
