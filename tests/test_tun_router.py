"""examples/tun_router.py: a TUN router whose counts equal the kernel's, exactly.

Each test builds the example's two namespaces (names with this process's id,
so parallel runs do not clash), runs real traffic through the router — ping,
a TCP transfer and a UDP exchange, with ``ip netns exec`` clients and servers
— and compares what connstats counted per connection with the TUN devices'
own counters (``/sys/class/net/<tun>/statistics``, read inside each namespace).
Traffic is sent one kind at a time, so the single connection of each phase
must hold exactly the kernel's deltas; then all three at once.

Needs Linux, root, /dev/net/tun and iproute2 (CI runs as root); skipped with
the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

import connstats
from connstats import Connection, Counts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tun_router.py"
if str(EXAMPLE.parent) not in sys.path:
    sys.path.insert(0, str(EXAMPLE.parent))

import tun_router as tr  # noqa: E402  (examples/ is no package)

REASON = tr.unavailable()
needs_tun = pytest.mark.skipif(
    REASON is not None, reason=f"TUN router cannot run here: {REASON}"
)

PING_COUNT = 4
UDP_SIZES = [1, 100, 512, 1200, 1472, 7, 64, 900]
TCP_BYTES = 300_000
TCP_PORT, UDP_PORT = 5201, 5353

TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(b"got %d" % n); c.close()
"""
TCP_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(b"x" * int(sys.argv[3])); c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    d = c.recv(100)
    if not d: break
    reply += d
print(c.getsockname()[1], reply.decode(), flush=True)
"""
UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(10)
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    d, peer = s.recvfrom(65536)
    s.sendto(d[::-1], peer)
"""
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)
s.connect((sys.argv[1], int(sys.argv[2])))
for n in map(int, sys.argv[3:]):
    s.send(b"u" * n)
    assert len(s.recv(65536)) == n
print(s.getsockname()[1], flush=True)
"""


def _in(ns: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *cmd], text=True, stdout=subprocess.PIPE, **kw
    )


def _server(ns: str, script: str, *args: str) -> subprocess.Popen[str]:
    p = _in(ns, sys.executable, "-c", script, *args)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def _finish(p: subprocess.Popen[str]) -> str:
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    return out


def tcp(router: Any) -> Connection:
    """A TCP transfer from site A to a server in B; its Connection."""
    server = _server(router.ns_b, TCP_SERVER, router.addr_b, str(TCP_PORT))
    client = _in(
        router.ns_a,
        sys.executable,
        "-c",
        TCP_CLIENT,
        router.addr_b,
        str(TCP_PORT),
        str(TCP_BYTES),
    )
    port, reply = _finish(client).split(maxsplit=1)
    _finish(server)
    assert reply.strip() == f"got {TCP_BYTES}"
    return Connection(
        6, (ip_address(router.addr_a), int(port)), (ip_address(router.addr_b), TCP_PORT)
    )


def udp(router: Any) -> tuple[Connection, Counts]:
    """UDP started by site B, echoed by a server in A; its Connection and Counts.

    A's echoes are read from tun-a (tx), B's datagrams from tun-b (rx, with
    source and destination swapped): the Connection is written from A's side.
    """
    sizes = [str(n) for n in UDP_SIZES]
    server = _server(
        router.ns_a, UDP_SERVER, router.addr_a, str(UDP_PORT), str(len(sizes))
    )
    client = _in(
        router.ns_b,
        sys.executable,
        "-c",
        UDP_CLIENT,
        router.addr_a,
        str(UDP_PORT),
        *sizes,
    )
    port = int(_finish(client))
    _finish(server)
    n, size = len(UDP_SIZES), sum(28 + s for s in UDP_SIZES)
    conn = Connection(
        17, (ip_address(router.addr_a), UDP_PORT), (ip_address(router.addr_b), port)
    )
    return conn, Counts(n, size, n, size)


def ping(router: Any) -> tuple[Connection, Counts]:
    p = _in(
        router.ns_a,
        "ping",
        "-n",
        "-q",
        "-c",
        str(PING_COUNT),
        "-i",
        "0.2",
        "-W",
        "5",
        router.addr_b,
    )
    _finish(p)
    conn = Connection(1, (ip_address(router.addr_a), 0), (ip_address(router.addr_b), 0))
    # 20-byte IPv4 header, 8-byte ICMP header, ping's 56 bytes of data
    return conn, Counts(PING_COUNT, 84 * PING_COUNT, PING_COUNT, 84 * PING_COUNT)


def settle(router: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Kernel counters once the router has taken everything the kernel handed it.

    Quiet means: the counters did not move for 0.3 s and the router forwarded
    as many packets each way as the devices' tx counters say were sent to it.
    """
    deadline = time.monotonic() + 20
    last = None
    while time.monotonic() < deadline:
        now = router.counters()
        moved = router.progress()
        if now == last and moved == (now[0]["tx_packets"], now[1]["tx_packets"]):
            return now
        last = now
        time.sleep(0.3)
    raise AssertionError(f"router never caught up: {router.progress()} vs {last}")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def check_window(
    router: Any,
    stats: connstats.Statistics,
    before: tuple[dict[str, int], dict[str, int]],
    expected: set[Connection],
) -> tuple[dict[Connection, Counts], tuple[dict[str, int], dict[str, int]]]:
    after = settle(router)
    virtual, physical = stats.extract()
    a, b = delta(after[0], before[0]), delta(after[1], before[1])
    assert physical == {}
    assert set(virtual) == expected
    total = Counts()
    for counts in virtual.values():
        total += counts
    # tx: read from tun-a (its tx counters); rx: read from tun-b.
    assert total == Counts(
        a["tx_packets"], a["tx_bytes"], b["tx_packets"], b["tx_bytes"]
    )
    # Everything read from one TUN was written, whole, into the other.
    assert (b["rx_packets"], b["rx_bytes"]) == (a["tx_packets"], a["tx_bytes"])
    assert (a["rx_packets"], a["rx_bytes"]) == (b["tx_packets"], b["tx_bytes"])
    assert total.tx_packets > 0 and total.rx_packets > 0
    return virtual, after


@needs_tun
@pytest.mark.parametrize(
    ("counting", "queues", "batch_min"),
    [
        ("single", 1, None),
        ("batch", 1, None),  # the example as shipped: short bursts one by one
        ("batch", 1, 1),  # every burst through update_*_virtual_batch
        ("batch", 2, 1),
        ("single", 2, None),
    ],
)
def test_counts_equal_kernel_counters(
    counting: str, queues: int, batch_min: int | None, monkeypatch: Any
) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping (iputils-ping) is not installed")
    if batch_min is not None:
        monkeypatch.setattr(tr, "BATCH_MIN", batch_min)
    suffix = f"-{os.getpid()}-{counting[0]}{queues}{batch_min or 0}"
    stats = connstats.Statistics()
    with tr.TunRouter(suffix, queues=queues) as router:
        router.start(counting, stats)
        try:
            before = settle(router)
            # Nothing moves by itself: no IPv6 autoconf, no stray packets.
            assert before[0]["tx_packets"] == before[1]["tx_packets"] == 0

            conn, want = ping(router)
            got, before = check_window(router, stats, before, {conn})
            assert got[conn] == want

            conn = tcp(router)
            got, before = check_window(router, stats, before, {conn})
            # data + handshake + FIN; the ACKs come back as rx
            assert got[conn].tx_bytes > TCP_BYTES
            assert got[conn].tx_packets > TCP_BYTES // 1500

            conn, want = udp(router)
            got, before = check_window(router, stats, before, {conn})
            assert got[conn] == want

            # All three at once: the split per connection is still exact.
            tcp_result: list[Connection] = []

            t = threading.Thread(target=lambda: tcp_result.append(tcp(router)))
            t.start()
            (p_conn, p_want), (u_conn, u_want) = ping(router), udp(router)
            t.join(60)
            got, before = check_window(
                router, stats, before, {p_conn, u_conn, tcp_result[0]}
            )
            assert got[p_conn] == p_want and got[u_conn] == u_want
        finally:
            totals = router.stop()
        assert totals.write_errors == 0
        assert (totals.a_to_b, totals.b_to_a) == (
            before[0]["tx_packets"],
            before[1]["tx_packets"],
        )
    stats.shutdown()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert router.ns_a not in listed.stdout and router.ns_b not in listed.stdout


@needs_tun
def test_command_line_prints_windows_and_tears_down_on_ctrl_c() -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping (iputils-ping) is not installed")
    suffix = f"-{os.getpid()}-cli"
    ns_a, ns_b = f"cs-tun-a{suffix}", f"cs-tun-b{suffix}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), f"--suffix={suffix}", "--max-period", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Started as a background job of a non-interactive shell would be (CI
        # scripts): SIGINT ignored.  Ctrl-C must still stop the router.
        preexec_fn=_ignore_sigint,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("tun_router: forwarding"), first
        subprocess.run(
            ["ip", "netns", "exec", ns_a, "ping", "-n", "-q", "-c", "3", "-i", "0.2",
             "198.18.2.1"],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        time.sleep(0.8)  # a window boundary passes: the table comes out live
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # reaps it and closes the pipes
            # a killed router could not remove its namespaces (and their TUNs)
            for ns in (ns_a, ns_b):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert proc.returncode == 0, err
    assert "PROTO  SOURCE      DESTINATION  TX PKTS  TX BYTES  RX PKTS  RX BYTES" in out
    assert "icmp   198.18.1.1  198.18.2.1         3     252 B        3     252 B" in out
    assert (
        "forwarded 3 packets A->B, 3 B->A" in out
        and "kernel: tun-a tx 3 rx 3, tun-b tx 3 rx 3" in out
    ), out
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert ns_a not in listed.stdout and ns_b not in listed.stdout


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_example(prefix: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, str(EXAMPLE), f"--suffix=-{os.getpid()}-x"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_tun
def test_without_root_says_so() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-c", "import connstats"])
    if probe.returncode:
        pytest.skip("user nobody cannot run this Python or import connstats")
    result = _run_example(nobody)
    assert result.returncode == 1
    assert result.stderr == (
        "tun_router: creating network namespaces and TUN devices needs root "
        "(CAP_NET_ADMIN): run it with sudo\n"
    )


@needs_tun
def test_without_dev_net_tun_says_so() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    # A private mount namespace with an empty /dev/net: the device is gone
    # for that process only.
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs none /dev/net && exec "$@"', "sh"]  # fmt: skip
    result = _run_example(hide)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "tun_router: /dev/net/tun does not exist: load the tun module"
    ), result.stderr


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="queues"):
        tr.TunRouter(queues=0)
    with pytest.raises(ValueError, match="mtu"):
        tr.TunRouter(mtu=100)


@needs_tun
def test_forwarding_error_is_reported_and_tears_down() -> None:
    suffix = f"-{os.getpid()}-err"
    ns_a, ns_b = f"cs-tun-a{suffix}", f"cs-tun-b{suffix}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), f"--suffix={suffix}", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("tun_router: forwarding")
        # The device vanishes under the router: its fd goes bad.
        subprocess.run(
            ["ip", "netns", "exec", ns_a, "ip", "link", "del", "tun-a"], check=True
        )
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert "tun_router: forwarding failed: OSError(77" in err, err
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert ns_a not in listed.stdout and ns_b not in listed.stdout
