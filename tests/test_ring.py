"""The compiled capture ring (``src/_ring.pyx`` + ``src/cs_ring.h``): memory safety.

The ring is private (``connstats capture`` drives it), but a Python caller
can reach it, so no sequence of calls, and no block the kernel could write,
may crash or read outside the ring:

- the walk over a block image (``_walk_image``: the image sits at the end of
  a page followed by an inaccessible one, so a read past the block faults);
- ``close()`` while another thread waits in ``next_block()``, ``__init__``
  twice, views of the ring and of the tee kept after the ring moved on or
  was closed: each in a forked child, so that a crash is a test failure.

The live tests need root (an AF_PACKET socket, a network namespace of their
own) and skip otherwise, saying why.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from subproc import fork_here


def _ring_module():
    for name in ("connstats.capture._ring", "connstats._ring"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


ring = _ring_module()
pytestmark = pytest.mark.skipif(
    ring is None, reason="the compiled ring exists on Linux builds with extensions only"
)

# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
# (block_status, num_pkts, offset_to_first_pkt, blk_len, seq_num, ts_first,
# ts_last): 48 bytes.  struct tpacket3_hdr: 48 bytes, then sockaddr_ll (20).
DESC = 48
HDR = 48
SLL = 20
DATA_AT = 80  # tp_mac: where the packet starts, from the frame header
ETH_P_IP = 0x0800
PACKET_HOST, PACKET_OUTGOING = 0, 4
ARPHRD_ETHER = 1


def ipv4_udp(total: int, sport: int = 5000, dport: int = 53) -> bytes:
    """An IPv4/UDP packet whose header says ``total`` bytes (the data are zeros)."""
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0,
        bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]),
    )  # fmt: skip
    udp = struct.pack(">HHHH", sport, dport, total - 20, 0)
    return (ip + udp + bytes(max(0, total - 28)))[:total]


def frame(
    data: bytes,
    *,
    wire: int | None = None,
    next_offset: int = 0,
    pkttype: int = PACKET_HOST,
    proto: int = ETH_P_IP,
    mac: int = DATA_AT,
) -> bytes:
    """tpacket3_hdr + sockaddr_ll + the captured bytes, padded to 16."""
    hdr = struct.pack(
        "=IIIIIIHHIIHH8x", next_offset, 1, 2, len(data),
        len(data) if wire is None else wire, 0, mac, mac, 0, 0, 0, 0,
    )  # fmt: skip
    sll = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(proto), 1,
                      ARPHRD_ETHER, pkttype, 6, b"")  # fmt: skip
    body = hdr + sll + bytes(mac - HDR - SLL) + data
    return body + bytes(-len(body) % 8)  # V3 packs frames at 8 bytes


def block(frames: list[bytes], size: int = 4096, first: int = DESC) -> bytes:
    """A block of ``size`` bytes holding the frames one after another."""
    chained = b""
    for i, f in enumerate(frames):
        nxt = len(f) if i + 1 < len(frames) else 0
        chained += struct.pack("=I", nxt) + f[4:]
    desc = struct.pack("=IIIIIIQQQ", 3, 0, 1, len(frames), first, 0, 0, 0, 0)
    image = desc + bytes(first - DESC) + chained
    assert len(image) <= size
    return image + bytes(size - len(image))


def walk(image: bytes, **kw):
    """_walk_image in a forked child: a read past the block is a failure, not a crash."""

    def child():
        tx, rx, counters = ring._walk_image(image, **kw)
        return tx, rx, {**counters, "tee": counters["tee"].hex()}

    tx, rx, counters = fork_here(child)(30)
    counters["tee"] = bytes.fromhex(counters["tee"])
    return [tuple(p) for p in tx], [tuple(p) for p in rx], counters


# -- the walk over a block ---------------------------------------------------


def test_guard_keeps_the_sockaddr_ll_inside_the_block():
    # The frame header fits in the last 48 bytes, its sockaddr_ll would not:
    # the walk used to check the header only and read 20 bytes past the block.
    image = block([])
    image = image[:8] + struct.pack("=III", 0, 1, 4096 - HDR) + image[20:]
    tx, rx, counters = walk(image)
    assert (tx, rx) == ([], [])
    assert counters["frames"] == 0
    # a frame that is not aligned as the kernel aligns them (8) is not walked
    image = image[:8] + struct.pack("=III", 0, 1, DESC + 4) + image[20:]
    assert walk(image)[2]["frames"] == 0
    # room for both (at the alignment the kernel gives frames): the frame is
    # walked (and skipped: no IP in it)
    image = image[:8] + struct.pack("=III", 0, 1, 4096 - 80) + image[20:]
    tx, rx, counters = walk(image)
    assert counters["frames"] == 1 and counters["skipped"] == 1


def test_frames_packed_at_eight_bytes_are_all_walked():
    # 80 + 36 = 116 bytes, 120 with the padding: the next frame starts at a
    # multiple of 8 that is not one of 16, as the kernel packs them
    packets = [ipv4_udp(36, sport=1), ipv4_udp(28, sport=2), ipv4_udp(36, sport=3)]
    frames = [frame(p, pkttype=PACKET_OUTGOING) for p in packets]
    assert len(frames[0]) % 16 == 8
    tx, rx, counters = walk(block(frames))
    assert [n for _, n in tx] == [36, 28, 36] and counters["frames"] == 3


def test_a_packet_the_ring_cut_short_counts_with_its_ip_length():
    # A 3000-byte datagram of which the ring kept 1000 bytes (a block too
    # small for it): its headers are there, so it is the UDP packet it was,
    # with its full length, as `connstats read` counts a snaplen-cut packet.
    packet = ipv4_udp(3000)
    f = frame(packet[:1000], wire=3000)
    tx, rx, counters = walk(block([f], size=8192))
    assert tx == [] and rx == [(DESC + DATA_AT, 3000)]
    assert counters["truncated"] == 1 and counters["bytes"] == 3000
    # The same frame in the last bytes of the ring: the full length would
    # reach past the buffer the core is given, so the captured bytes go.
    image = block([f], size=4096, first=4096 - len(f))
    tx, rx, counters = walk(image)
    assert rx == [(4096 - len(f) + DATA_AT, 1000)]
    # Headers not captured (cut inside the UDP ports): the captured bytes go,
    # and the decoder's rule for a short packet applies.
    tx, rx, counters = walk(block([frame(packet[:22], wire=3000)]))
    assert rx == [(DESC + DATA_AT, 22)] and counters["truncated"] == 1


def test_padding_after_the_ip_packet_is_not_counted():
    # Ethernet pads a 28-byte packet to 46 bytes; the IP total length says 28.
    f = frame(ipv4_udp(28) + bytes(18), pkttype=PACKET_OUTGOING)
    tx, rx, counters = walk(block([f]))
    assert tx == [(DESC + DATA_AT, 28)] and rx == []
    assert counters["bytes"] == 28 and counters["truncated"] == 0


def test_tee_keeps_the_frame_as_captured():
    from connstats.capture import CaptureReader

    packet = ipv4_udp(3000)
    f = frame(packet[:1000], wire=3000)
    _tx, _rx, counters = walk(block([f], size=8192), tee=True)
    epb = counters["tee"]
    caplen, wire = struct.unpack_from("=II", epb, 20)
    assert (caplen, wire) == (1000, 3000)
    assert epb[28 : 28 + 1000] == packet[:1000]
    # and reading the tee gives what the walk handed over
    shb = struct.pack("=IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(
        "=I", 28
    )
    idb = struct.pack("=IIHHII", 1, 20, 101, 0, 0, 20)
    import io

    reader = CaptureReader(io.BytesIO(shb + idb + epb), "tee")
    batch = reader.read()
    assert list(batch.rx_lengths) == [3000]  # epb_flags: inbound
    assert reader.truncated == 1


# offsets: mostly aligned as the kernel aligns them (else the walk stops there)
_OFFSET = st.one_of(
    st.integers(0, 300).map(lambda n: n * 16), st.integers(0, 2**32 - 1)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.one_of(st.integers(3, 262).map(lambda n: n * 16), st.integers(0, 4200)),
    frames=st.lists(
        st.tuples(
            _OFFSET,  # tp_next_offset
            st.integers(0, 5000),  # tp_snaplen
            st.integers(0, 2**32 - 1),  # tp_len
            st.one_of(st.integers(68, 200), st.integers(0, 0xFFFF)),  # tp_mac
            st.sampled_from([0x0800, 0x86DD, 0x0806]),
            st.sampled_from([0, 4]),
            st.binary(max_size=64),
        ),
        max_size=6,
    ),
    nump=st.integers(0, 2**32 - 1),
)
def test_any_block_is_walked_inside_the_ring(first, frames, nump):
    # Headers the kernel would never write: every offset and length handed
    # over lies inside the block (the core is given no more here).
    size = 4096
    image = bytearray(size)
    struct.pack_into("=IIIII", image, 0, 3, 0, 1, nump, first)
    at = first
    for nxt, snap, wire, mac, proto, pkttype, data in frames:
        if at + HDR + SLL > size:
            break
        struct.pack_into("=IIIIIIHH", image, at, nxt, 0, 0, snap, wire, 0, mac, mac)
        struct.pack_into("=HHiHBB", image, at + HDR, 17, socket.htons(proto), 1, 1,
                         pkttype, 6)  # fmt: skip
        end = min(size, at + HDR + SLL + len(data))
        image[at + HDR + SLL : end] = data[: end - at - HDR - SLL]
        at += max(nxt, 1)
    tx, rx, counters = ring._walk_image(bytes(image))
    for off, n in tx + rx:
        assert off + n <= size
    assert counters["packets"] == len(tx) + len(rx)


# -- the Ring object on a real socket ----------------------------------------

needs_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="an AF_PACKET socket needs root (or CAP_NET_RAW) on Linux",
)


def _private_lo() -> None:
    """In a forked child: a network namespace of its own with lo up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)


def _packet_socket() -> socket.socket:
    return socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)


def fresh(name: str, timeout: float = 60) -> Any:
    """Run this module's function ``name`` in a new interpreter; its JSON result.

    A new interpreter rather than a fork: these children start threads, and
    a fork of a process with threads (pytest's, under the sanitizers) may
    inherit a lock held for ever.  A crash fails the test with its output.
    """
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import test_ring\n"
        f"print(json.dumps(test_ring.{name}()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout.splitlines()[-1])


def child_close_while_waiting() -> Any:
    sock = _packet_socket()
    r = ring.Ring(sock.fileno(), 4096, 4, 10)
    outcome = []

    def waiter():
        try:
            outcome.append(r.next_block(5000))
        except ValueError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    r.close()
    t.join(10)
    waited = time.monotonic() - started
    try:
        r.next_block(10)
        closed_error = None
    except ValueError as exc:
        closed_error = str(exc)
    r.release()  # nothing to give back once closed
    sock.close()
    return outcome, waited < 4, closed_error


@needs_root
def test_close_while_another_thread_waits():
    outcome, woken, closed_error = fresh("child_close_while_waiting")
    assert outcome == ["next_block: the ring was closed while waiting"]
    assert woken  # close() woke it: it did not sleep out its 5 s
    assert closed_error == "next_block: the ring is closed"


def child_init_twice() -> Any:
    sock = _packet_socket()
    r = ring.Ring(sock.fileno(), 4096, 4, 10)
    other = _packet_socket()
    errors = []
    for fd in (sock.fileno(), other.fileno()):
        try:
            r.__init__(fd, 8192, 2, 10)
        except RuntimeError as exc:
            errors.append(str(exc))
    result = (errors, r.size, r.next_block(10))
    r.close()
    return result


@needs_root
def test_init_twice_is_refused():
    errors, size, n = fresh("child_init_twice")
    assert errors == ["Ring: already initialized (make a new Ring)"] * 2
    assert (size, n) == (4 * 4096, -1)


def _send(port: int, payloads: list[bytes]) -> None:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for p in payloads:
        out.sendto(p, ("127.0.0.1", port))
    out.close()


def _next(r, tries: int = 50) -> int:
    for _ in range(tries):
        n = r.next_block(100)
        if n > 0:
            return n
        r.release()
    raise AssertionError("no block with packets")


def child_views_outlive() -> Any:
    _private_lo()
    sock = _packet_socket()
    r = ring.Ring(sock.fileno(), 4096, 4, 5, True)
    sock.bind(("lo", 0x0003))  # ETH_P_ALL
    kept = []

    def keep(buf, offsets, lengths):
        for off, n in zip(offsets, lengths):
            kept.append(memoryview(buf)[off : off + n])

    _send(9, [b"first" * 10])
    _next(r)
    r.count(keep, keep)
    tee1 = r.tee_bytes()
    tee1_slice = tee1[28:]
    before = bytes(tee1)
    packet = bytes(kept[0])
    r.release()
    _send(9, [b"second" * 30, b"third" * 40])
    _next(r)
    tee2 = r.tee_bytes()
    same = r.tee_bytes() == tee2  # the same blocks until the next walk
    r.release()
    r.close()
    del r
    sock.close()
    # The first tee was not overwritten by the second walk, and no view
    # points at freed or unmapped memory after the ring is gone.
    return (
        same,
        bytes(tee1) == before,
        bytes(tee1_slice) == before[28:],
        bytes(kept[0]) == packet,
        b"second" in bytes(tee2),
    )


@needs_root
def test_views_outlive_the_walk_and_the_ring():
    assert fresh("child_views_outlive") == [True] * 5


def child_second_thread() -> Any:
    sock = _packet_socket()
    r = ring.Ring(sock.fileno(), 4096, 4, 10, True)
    inside = threading.Event()

    def waiter():
        inside.set()
        try:
            r.next_block(3000)
        except ValueError:  # closed below, while it waits
            pass

    t = threading.Thread(target=waiter)
    t.start()
    inside.wait(10)
    time.sleep(0.5)  # well inside its wait
    refused = []
    for call in (lambda: r.next_block(0), r.tee_bytes, r.release,
                 lambda: r.count(print, print)):  # fmt: skip
        try:
            call()
        except RuntimeError as exc:
            refused.append("in use by another thread" in str(exc))
    r.close()  # wakes it
    t.join(10)
    return refused


@needs_root
def test_calls_from_a_second_thread_while_walking_are_refused():
    assert fresh("child_second_thread") == [True] * 4
