"""A userspace router between two TUN devices that counts every packet with connstats.

Two network namespaces stand for two sites, like the two ends of a userspace
VPN.  Each has one TUN device, an address and a route to the other site's
subnet through that TUN:

    site A: netns cs-tun-a, device tun-a, 198.18.1.1, route 198.18.2.0/24 dev tun-a
    site B: netns cs-tun-b, device tun-b, 198.18.2.1, route 198.18.1.0/24 dev tun-b

This process holds both TUN file descriptors and moves IP packets between
them.  Counting convention: a packet read from tun-a (sent by site A) is
counted with ``update_tx_virtual``, a packet read from tun-b (sent by site B)
with ``update_rx_virtual``.  rx swaps source and destination, so both
directions of a flow land on one Connection, written from site A's side:
``tx`` is A -> B, ``rx`` is B -> A.  The tables follow the kernel's own
counters: a Connection's tx packets/bytes add up to tun-a's ``tx_packets``/
``tx_bytes`` (what the kernel handed to this process), its rx to tun-b's.

Forwarding loops (``--counting``):

* ``off``: the same loops without connstats, for comparison;
* ``single``: one ``os.read`` per packet, one ``update_*_virtual`` call per packet;
* ``batch``: read what is ready (non-blocking reads until EAGAIN, at most
  ``BURST``), forward each packet, then one ``update_*_virtual_batch`` call for
  the burst (the GIL is released while it counts); bursts shorter than
  ``BATCH_MIN`` are counted one call per packet, which is cheaper for them.

``--queues N`` opens each TUN with ``IFF_MULTI_QUEUE`` N times and runs one
thread per queue pair; the kernel spreads flows over the queues.

Run (root; needs /dev/net/tun and iproute2):

    sudo python3 examples/tun_router.py
    # other terminal: sudo ip netns exec cs-tun-a ping 198.18.2.1

Windows are printed as tables every ``--max-period`` seconds; Ctrl-C (or
``--duration``) stops forwarding, prints the final window and the kernel's
counters, and deletes both namespaces.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import connstats
from connstats._clock import ns_of
from connstats.capture.windows import Window
from connstats.cli.out_table import TableWriter

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
CLONE_NEWNET = 0x40000000

#: Packets taken from one fd before the other direction gets its turn.
BURST = 64
#: Shortest burst the batch loop counts with one batch call (measured
#: crossover: below ~10 packets, one call per packet is cheaper).
BATCH_MIN = 10
MODES = ("off", "single", "batch")
ADDR_A, NET_A = "198.18.1.1", "198.18.1.0/24"
ADDR_B, NET_B = "198.18.2.1", "198.18.2.0/24"
STAT_NAMES = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped")


class RouterError(Exception):
    """Set-up or forwarding failed; the message says what to do."""


def check_environment() -> None:
    """Raise RouterError with a clear message where this example cannot run."""
    if not sys.platform.startswith("linux"):
        raise RouterError("TUN devices and network namespaces need Linux")
    if os.geteuid() != 0:
        raise RouterError(
            "creating network namespaces and TUN devices needs root "
            "(CAP_NET_ADMIN): run it with sudo"
        )
    if not os.path.exists("/dev/net/tun"):
        raise RouterError(
            "/dev/net/tun does not exist: load the tun module (modprobe tun), "
            "or in a container pass the device in (--device /dev/net/tun)"
        )
    if shutil.which("ip") is None:
        raise RouterError("the 'ip' command (iproute2) is not installed")


def unavailable(*tools: str) -> str | None:
    """Why the router cannot run here (``None`` if it can); ``tools``: extra commands."""
    try:
        check_environment()
    except RouterError as exc:
        return str(exc)
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def run(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RouterError(f"{' '.join(cmd)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def kernel_counters(ns: str, dev: str) -> dict[str, int]:
    """The TUN's interface counters, read inside its namespace.

    ``ip netns exec`` mounts a /sys of that namespace, so /sys/class/net
    shows its devices.
    """
    files = [f"/sys/class/net/{dev}/statistics/{name}" for name in STAT_NAMES]
    out = run("ip", "netns", "exec", ns, "cat", *files)
    return dict(zip(STAT_NAMES, map(int, out.split())))


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_tun_in(ns: str, name: str, queues: int) -> list[int]:
    """Open ``queues`` fds of TUN device ``name`` created inside namespace ``ns``.

    TUNSETIFF creates the device in the calling thread's network namespace,
    so a short-lived thread enters ``ns`` (setns affects that thread only),
    opens the device and leaves; the fds work from any thread afterwards.
    """
    flags = IFF_TUN | IFF_NO_PI | (IFF_MULTI_QUEUE if queues > 1 else 0)
    ifreq = struct.pack("16sH22x", name.encode(), flags)
    fds: list[int] = []
    error: list[BaseException] = []

    def body() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                for _ in range(queues):
                    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
                    fds.append(fd)
                    fcntl.ioctl(fd, TUNSETIFF, ifreq)
                    os.set_blocking(fd, False)
            finally:
                _setns(own)
        except BaseException as exc:
            error.append(exc)
        finally:
            os.close(own)
            os.close(target)

    thread = threading.Thread(target=body, name=f"open-{name}")
    thread.start()
    thread.join()
    if error:
        for fd in fds:
            os.close(fd)
        raise RouterError(f"opening TUN {name} in {ns}: {error[0]}") from error[0]
    return fds


# -- forwarding loops ---------------------------------------------------------------
#
# A pump moves what is ready on ``src`` (at most BURST packets) to ``dst`` and
# returns how many it moved.  The three pumps share their loop so that the
# benchmark compares counting, not loop shapes.


@dataclass
class Pumped:
    """What one forwarding thread did (read by the router, written by its thread)."""

    a_to_b: int = 0
    b_to_a: int = 0
    write_errors: int = 0
    cpu_seconds: float = 0.0
    error: BaseException | None = None


def pump_off(src: int, dst: int, _count: Any, mtu: int, done: Pumped) -> int:
    read, write = os.read, os.write
    n = 0
    while n < BURST:
        try:
            packet = read(src, mtu)
        except BlockingIOError:
            break
        try:
            write(dst, packet)
        except OSError:
            done.write_errors += 1
        n += 1
    return n


def pump_single(
    src: int, dst: int, count: Callable[[bytes], None], mtu: int, done: Pumped
) -> int:
    read, write = os.read, os.write
    n = 0
    while n < BURST:
        try:
            packet = read(src, mtu)
        except BlockingIOError:
            break
        count(packet)  # stats.update_tx_virtual / update_rx_virtual: one C call
        try:
            write(dst, packet)
        except OSError:
            done.write_errors += 1
        n += 1
    return n


def pump_batch(
    src: int,
    dst: int,
    count: tuple[Callable[[Sequence[bytes]], None], Callable[[bytes], None]],
    mtu: int,
    done: Pumped,
) -> int:
    read, write = os.read, os.write
    packets: list[bytes] = []
    append = packets.append
    while len(packets) < BURST:
        try:
            packet = read(src, mtu)
        except BlockingIOError:
            break
        try:
            write(dst, packet)
        except OSError:
            done.write_errors += 1
        append(packet)
    count_batch, count_one = count
    if len(packets) >= BATCH_MIN:
        count_batch(packets)  # update_*_virtual_batch: GIL released while counting
    else:
        # A batch call has a fixed cost (~200 ns here) that a short burst
        # does not pay back: count those packets one call each.
        for packet in packets:
            count_one(packet)
    return len(packets)


PUMPS: dict[str, Callable[..., int]] = {
    "off": pump_off,
    "single": pump_single,
    "batch": pump_batch,
}


def forward(
    fd_a: int,
    fd_b: int,
    wakeup: int,
    counting: str,
    stats: connstats.Statistics | None,
    mtu: int,
    done: Pumped,
) -> None:
    """Forward between one queue of each TUN until ``wakeup`` becomes readable."""
    pump = PUMPS[counting]
    count_ab: Any = None
    count_ba: Any = None
    if stats is not None and counting == "single":
        count_ab, count_ba = stats.update_tx_virtual, stats.update_rx_virtual
    elif stats is not None and counting == "batch":
        count_ab = (stats.update_tx_virtual_batch, stats.update_tx_virtual)
        count_ba = (stats.update_rx_virtual_batch, stats.update_rx_virtual)
    poller = select.poll()
    for fd in (fd_a, fd_b, wakeup):
        poller.register(fd, select.POLLIN)
    cpu0 = time.thread_time()
    try:
        while True:
            events = poller.poll()
            if any(fd == wakeup for fd, _ in events):
                return
            # Drain both directions before sleeping again: a TCP transfer
            # has data one way and ACKs the other.
            while True:
                ab = pump(fd_a, fd_b, count_ab, mtu, done)
                ba = pump(fd_b, fd_a, count_ba, mtu, done)
                done.a_to_b += ab
                done.b_to_a += ba
                if not ab and not ba:
                    break
    except BaseException as exc:
        done.error = exc
    finally:
        done.cpu_seconds = time.thread_time() - cpu0


@dataclass
class Run:
    """The forwarding threads of one ``TunRouter.start``."""

    counting: str
    threads: list[threading.Thread]
    pumped: list[Pumped]
    wakeup: tuple[int, int]
    started: float = field(default_factory=time.monotonic)


@dataclass
class Totals:
    counting: str
    seconds: float
    a_to_b: int
    b_to_a: int
    write_errors: int
    cpu_seconds: float

    @property
    def packets(self) -> int:
        return self.a_to_b + self.b_to_a


class TunRouter:
    """Two namespaces, a TUN in each, and the threads forwarding between them.

    ``with TunRouter(suffix) as router:`` builds the namespaces and devices and
    always deletes them on the way out; ``start``/``stop`` run the forwarding
    threads (several times if you like, with different counting modes).
    """

    def __init__(self, suffix: str = "", *, mtu: int = 1500, queues: int = 1) -> None:
        if queues < 1:
            raise ValueError(f"queues must be >= 1, got {queues}")
        if not 576 <= mtu <= 65535:
            raise ValueError(f"mtu must be in 576..65535, got {mtu}")
        self.ns_a, self.ns_b = f"cs-tun-a{suffix}", f"cs-tun-b{suffix}"
        self.dev_a, self.dev_b = "tun-a", "tun-b"
        self.addr_a, self.addr_b = ADDR_A, ADDR_B
        self.mtu = mtu
        self.queues = queues
        self.fds_a: list[int] = []
        self.fds_b: list[int] = []
        self._made: list[str] = []
        self._run: Run | None = None

    def __enter__(self) -> TunRouter:
        check_environment()
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self) -> None:
        existing = run("ip", "netns", "list").split()
        for ns in (self.ns_a, self.ns_b):
            if ns in existing:
                raise RouterError(
                    f"network namespace {ns} already exists (another router running? "
                    f"if not, remove it: ip netns del {ns}); --suffix picks other names"
                )
        for ns, dev, own, other_net, fds in (
            (self.ns_a, self.dev_a, self.addr_a, NET_B, self.fds_a),
            (self.ns_b, self.dev_b, self.addr_b, NET_A, self.fds_b),
        ):
            run("ip", "netns", "add", ns)
            self._made.append(ns)
            # No IPv6 on the sites: router solicitations and MLD reports would
            # be forwarded and counted as traffic nobody sent.  (Where the
            # kernel has no IPv6, the keys are missing; nothing to turn off.)
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"],
                capture_output=True,
            )  # fmt: skip
            fds.extend(open_tun_in(ns, dev, self.queues))
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "mtu", str(self.mtu), "up")
            run("ip", "-n", ns, "addr", "add", f"{own}/32", "dev", dev)
            run("ip", "-n", ns, "route", "add", other_net, "dev", dev, "src", own)

    def start(self, counting: str, stats: connstats.Statistics | None = None) -> None:
        if counting not in MODES:
            raise ValueError(f"counting must be one of {MODES}, got {counting!r}")
        if counting != "off" and stats is None:
            raise ValueError(f"counting={counting!r} needs a Statistics")
        if self._run is not None:
            raise RuntimeError("already forwarding; stop() first")
        wakeup = os.pipe()
        pumped = [Pumped() for _ in range(self.queues)]
        threads = [
            threading.Thread(
                target=forward,
                args=(a, b, wakeup[0], counting, stats, self.mtu, done),
                name=f"forward-{i}",
                daemon=True,
            )
            for i, (a, b, done) in enumerate(zip(self.fds_a, self.fds_b, pumped))
        ]
        self._run = Run(counting, threads, pumped, wakeup)
        for t in threads:
            t.start()

    @property
    def running(self) -> bool:
        return self._run is not None

    def progress(self) -> tuple[int, int]:
        """Packets forwarded so far by the running threads: (A -> B, B -> A)."""
        if self._run is None:
            return (0, 0)
        return (
            sum(p.a_to_b for p in self._run.pumped),
            sum(p.b_to_a for p in self._run.pumped),
        )

    def failed(self) -> BaseException | None:
        if self._run is None:
            return None
        return next((p.error for p in self._run.pumped if p.error), None)

    def stop(self) -> Totals:
        """Stop the threads (each finishes the burst in hand) and return what they did."""
        r = self._run
        if r is None:
            raise RuntimeError("not forwarding")
        os.write(r.wakeup[1], b"x")
        for t in r.threads:
            t.join()
        self._run = None
        for fd in r.wakeup:
            os.close(fd)
        error = next((p.error for p in r.pumped if p.error), None)
        if error is not None:
            raise RouterError(f"forwarding failed: {error!r}") from error
        return Totals(
            r.counting,
            time.monotonic() - r.started,
            sum(p.a_to_b for p in r.pumped),
            sum(p.b_to_a for p in r.pumped),
            sum(p.write_errors for p in r.pumped),
            sum(p.cpu_seconds for p in r.pumped),
        )

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        """Kernel counters of (tun-a, tun-b)."""
        return (
            kernel_counters(self.ns_a, self.dev_a),
            kernel_counters(self.ns_b, self.dev_b),
        )

    def close(self) -> None:
        if self._run is not None:
            try:
                self.stop()
            except RouterError:
                pass
        for fd in self.fds_a + self.fds_b:
            os.close(fd)
        self.fds_a.clear()
        self.fds_b.clear()
        while self._made:
            subprocess.run(
                ["ip", "netns", "del", self._made.pop()], capture_output=True
            )


# -- command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Userspace router between two TUN devices, counted with connstats."
    )
    parser.add_argument("--counting", choices=MODES, default="batch")
    parser.add_argument("--queues", type=int, default=1, help="TUN queues (threads)")
    parser.add_argument("--suffix", default="", help="appended to the namespace names")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument(
        "--max-period", type=float, default=2.0, help="seconds per window"
    )
    parser.add_argument("--max-conns", type=int, default=0)
    parser.add_argument("--top", type=int, default=20, help="rows per table (0: all)")
    parser.add_argument("--duration", type=float, default=0.0, help="0: until Ctrl-C")
    args = parser.parse_args(argv)

    writer = TableWriter(sys.stdout, args.top)
    lock = threading.Lock()

    def dump(
        start: datetime,
        end: datetime,
        virtual: dict[Any, Any],
        physical: dict[Any, Any],
    ) -> None:
        # From the connstats-flush thread, never from a forwarding thread.
        with lock:
            writer.window(Window(ns_of(start), ns_of(end), virtual, physical))

    # SIGTERM tears down like Ctrl-C.  SIGINT is set too: a process started
    # in the background of a non-interactive shell inherits it ignored, and
    # Python then installs no handler, so Ctrl-C (or kill -INT) would do nothing.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stats = None
    try:
        with TunRouter(args.suffix, mtu=args.mtu, queues=args.queues) as router:
            if args.counting != "off":
                stats = connstats.Statistics(
                    max_period=args.max_period, max_conns=args.max_conns, dump=dump
                )
            router.start(args.counting, stats)
            print(
                f"tun_router: forwarding {router.ns_a} ({router.addr_a}, {router.dev_a})"
                f" <-> {router.ns_b} ({router.addr_b}, {router.dev_b}),"
                f" counting {args.counting}, {args.queues} queue(s); Ctrl-C stops\n"
                f"tun_router: try: ip netns exec {router.ns_a} ping {router.addr_b}",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + args.duration if args.duration else None
            stopping = False
            try:
                while not router.failed():
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    time.sleep(0.1)
            except KeyboardInterrupt:
                stopping = True
            # A second Ctrl-C must not cut the teardown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # Stop forwarding first, then shut connstats down: packets counted
            # after shutdown() would be dropped, so the last window would miss them.
            totals = router.stop()
            if stats is not None:
                stats.shutdown()
            tun_a, tun_b = router.counters()
            with lock:
                print(
                    f"\n{'interrupted; ' if stopping else ''}forwarded "
                    f"{totals.a_to_b} packets A->B, {totals.b_to_a} B->A in "
                    f"{totals.seconds:.1f} s ({totals.write_errors} write errors); "
                    f"kernel: {router.dev_a} tx {tun_a['tx_packets']} rx "
                    f"{tun_a['rx_packets']}, {router.dev_b} tx {tun_b['tx_packets']} "
                    f"rx {tun_b['rx_packets']}",
                    flush=True,
                )
    except RouterError as exc:
        print(f"tun_router: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C during set-up: the with block has already deleted what it made.
        print("tun_router: interrupted", file=sys.stderr)
        return 130
    finally:
        if stats is not None:
            stats.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
