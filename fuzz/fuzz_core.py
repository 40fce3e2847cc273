"""Fuzzing of the whole counting path against a small dict model.

The input is read as a configuration (``max_conns``, pending-queue size,
ignored destinations) followed by a sequence of operations on one core:
tx/rx virtual updates (single packet as bytes, bytearray, memoryview or a
page-guarded buffer; batch; offsets/lengths buffer), tx/rx physical updates
(with ``packets=``), pre-parsed updates (``update_virtual``/``update_physical``
with every endpoint form) and their batch form ``update_records`` (records
built from pools, corrupted ones that must be refused whole, and raw bytes
checked against the harness's own reading of the record layout),
``cut`` (what ``extract`` does), ``pop_pending``, close, and bad calls that
must raise ``TypeError``/``ValueError`` and count nothing.  Hostile Python
objects too: buffer exporters written in Python (``__buffer__``, 3.12+),
format-odd and multi-dimensional views, ``int`` and ``ipaddress`` subclasses
(honest ones count by their value, lying ones must be refused) and batches
whose list is changed by one of its own items while it is read (the batch
counts the list as it was when the call began).  After every
operation the core's connection count, pending queue and drop counters must
match the model; every window handed out must match it exactly.  The model
decodes packets with the pure-Python reference decoder.

    python fuzz/fuzz_core.py -max_total_time=60 fuzz/corpus/core
    python fuzz/fuzz_core.py --replay fuzz/corpus/core
    FUZZ_CORE=py python fuzz/fuzz_core.py ...   # check the pure-Python core instead
"""

from __future__ import annotations

import array
import ipaddress
import os
import struct
import sys
from collections import deque
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the hostile objects the tests use too (tests/hostile.py)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import GuardedBuffer, Reader, instrumented_imports, main
from hostile import Exporter, HugeV4, HugeV6, LyingInt, Mutating, MyV4, MyV6

with instrumented_imports():
    from connstats import _fastparse_py as pure

if os.environ.get("FUZZ_CORE", "c") == "py":
    core_module: Any = pure
else:
    try:
        from connstats import _fastparse as core_module
    except ImportError as exc:  # pragma: no cover
        raise SystemExit(
            f"fuzz_core: the compiled core is not importable ({exc})"
        ) from None

U64 = (1 << 64) - 1
_GUARD = GuardedBuffer(1 << 16)

V4 = ["10.0.0.1", "10.0.0.2", "100.100.100.100", "192.0.2.7"]
V6 = ["fd00::1", "fd00::2", "fd7a:115c:a1e0::53", "::ffff:10.0.0.1"]
SERVICE = ("100.100.100.100", "fd7a:115c:a1e0::53")
ADDRS = V4 + V6


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _v4(
    proto: int, src: str, dst: str, payload: bytes, frag: int = 0, ihl: int = 5
) -> bytes:
    options = bytes(4 * (ihl - 5)) if ihl > 5 else b""
    total = 20 + len(options) + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        total,
        0,
        frag,
        64,
        proto,
        0,
        _packed(src),
        _packed(dst),
    )
    return header + options + payload


def _v6(next_header: int, src: str, dst: str, payload: bytes) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            0x6000_0000,
            len(payload),
            next_header,
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + payload
    )


def _ports(sport: int, dport: int, size: int) -> bytes:
    return struct.pack("!HH", sport, dport) + bytes(size - 4)


def _template(kind: int, r: Reader) -> bytes:
    """A well-formed packet of one of a few shapes, with addresses/ports from a small pool."""
    s4, d4 = V4[r.u8() % len(V4)], V4[r.u8() % len(V4)]
    s6, d6 = V6[r.u8() % len(V6)], V6[r.u8() % len(V6)]
    sport, dport = 1000 + r.u8() % 4, 80 + r.u8() % 2
    pad = bytes(r.u8() % 8)
    kind %= 12
    if kind == 0:
        return _v4(6, s4, d4, _ports(sport, dport, 20) + pad)
    if kind == 1:
        return _v4(17, s4, d4, _ports(sport, dport, 8) + pad)
    if kind == 2:
        return _v4(1, s4, d4, bytes(8) + pad)
    if kind == 3:
        return _v6(6, s6, d6, _ports(sport, dport, 20) + pad)
    if kind == 4:
        return _v6(17, s6, d6, _ports(sport, dport, 8) + pad)
    if kind == 5:
        return _v6(58, s6, d6, bytes(8) + pad)
    if kind == 6:  # later IPv4 fragment: proto 255
        return _v4(17, s4, d4, bytes(16) + pad, frag=0x0010 + r.u8() % 4)
    if kind == 7:  # IPv6 fragment header, first fragment of UDP
        frag = struct.pack("!BBHI", 17, 0, 0x0001, 7)
        return _v6(44, s6, d6, frag + _ports(sport, dport, 8) + pad)
    if kind == 8:  # IPv4 with options
        return _v4(6, s4, d4, _ports(sport, dport, 20) + pad, ihl=6 + r.u8() % 3)
    if kind == 9:  # SCTP
        return _v4(132, s4, d4, _ports(sport, dport, 12) + pad)
    if kind == 10:  # an unported protocol (GRE)
        return _v4(47, s4, d4, bytes(4) + pad)
    return _v4(99, s4, d4, bytes(8) + pad)  # TSMP


def _packet(r: Reader) -> bytes:
    sel = r.u8()
    if sel < 224:
        return _template(sel, r)
    return r.take(r.u8() % 96)  # raw bytes: truncated, garbage, empty


def _plain_side(addrport: Any) -> tuple[Optional[bytes], int]:
    addr = addrport.addr
    return (None if addr is None else addr.packed, addrport.port)


def _plain_conn(conn: Any) -> tuple:
    proto, src, dst = conn
    return (proto, *_plain_side(src), *_plain_side(dst))


def _swap(key: tuple) -> tuple:
    proto, src, sport, dst, dport = key
    return (proto, dst, dport, src, sport)


class Model:
    def __init__(
        self, max_conns: int, max_pending: int, ignore: tuple[str, ...]
    ) -> None:
        self.max_conns = max_conns
        self.max_pending = max_pending
        self.ignore = {_packed(a) for a in ignore}
        self.cur: dict[tuple, list[int]] = {}
        self.pending: deque[dict[tuple, list[int]]] = deque()
        self.dropped = [0, 0, 0]
        self.closed = False

    @staticmethod
    def totals(table: dict) -> tuple[int, int]:
        packets = sum(c[0] + c[2] for c in table.values()) & U64
        nbytes = sum(c[1] + c[3] for c in table.values()) & U64
        return packets, nbytes

    def add(self, kind: str, key: tuple, rx: bool, n: int, packets: int = 1) -> None:
        # ignore_destinations filters virtual traffic only
        if self.closed or (kind == "v" and key[3] in self.ignore):
            return
        full = (kind, key)
        if full not in self.cur:
            if self.max_conns and len(self.cur) >= self.max_conns:
                if len(self.pending) < self.max_pending:
                    self.pending.append(self.cur)
                else:
                    lost_packets, lost_bytes = self.totals(self.cur)
                    self.dropped[0] += 1
                    self.dropped[1] = (self.dropped[1] + lost_packets) & U64
                    self.dropped[2] = (self.dropped[2] + lost_bytes) & U64
                self.cur = {}
            self.cur[full] = [0, 0, 0, 0]
        counters = self.cur[full]
        col = 2 if rx else 0
        counters[col] = (counters[col] + packets) & U64
        counters[col + 1] = (counters[col + 1] + n) & U64

    def virtual(self, packet: bytes, rx: bool) -> None:
        key = _plain_conn(pure.decode(packet))
        self.add("v", _swap(key) if rx else key, rx, len(packet))


def _table(window: Any) -> dict:
    virtual, physical = window.to_dicts()
    out = {}
    for kind, part in (("v", virtual), ("p", physical)):
        for conn, counts in part.items():
            full = (kind, _plain_conn(conn))
            if full in out:
                raise AssertionError(f"connection {conn} appears twice in a window")
            out[full] = list(counts)
    return out


def _check_window(window: Any, expected: Optional[dict], what: str) -> None:
    if expected is None or not expected:
        if window is not None:
            raise AssertionError(
                f"{what}: got a window of {len(window)}, expected none"
            )
        return
    if window is None:
        raise AssertionError(f"{what}: got no window, expected {expected}")
    got = _table(window)
    if got != expected:
        raise AssertionError(
            f"{what}: window mismatch\n got      {got}\n expected {expected}"
        )
    if len(window) != len(expected):
        raise AssertionError(f"{what}: len(window) {len(window)} != {len(expected)}")
    if (window.packets, window.bytes) != Model.totals(expected):
        raise AssertionError(f"{what}: window totals {(window.packets, window.bytes)}")
    if not 0 < window.start <= window.end:
        raise AssertionError(f"{what}: window times {window.start} .. {window.end}")


def _check_state(core: Any, model: Model) -> None:
    if core.connections != len(model.cur):
        raise AssertionError(
            f"connections {core.connections} != model {len(model.cur)}"
        )
    dropped = [core.dropped_windows, core.dropped_packets, core.dropped_bytes]
    if dropped != model.dropped:
        raise AssertionError(f"dropped {dropped} != model {model.dropped}")
    pending = getattr(core, "pending", None)
    if pending is not None and pending != len(model.pending):
        raise AssertionError(f"pending {pending} != model {len(model.pending)}")


class Bytearray(bytearray):
    pass


HAS_BUFFER_PROTOCOL = sys.version_info >= (3, 12)


def _packet_object(packet: bytes, form: int) -> Any:
    form %= 8
    if form == 0:
        return packet
    if form == 1:
        return bytearray(packet)
    if form == 2:
        return memoryview(b"\xee" + packet)[1:]  # a view that starts inside its buffer
    if form == 3:
        return _GUARD.place(packet)
    if form == 4 and HAS_BUFFER_PROTOCOL:
        return Exporter(packet)
    if form == 5:
        # format-odd views: signed chars, or wider items when the size allows
        if len(packet) % 4 == 0:
            return memoryview(array.array("I", packet))
        return memoryview(array.array("b", packet))
    if form == 6 and len(packet) % 2 == 0 and packet:
        return memoryview(packet).cast("B", (2, len(packet) // 2))  # C-contiguous 2-D
    return Bytearray(packet)


def _hostile_address(text: str, sel: int) -> Any:
    addr = ipaddress.ip_address(text)
    return (MyV4 if addr.version == 4 else MyV6)(text) if sel & 1 else addr


def _hostile_batch(core: Any, model: Model, r: Reader, rx: bool) -> None:
    """A batch whose list an item changes while the batch reads it."""
    d = "rx" if rx else "tx"
    packets = [_packet(r) for _ in range(1 + r.u8() % 8)]
    where = r.u8() % len(packets)
    how = r.u8() % 3
    # Form 3 (the guarded buffer) is not used here: it holds one packet at a time.
    forms = [r.u8() % 8 for _ in packets]
    objects: list[Any] = [
        _packet_object(p, 0 if f == 3 else f) for p, f in zip(packets, forms)
    ]
    if HAS_BUFFER_PROTOCOL:
        objects[where] = Mutating(
            objects, packets[where], ("clear", "replace", "truncate")[how]
        )
    getattr(core, f"update_{d}_virtual_batch")(objects)
    for p in packets:
        model.virtual(p, rx)


def _hostile_physical(
    core: Any, model: Model, r: Reader, rx: bool, closed: bool
) -> None:
    d = "rx" if rx else "tx"
    src = ADDRS[r.u8() % len(ADDRS)]
    dst = ADDRS[r.u8() % len(ADDRS)]
    port = (0, 53, 41641, 65535)[r.u8() % 4]
    n = r.u8()
    sel = r.u8()
    bad = sel % 5
    src_obj: Any = _hostile_address(src, sel >> 3)
    dst_obj: Any = _hostile_address(dst, sel >> 4)
    port_obj: Any = LyingInt(port) if sel & 0x20 else port
    n_obj: Any = LyingInt(n) if sel & 0x40 else n
    if bad == 1:
        src_obj = (HugeV4 if ":" not in src else HugeV6)(src)
    elif bad == 2:
        dst_obj = (HugeV4 if ":" not in dst else HugeV6)(dst)
    elif bad == 3:
        port_obj = LyingInt(65536 + port)
    elif bad == 4:
        n_obj = LyingInt(-1 - n)
    call = getattr(core, f"update_{d}_physical")
    if bad:
        try:
            call(src_obj, (dst_obj, port_obj), n_obj)
        except ValueError:
            return
        if not closed:
            raise AssertionError(f"hostile physical #{bad} was accepted")
        return
    call(src_obj, (dst_obj, port_obj), n_obj)
    model.add("p", (0, _packed(src), 0, _packed(dst), port), rx, n)


def _hostile_buffer(core: Any, model: Model, r: Reader, rx: bool, closed: bool) -> None:
    """offsets/lengths as lists of int subclasses with lying comparisons."""
    d = "rx" if rx else "tx"
    packets = [_packet(r) for _ in range(r.u8() % 6)]
    buf = bytearray()
    offsets: list[int] = []
    lengths: list[int] = []
    for p in packets:
        buf += bytes(r.u8() % 3)
        offsets.append(LyingInt(len(buf)))
        lengths.append(LyingInt(len(p)))
        buf += p
    bad = r.u8() % 4 if packets else 0
    call = getattr(core, f"update_{d}_virtual_buffer")
    if bad:
        i = r.u8() % len(packets)
        if bad == 1:
            offsets[i] = LyingInt(-1 - r.u8())
        elif bad == 2:
            lengths[i] = LyingInt(-1 - r.u8())
        else:
            offsets[i] = LyingInt(len(buf) + 1 + r.u8())
        try:
            call(bytes(buf), offsets, lengths)
        except ValueError:
            return
        if not closed:
            raise AssertionError(f"hostile buffer #{bad} was accepted")
        return
    call(bytes(buf), offsets, lengths)
    for p in packets:
        model.virtual(p, rx)


def _address_form(text: str, form: int) -> Any:
    form %= 3
    if form == 0:
        return text
    if form == 1:
        return ipaddress.ip_address(text)
    return _packed(text)


def _dst_form(text: str, port: int, form: int) -> Any:
    form %= 3
    if form == 0:
        return (text, port)
    if form == 1:
        return core_module.AddrPort(ipaddress.ip_address(text), port)
    addr = ipaddress.ip_address(text)
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def _bad_call(core: Any, r: Reader, closed: bool) -> None:
    good = _template(0, r)
    rx = bool(r.u8() & 1)
    d = "rx" if rx else "tx"
    which = r.u8() % 12
    calls = [
        lambda: getattr(core, f"update_{d}_virtual")("not bytes"),
        lambda: getattr(core, f"update_{d}_virtual")(12345),
        lambda: getattr(core, f"update_{d}_virtual")(
            memoryview(bytearray(good * 2))[::2]
        ),
        lambda: getattr(core, f"update_{d}_virtual_batch")([good, good, "x"]),
        lambda: getattr(core, f"update_{d}_virtual_batch")([good, None]),
        lambda: getattr(core, f"update_{d}_virtual_buffer")(good, [0], [len(good) + 1]),
        lambda: getattr(core, f"update_{d}_virtual_buffer")(good, [0, 1], [1]),
        lambda: getattr(core, f"update_{d}_virtual_buffer")(good, [0, -1], [1, 1]),
        lambda: getattr(core, f"update_{d}_physical")("10.0.0.1", ("10.0.0.2", 1), -1),
        lambda: getattr(core, f"update_{d}_physical")(
            "10.0.0.1", ("10.0.0.2", 1), 1 << 64
        ),
        lambda: getattr(core, f"update_{d}_physical")("no address", ("10.0.0.2", 1), 1),
        lambda: getattr(core, f"update_{d}_physical")("10.0.0.1", 12, 1),
    ]
    try:
        calls[which]()
    except (TypeError, ValueError):
        return
    if closed:
        return  # after close() updates are dropped before any validation
    raise AssertionError(f"bad call #{which} ({d}) did not raise TypeError/ValueError")


# -- pre-parsed counting (update_virtual/update_physical/update_records) ------

RECORD = struct.Struct("<BBBBHH16s16sQQ")  # connstats.RECORD_FORMAT, spelled out
RECORD_SIZE = RECORD.size
PROTOS = (0, 1, 6, 17, 58, 99, 255)
PORTS = (0, 1, 53, 41641, 65535)
COUNTS = (0, 1, 1500, 1 << 32, U64 - 1, U64)


def _endpoint(r: Reader) -> tuple[Optional[str], int]:
    sel = r.u8()
    addr = None if sel % 9 == 8 else ADDRS[sel % 9 % len(ADDRS)]
    return addr, PORTS[r.u8() % len(PORTS)]


def _endpoint_form(addr: Optional[str], port: int, form: int) -> Any:
    """The endpoint as one of the forms update_virtual accepts."""
    if addr is None:
        return core_module.AddrPort(None, port) if form & 1 else (None, port)
    form %= 6
    if form == 0:
        return (addr, port)
    if form == 1:
        return core_module.AddrPort(ipaddress.ip_address(addr), port)
    if form == 2:
        return (_packed(addr), port)
    if form == 3:
        return (_hostile_address(addr, 1), LyingInt(port))  # honest subclasses
    if form == 4:
        return (ipaddress.ip_address(addr), port)
    text = ipaddress.ip_address(addr)
    return f"[{text}]:{port}" if text.version == 6 else f"{text}:{port}"


def _model_key(proto: int, src: tuple, dst: tuple) -> tuple:
    (sa, sp), (da, dp) = src, dst
    return (
        proto,
        None if sa is None else _packed(sa),
        sp,
        None if da is None else _packed(da),
        dp,
    )


def _preparsed(core: Any, model: Model, r: Reader, closed: bool) -> None:
    flags = r.u8()
    rx, physical = bool(flags & 1), bool(flags & 2)
    proto = PROTOS[r.u8() % len(PROTOS)]
    src, dst = _endpoint(r), _endpoint(r)
    packets, nbytes = COUNTS[r.u8() % len(COUNTS)], COUNTS[r.u8() % len(COUNTS)]
    forms = r.u8()
    args: list[Any] = [
        proto,
        _endpoint_form(*src, forms),
        _endpoint_form(*dst, forms >> 3),
        packets,
        nbytes,
    ]
    bad = (flags >> 2) % 12
    if bad == 1:
        args[0] = 256 + proto
    elif bad == 2:
        args[1 + (flags >> 6 & 1)] = "not an endpoint"
    elif bad == 3:
        args[3] = -1 - packets
    elif bad == 4:
        args[4] = LyingInt(-1 - (nbytes & 0xFFFF))
    elif bad == 5:
        args[3] = U64 + 1 + packets
    elif bad == 6:
        args[2] = (
            (HugeV4 if ":" not in (dst[0] or "") else HugeV6)(dst[0] or "1.2.3.4"),
            1,
        )
    elif bad == 7:
        rx = 1  # type: ignore[assignment] - not a bool
    call = core.update_physical if physical else core.update_virtual
    if bad in range(1, 8):
        try:
            call(*args, receive=rx)
        except (TypeError, ValueError):
            return
        # checked whenever made, closed or not (issue 22)
        raise AssertionError(
            f"bad pre-parsed call #{bad} was accepted (closed: {closed})"
        )
    call(*args, receive=rx)
    model.add(
        "p" if physical else "v", _model_key(proto, src, dst), rx, nbytes, packets
    )


def _record_bytes(r: Reader) -> tuple[bytes, tuple]:
    flags = r.u8() & 3
    proto = PROTOS[r.u8() % len(PROTOS)]
    src, dst = _endpoint(r), _endpoint(r)
    packets, nbytes = COUNTS[r.u8() % len(COUNTS)], COUNTS[r.u8() % len(COUNTS)]

    def side(addr: Optional[str]) -> tuple[int, bytes]:
        if addr is None:
            return 0, b""
        packed = _packed(addr)
        return (4 if len(packed) == 4 else 6), packed

    (sf, sr), (df, dr) = side(src[0]), side(dst[0])
    raw = RECORD.pack(proto, flags, sf, df, src[1], dst[1], sr, dr, packets, nbytes)
    entry = ("p" if flags & 2 else "v", _model_key(proto, src, dst), bool(flags & 1),
             nbytes, packets)  # fmt: skip
    return raw, entry


def _records_object(data: bytes, form: int) -> Any:
    form %= 6
    if form == 0:
        return data
    if form == 1:
        return bytearray(data)
    if form == 2:
        return memoryview(b"\xee" + data)[1:]
    if form == 3:
        return _GUARD.place(data)
    if form == 4 and len(data) % 8 == 0:
        return memoryview(array.array("Q", data))  # format-odd view
    if form == 5 and HAS_BUFFER_PROTOCOL:
        return Exporter(data)
    return Bytearray(data)


def _records(core: Any, model: Model, r: Reader, closed: bool) -> None:
    count = r.u8() % 9
    built = [_record_bytes(r) for _ in range(count)]
    data = b"".join(raw for raw, _ in built)
    corrupt = r.u8()
    if count and corrupt & 1:
        # one byte of a header or an address changed: flags, a family, the
        # padding after an IPv4 address... (_check_records decides)
        at = (corrupt >> 1) % count * RECORD_SIZE + r.u8() % 40
        data = data[:at] + bytes([r.u8()]) + data[at + 1 :]
    elif count and corrupt & 2:
        data = data[: -1 - corrupt % RECORD_SIZE]  # not a whole number of records
    valid = _check_records(data)
    try:
        core.update_records(_records_object(data, r.u8()))
    except ValueError:
        if valid is not None:
            raise AssertionError("valid records were refused") from None
        return
    if valid is None:  # checked whenever made, closed or not (issue 22)
        raise AssertionError(f"corrupt records were accepted (closed: {closed})")
    for kind, key, rx, nbytes, packets in valid:
        model.add(kind, key, rx, nbytes, packets)


def _check_records(data: bytes) -> Optional[list[tuple]]:
    """The harness's own reading of the record layout: entries, or None if refused."""
    if len(data) % RECORD_SIZE:
        return None
    out = []
    for proto, flags, sf, df, sp, dp, sr, dr, packets, nbytes in RECORD.iter_unpack(
        data
    ):
        if flags & ~3:
            return None
        sides = []
        for fam, raw in ((sf, sr), (df, dr)):
            if fam == 4 and not any(raw[4:]):
                sides.append(raw[:4])
            elif fam == 6:
                sides.append(raw)
            elif fam == 0 and not any(raw):
                sides.append(None)
            else:
                return None
        key = (proto, sides[0], sp, sides[1], dp)
        out.append(("p" if flags & 2 else "v", key, bool(flags & 1), nbytes, packets))
    return out


def _raw_records(core: Any, model: Model, r: Reader, closed: bool) -> None:
    """Records from the input's own bytes (mostly well-formed in their families)."""
    count = r.u8() % 4
    chunks = []
    for _ in range(count):
        raw = bytearray(r.take(RECORD_SIZE).ljust(RECORD_SIZE, b"\0"))
        # keep most of them acceptable: families from {0, 4, 6}, clean padding
        if raw[1] & 0x80 == 0:
            raw[1] &= 3
            for at, fam_at in ((8, 2), (24, 3)):
                raw[fam_at] = (0, 4, 6)[raw[fam_at] % 3]
                keep = {0: 0, 4: 4, 6: 16}[raw[fam_at]]
                raw[at + keep : at + 16] = bytes(16 - keep)
        chunks.append(bytes(raw))
    data = b"".join(chunks)
    valid = _check_records(data)
    try:
        core.update_records(data)
    except ValueError:
        if valid is not None:
            raise AssertionError("valid raw records were refused") from None
        return
    if valid is None:  # checked whenever made, closed or not (issue 22)
        raise AssertionError(f"invalid raw records were accepted (closed: {closed})")
    for kind, key, rx, nbytes, packets in valid:
        model.add(kind, key, rx, nbytes, packets)


def test_one_input(data: bytes) -> None:
    r = Reader(data)
    config = r.u8()
    max_conns = (0, 0, 1, 2, 3, 5, 8, 0)[config & 7]
    max_pending = 1 + ((config >> 3) & 3)
    ignore = SERVICE if config & 0x20 else ()
    core = core_module.Core(
        max_conns=max_conns, ignore_destinations=ignore, max_pending=max_pending
    )
    model = Model(max_conns, max_pending, ignore)
    ops = 0
    while r.remaining() and ops < 200:
        ops += 1
        op = r.u8() % 20
        rx = bool(op & 1)
        d = "rx" if rx else "tx"
        if op in (0, 1):
            packet = _packet(r)
            getattr(core, f"update_{d}_virtual")(_packet_object(packet, r.u8()))
            model.virtual(packet, rx)
        elif op in (2, 3):
            packets = [_packet(r) for _ in range(r.u8() % 9)]
            form = r.u8()
            # Only the last item may sit in the (single) guarded buffer.
            objects = [_packet_object(p, (form + i) % 3) for i, p in enumerate(packets)]
            if objects and form & 0x80:
                objects[-1] = _GUARD.place(packets[-1])
            getattr(core, f"update_{d}_virtual_batch")(objects)
            for p in packets:
                model.virtual(p, rx)
        elif op in (4, 5):
            packets = [_packet(r) for _ in range(r.u8() % 9)]
            buf = bytearray()
            offsets, lengths = [], []
            for p in packets:
                buf += bytes(r.u8() % 3)  # gaps between packets
                offsets.append(len(buf))
                lengths.append(len(p))
                buf += p
            form = r.u8() % 3
            if form == 1:
                offsets, lengths = array.array("q", offsets), array.array("I", lengths)
            elif form == 2:
                offsets, lengths = array.array("L", offsets), array.array("H", lengths)
            getattr(core, f"update_{d}_virtual_buffer")(bytes(buf), offsets, lengths)
            for p in packets:
                model.virtual(p, rx)
        elif op in (6, 7):
            src = ADDRS[r.u8() % len(ADDRS)]
            dst = ADDRS[r.u8() % len(ADDRS)]
            port = (0, 41641, 65535)[r.u8() % 3]
            size = r.u8()
            n = U64 - size if size & 0x80 else size
            forms = r.u8()
            call = getattr(core, f"update_{d}_physical")
            src_obj, dst_obj = (
                _address_form(src, forms),
                _dst_form(dst, port, forms >> 2),
            )
            if forms & 0x80:  # a batched send of several packets
                packets = COUNTS[forms % len(COUNTS)]
                call(src_obj, dst_obj, n, packets=packets)
            else:
                packets = 1
                call(src_obj, dst_obj, n)
            model.add("p", (0, _packed(src), 0, _packed(dst), port), rx, n, packets)
        elif op in (8, 9):
            _check_window(core.cut(), model.cur, f"cut after op {ops}")
            model.cur = {}
        elif op == 10:
            expected = model.pending.popleft() if model.pending else None
            _check_window(core.pop_pending(), expected, f"pop_pending after op {ops}")
        elif op == 11:
            _bad_call(core, r, model.closed)
        elif op == 12:
            if r.u8() < 16:  # rarely: later updates must be dropped
                core.close()
                model.closed = True
        elif op == 14:
            _hostile_batch(core, model, r, bool(r.u8() & 1))
        elif op == 15:
            _hostile_physical(core, model, r, bool(r.u8() & 1), model.closed)
        elif op == 16:
            _hostile_buffer(core, model, r, bool(r.u8() & 1), model.closed)
        elif op == 17:
            _preparsed(core, model, r, model.closed)
        elif op == 18:
            _records(core, model, r, model.closed)
        elif op == 19:
            _raw_records(core, model, r, model.closed)
        else:
            generation = r.u8()
            # a cut for a generation that is not the open window's: nothing happens
            info = core.window_info()
            if info is not None and info[0] != generation:
                if core.cut(generation) is not None:
                    raise AssertionError(
                        "cut(generation) cut a window of another generation"
                    )
        _check_state(core, model)
    while model.pending:
        _check_window(core.pop_pending(), model.pending.popleft(), "final pop_pending")
    _check_window(core.pop_pending(), None, "empty pending queue")
    _check_window(core.cut(), model.cur, "final cut")
    _check_window(core.cut(), None, "cut of an empty window")


if __name__ == "__main__":
    main(test_one_input)
