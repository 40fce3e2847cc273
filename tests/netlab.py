"""A two-namespace veth lab and a C UDP blaster, for live-capture tests and benchmarks.

``Lab`` creates namespaces ``cs-cap-<tag>-a`` (sender) and ``cs-cap-<tag>-b``
(receiver, where captures run) joined by the veth pair ``cs-cap-a`` /
``cs-cap-b``, addresses 192.0.2.2 and 192.0.2.1 (documentation range), IPv6
off and a static neighbour entry, so the link carries only what the test
sends.  The receiver holds a UDP socket on the target port that is never
read: once its buffer is full the kernel drops the datagrams silently,
without ICMP errors that would add packets to the capture.  Everything is
removed on exit.

The blaster (``sendmmsg`` in batches of 64, paced to a rate or flat out)
prints how many datagrams the kernel accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* cs_sender MODE SRC DST PORT COUNT RATE PAYLOAD FLOWS [IFNAME DSTMAC]
 * MODE udp: connected UDP sockets (the whole stack on both sides).
 * MODE raw: prebuilt Ethernet/IPv4/UDP frames on an AF_PACKET socket with
 * PACKET_QDISC_BYPASS, to DSTMAC (a MAC nobody owns makes the receiver
 * drop them right after the capture taps: the cheapest path to blast at).
 * RATE: packets/s, 0 = flat out.  Prints: sent failed seconds. */

enum { B = 64, MAXF = 256 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint16_t csum(const uint8_t *p, int n) {
    uint32_t s = 0;
    for (int i = 0; i + 1 < n; i += 2) s += (p[i] << 8) | p[i + 1];
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

int main(int argc, char **argv) {
    if (argc != 9 && argc != 11) { fprintf(stderr, "usage\n"); return 2; }
    int raw = strcmp(argv[1], "raw") == 0;
    long count = atol(argv[5]);
    double rate = atof(argv[6]);
    int payload = atoi(argv[7]), flows = atoi(argv[8]);
    int fds[MAXF];
    static uint8_t frames[MAXF][2048];
    static char buf[65536];
    struct in_addr sa, da;
    int flen = 0;
    if (flows < 1 || flows > MAXF || payload < 0 || payload > 1400) return 2;
    inet_pton(AF_INET, argv[2], &sa);
    inet_pton(AF_INET, argv[3], &da);
    memset(buf, 'x', sizeof buf);
    if (raw) {
        if (argc != 11) return 2;
        int fd = socket(AF_PACKET, SOCK_RAW, 0), one = 1;
        struct sockaddr_ll ll = {0};
        ll.sll_family = AF_PACKET;
        ll.sll_ifindex = if_nametoindex(argv[9]);
        if (fd < 0 || ll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) {
            perror("raw socket"); return 1;
        }
        setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
        unsigned m[6];
        sscanf(argv[10], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]);
        flen = 14 + 20 + 8 + payload;
        for (int f = 0; f < flows; f++) {
            uint8_t *e = frames[f], *ip = e + 14, *udp = ip + 20;
            for (int i = 0; i < 6; i++) e[i] = (uint8_t)m[i];
            memcpy(e + 6, "\x02\x00\x00\x00\x00\x02", 6);
            e[12] = 0x08; e[13] = 0x00;
            memset(ip, 0, 20);
            ip[0] = 0x45; ip[2] = (20 + 8 + payload) >> 8; ip[3] = (20 + 8 + payload) & 0xff;
            ip[8] = 64; ip[9] = 17;
            memcpy(ip + 12, &sa, 4); memcpy(ip + 16, &da, 4);
            uint16_t c = csum(ip, 20); ip[10] = c >> 8; ip[11] = c & 0xff;
            int sp = 40000 + f, dp = atoi(argv[4]);
            udp[0] = sp >> 8; udp[1] = sp & 0xff; udp[2] = dp >> 8; udp[3] = dp & 0xff;
            udp[4] = (8 + payload) >> 8; udp[5] = (8 + payload) & 0xff; udp[6] = udp[7] = 0;
            memset(udp + 8, 'x', payload);
            fds[f] = fd;
        }
    } else {
        for (int f = 0; f < flows; f++) {
            struct sockaddr_in src = {0}, dst = {0};
            src.sin_family = AF_INET; src.sin_port = htons(40000 + f); src.sin_addr = sa;
            dst.sin_family = AF_INET; dst.sin_port = htons(atoi(argv[4])); dst.sin_addr = da;
            fds[f] = socket(AF_INET, SOCK_DGRAM, 0);
            int big = 1 << 22;
            setsockopt(fds[f], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
            if (bind(fds[f], (struct sockaddr *)&src, sizeof src) < 0 ||
                connect(fds[f], (struct sockaddr *)&dst, sizeof dst) < 0) {
                perror("socket"); return 1;
            }
        }
    }
    struct mmsghdr msgs[MAXF][B];
    struct iovec iov[MAXF][B];
    for (int f = 0; f < flows; f++)
        for (int i = 0; i < B; i++) {
            iov[f][i].iov_base = raw ? (void *)frames[f] : (void *)buf;
            iov[f][i].iov_len = raw ? flen : payload;
            memset(&msgs[f][i], 0, sizeof msgs[f][i]);
            msgs[f][i].msg_hdr.msg_iov = &iov[f][i];
            msgs[f][i].msg_hdr.msg_iovlen = 1;
        }
    long sent = 0, failed = 0, f = 0;
    double start = now();
    while (sent < count && failed < 1000000) {
        int n = count - sent < B ? (int)(count - sent) : B;
        if (rate > 0) {
            double due = start + sent / rate;
            while (now() < due) {
                double gap = due - now();
                if (gap > 200e-6) { struct timespec s = {0, (long)(gap * 0.5e9)}; nanosleep(&s, NULL); }
            }
        }
        int r = sendmmsg(fds[f], msgs[f], n, 0);
        if (r <= 0) { failed += 1; continue; }
        sent += r;
        f = (f + 1) % flows;
    }
    printf("%ld %ld %.6f\n", sent, failed, now() - start);
    return 0;
}
"""

SINK = (
    "import socket, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('192.0.2.1', 9))\n"
    "print('ready', flush=True)\n"
    "time.sleep(86400)\n"
)

SRC, DST, PORT = "192.0.2.2", "192.0.2.1", 9
UDP_OVERHEAD = 28  # IPv4 + UDP headers
OTHER_MAC = "02:00:00:00:00:99"  # on no interface: frames to it are PACKET_OTHERHOST


BATCH = 64  # datagrams per sendmmsg call; flows take turns per call


def per_flow(count: int, flows: int) -> list[int]:
    """Datagrams the sender sends on each flow (source port 40000 + i)."""
    sent = [0] * flows
    for call, start in enumerate(range(0, count, BATCH)):
        sent[call % flows] += min(BATCH, count - start)
    return sent


def can_run() -> str | None:
    """Why the lab cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "network namespaces and AF_PACKET need root"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler for the UDP sender"
    return None


def build_sender(directory: str) -> str:
    src = Path(directory) / "cs_sender.c"
    exe = Path(directory) / "cs_sender"
    src.write_text(SENDER_C)
    cc = shutil.which("gcc") or shutil.which("cc") or "cc"
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, timeout=120)
    return str(exe)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Lab:
    def __init__(self, tag: str = "") -> None:
        tag = tag or str(os.getpid())
        self.a = f"cs-cap-{tag}-a"
        self.b = f"cs-cap-{tag}-b"
        self.dev_a, self.dev_b = "cs-cap-a", "cs-cap-b"
        self._tmp = tempfile.TemporaryDirectory(prefix="cs-cap-")
        self.sender = ""
        self._sink: subprocess.Popen[str] | None = None
        #: Processes started in the lab's namespaces (``Lab.spawn``): stopped
        #: on exit, before the namespaces go, whatever the test did.
        self.children: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        self.sender = build_sender(self._tmp.name)
        _ip("netns", "add", self.a)
        _ip("netns", "add", self.b)
        _ip("link", "add", self.dev_a, "netns", self.a, "type", "veth",
            "peer", "name", self.dev_b, "netns", self.b)  # fmt: skip
        for ns, dev, addr in ((self.a, self.dev_a, SRC), (self.b, self.dev_b, DST)):
            self.run_in(ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        mac_b = self.link(self.b, self.dev_b)["address"]
        _ip("-n", self.a, "neigh", "replace", DST, "lladdr", mac_b, "dev", self.dev_a,
            "nud", "permanent")  # fmt: skip
        mac_a = self.link(self.a, self.dev_a)["address"]
        _ip("-n", self.b, "neigh", "replace", SRC, "lladdr", mac_a, "dev", self.dev_b,
            "nud", "permanent")  # fmt: skip
        self._sink = subprocess.Popen(
            ["ip", "netns", "exec", self.b, sys.executable, "-c", SINK],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._sink.stdout is not None
        assert self._sink.stdout.readline().strip() == "ready"

    def spawn(self, ns: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        """Start ``cmd`` in namespace ``ns``; it is stopped when the lab closes."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)
        self.children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        if self._sink is not None:
            if self._sink.poll() is None:
                self._sink.kill()
                self._sink.wait()
            if self._sink.stdout is not None:
                self._sink.stdout.close()
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self._tmp.cleanup()

    def run_in(self, ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def link(self, ns: str, dev: str) -> dict:
        out = subprocess.run(
            ["ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return json.loads(out)[0]

    def rx_packets(self) -> int:
        """Packets the receiving veth end took in (the kernel's interface counter)."""
        return int(self.link(self.b, self.dev_b)["stats64"]["rx"]["packets"])

    def send(
        self,
        count: int,
        rate: float = 0,
        payload: int = 18,
        flows: int = 1,
        raw: bool = False,
        senders: int = 1,
    ) -> tuple[int, float, float]:
        """Blast ``count`` UDP datagrams; returns (accepted by the kernel, seconds, CPU s).

        ``raw``: Ethernet frames to a MAC nobody owns, sent on a packet socket
        (the receiver's stack drops them right after the capture taps).
        ``senders`` > 1 (raw only): that many sender processes at once, each
        with its share of ``count`` and ``rate``; seconds is the slowest one's.
        """
        if senders > 1 and not raw:
            raise ValueError("senders: several senders need raw frames")
        extra = [self.dev_a, OTHER_MAC] if raw else []
        shares = [count // senders + (i < count % senders) for i in range(senders)]
        before = os.times()
        procs = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.a,
                    self.sender,
                    "raw" if raw else "udp",
                    SRC,
                    DST,
                    str(PORT),
                    str(share),
                    str(rate / senders),
                    str(payload),
                    str(flows),
                    *extra,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for share in shares
        ]
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, proc.args, out)
            results.append(out.split())
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        sent = sum(int(r[0]) for r in results)
        return sent, max(float(r[2]) for r in results), cpu


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    """The first stderr line of ``proc`` starting with ``prefix``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r} from {proc.args}")
