"""Capture filters of ``connstats capture`` compiled to classic BPF.

``--host``, ``--net``, ``--port`` and ``--proto`` become one classic BPF
program that the kernel runs on every packet before it reaches the ring
(``SO_ATTACH_FILTER``), so filtered-out traffic costs no copy.  Values of one
option are alternatives (``--port 53 --port 443``: either port); different
options must all hold (``--host A --port 53``: host A *and* port 53), as
``host A and (port 53 or port 443)`` would in tcpdump.

The program runs on the packet from its IP header on (an ``AF_PACKET``
``SOCK_DGRAM`` socket removes the link header; the tee and ``connstats
read`` use the same layout as LINKTYPE_RAW).  What each option matches:

- ``--host ADDR``: source or destination address is ADDR.
- ``--net CIDR``: source or destination address in CIDR.
- ``--port N``: TCP, UDP or SCTP source or destination port N; IPv4 later
  fragments (no transport header) never match; IPv6 only when the transport
  header follows the fixed header directly (no extension headers), as
  libpcap's ``port`` does without its fragment walk.
- ``--proto P``: IP protocol number or name (IPv4 protocol field, IPv6 next
  header of the fixed header, or of a fragment header right after it: every
  IPv6 fragment of a P datagram passes, as with libpcap's ``ip6 proto P``).

Non-IP frames (ARP, ...) never pass a filter.  ``ifindex_program`` prefixes
a program with a check of the receiving interface, for several ``-i``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._types import PROTOCOL_NAMES

# Instruction classes and modes (linux/filter.h, linux/bpf_common.h).
LD_W_ABS = 0x20
LD_H_ABS = 0x28
LD_B_ABS = 0x30
LD_H_IND = 0x48
LDX_B_MSH = 0xB1
LDX_IMM = 0x01
ALU_AND_K = 0x54
JEQ_K = 0x15
JSET_K = 0x45
RET_K = 0x06
RET_A = 0x16
JA = 0x05

SKF_AD_OFF = -0x1000
SKF_AD_IFINDEX = 8
ACCEPT = 0x40000  # bytes to keep: the whole packet (up to 256 KiB)

Insn = tuple[int, int, int, int]  # (code, jt, jf, k)

_PORT_PROTOS = (6, 17, 132)


class FilterError(ValueError):
    """A filter option value that cannot be compiled; the message names it."""


@dataclass
class Filter:
    """The parsed ``--host/--net/--port/--proto`` options."""

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(
        default_factory=list
    )
    ports: list[int] = field(default_factory=list)
    protos: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.nets or self.ports or self.protos)

    def expression(self) -> str:
        """The same filter as a tcpdump expression (what libpcap would compile)."""
        groups = []
        if self.nets:
            groups.append(" or ".join(f"net {n}" for n in self.nets))
        if self.ports:
            groups.append(" or ".join(f"port {p}" for p in self.ports))
        if self.protos:
            groups.append(
                " or ".join(f"ip proto {p} or ip6 proto {p}" for p in self.protos)
            )
        return " and ".join(f"({g})" for g in groups) or "ip or ip6"


def parse_filter(
    hosts: Iterable[str] = (),
    nets: Iterable[str] = (),
    ports: Iterable[str | int] = (),
    protos: Iterable[str | int] = (),
) -> Filter:
    """Check and normalise the option values; FilterError names the bad one.

    ``--host`` and ``--net`` are one kind (addresses): a host is a /32 or
    /128 network, and either matching is enough.
    """
    f = Filter()
    for text in hosts:
        try:
            f.nets.append(ipaddress.ip_network(ipaddress.ip_address(str(text).strip())))
        except ValueError:
            raise FilterError(f"--host: {text!r} is not an IP address") from None
    for text in nets:
        try:
            f.nets.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            raise FilterError(
                f"--net: {text!r} is not an IP network (examples: 10.0.0.0/8, fd00::/8)"
            ) from None
    for value in ports:
        try:
            port = int(value)
        except ValueError:
            raise FilterError(f"--port: {value!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise FilterError(f"--port: {value!r} is not in 0..65535")
        f.ports.append(port)
    by_name = {name: num for num, name in PROTOCOL_NAMES.items()}
    for value in protos:
        text = str(value).strip().lower()
        if text in by_name:
            f.protos.append(by_name[text])
            continue
        try:
            proto = int(text)
        except ValueError:
            names = ", ".join(sorted(by_name))
            raise FilterError(
                f"--proto: {value!r} is not a protocol number or one of {names}"
            ) from None
        if not 0 <= proto <= 255:
            raise FilterError(f"--proto: {value!r} is not in 0..255")
        f.protos.append(proto)
    return f


class _Asm:
    """Instructions with symbolic jump targets, resolved to relative offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, str | None, str | None]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0) -> None:
        self.code.append((code, k & 0xFFFFFFFF, None, None))

    def jump(self, code: int, k: int, jt: str | None, jf: str | None) -> None:
        """``jt``/``jf``: label to go to, or None for the next instruction."""
        self.code.append((code, k & 0xFFFFFFFF, jt, jf))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> list[Insn]:
        out: list[Insn] = []
        for i, (code, k, jt, jf) in enumerate(self.code):
            offs = []
            for target in (jt, jf):
                if target is None:
                    offs.append(0)
                    continue
                off = self.labels[target] - i - 1
                if not 0 <= off <= 255:
                    raise FilterError(
                        "capture filter too long for classic BPF jumps; use fewer values"
                    )
                offs.append(off)
            out.append((code, offs[0], offs[1], k))
        return out


def _net_words(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> list[tuple[int, int]]:
    """(value, mask) per 32-bit word of the address, skipping fully masked-out words."""
    nbytes = 4 if net.version == 4 else 16
    addr = net.network_address.packed
    mask = net.netmask.packed
    words = []
    for i in range(0, nbytes, 4):
        m = int.from_bytes(mask[i : i + 4], "big")
        if m:
            words.append((int.from_bytes(addr[i : i + 4], "big"), m))
    return words


def _emit_net(
    asm: _Asm,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    offset: int,
    ok: str,
    fail: str,
) -> None:
    """Jump to ``ok`` if the address at ``offset`` is in ``net``, else to ``fail``."""
    words = _net_words(net)
    if not words:  # 0.0.0.0/0 or ::/0
        asm.jump(JEQ_K, 0, ok, ok)
        return
    for n, (value, mask) in enumerate(words):
        asm.op(LD_W_ABS, offset + 4 * _word_index(net, n))
        if mask != 0xFFFFFFFF:
            asm.op(ALU_AND_K, mask)
        last = n == len(words) - 1
        asm.jump(JEQ_K, value, ok if last else None, fail)


def _word_index(net: ipaddress.IPv4Network | ipaddress.IPv6Network, n: int) -> int:
    # Words with a zero mask are skipped by _net_words; find the n-th kept one.
    mask = net.netmask.packed
    kept = [i // 4 for i in range(0, len(mask), 4) if any(mask[i : i + 4])]
    return kept[n]


def _family(asm: _Asm, f: Filter, version: int, reject: str) -> None:
    """The tests of one IP version; falls through to accept or jumps to ``reject``."""
    ip4 = version == 4
    nets = [n for n in f.nets if n.version == version]
    if f.nets:
        ok = f"v{version}_addr_ok"
        if not nets:
            asm.jump(JEQ_K, 0, reject, reject)
        src, dst = (12, 16) if ip4 else (8, 24)
        for i, net in enumerate(nets):
            for j, off in enumerate((src, dst)):
                nxt = f"v{version}_addr_{i}_{j}"
                last = i == len(nets) - 1 and j == 1
                _emit_net(asm, net, off, ok, reject if last else nxt)
                asm.label(nxt)
        asm.label(ok)
    if f.protos:
        ok = f"v{version}_proto_ok"
        asm.op(LD_B_ABS, 9 if ip4 else 6)
        if not ip4:
            fragment = "v6_proto_fragment"
            # a fragment header first: its next header is the protocol
            if 44 not in f.protos:
                asm.jump(JEQ_K, 44, fragment, None)
        for i, proto in enumerate(f.protos):
            last = i == len(f.protos) - 1
            asm.jump(JEQ_K, proto, ok, reject if last else None)
        if not ip4 and 44 not in f.protos:
            asm.label(fragment)
            asm.op(LD_B_ABS, 40)
            for i, proto in enumerate(f.protos):
                last = i == len(f.protos) - 1
                asm.jump(JEQ_K, proto, ok, reject if last else None)
        asm.label(ok)
    if f.ports:
        ok = f"v{version}_port_ok"
        is_l4 = f"v{version}_l4"
        asm.op(LD_B_ABS, 9 if ip4 else 6)
        for i, proto in enumerate(_PORT_PROTOS):
            last = i == len(_PORT_PROTOS) - 1
            asm.jump(JEQ_K, proto, is_l4, reject if last else None)
        asm.label(is_l4)
        if ip4:
            # a later fragment has no transport header
            asm.op(LD_H_ABS, 6)
            asm.jump(JSET_K, 0x1FFF, reject, None)
            asm.op(LDX_B_MSH, 0)  # X = IPv4 header length
        else:
            asm.op(LDX_IMM, 40)  # X = the fixed IPv6 header
        for j, field_off in enumerate((0, 2)):
            asm.op(LD_H_IND, field_off)
            for i, port in enumerate(f.ports):
                last = j == 1 and i == len(f.ports) - 1
                asm.jump(JEQ_K, port, ok, reject if last else None)
        asm.label(ok)
    asm.op(RET_K, ACCEPT)


def compile_filter(f: Filter) -> list[Insn]:
    """The classic BPF program for ``f`` (packets starting at the IP header)."""
    asm = _Asm()
    asm.op(LD_B_ABS, 0)
    asm.op(ALU_AND_K, 0xF0)
    asm.jump(JEQ_K, 0x40, "v4", None)
    asm.jump(JEQ_K, 0x60, "v6", "reject")
    asm.label("v4")
    _family(asm, f, 4, "reject")
    asm.label("v6")
    _family(asm, f, 6, "reject")
    asm.label("reject")
    asm.op(RET_K, 0)
    return asm.assemble()


def ifindex_program(
    ifindexes: Sequence[int], program: Sequence[Insn] | None
) -> list[Insn]:
    """``program`` (or accept-all) run only for packets of the given interfaces."""
    body = list(program) if program else [(RET_K, 0, 0, ACCEPT)]
    if len(ifindexes) > 250:
        raise FilterError("too many interfaces for one capture filter (250 at most)")
    n = len(ifindexes)
    prefix: list[Insn] = [(LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_IFINDEX) & 0xFFFFFFFF)]
    for i, idx in enumerate(ifindexes):
        # jump over the remaining compares and the reject to the body
        prefix.append((JEQ_K, n - i, 0, idx))
    prefix.append((RET_K, 0, 0, 0))
    return prefix + body


def conjoin(first: Sequence[Insn], second: Sequence[Insn]) -> list[Insn]:
    """A program accepting what both accept: ``first``'s accepts jump to ``second``."""
    out: list[Insn] = []
    n = len(first)
    for i, (code, jt, jf, k) in enumerate(first):
        if (code == RET_K and k != 0) or code == RET_A:
            out.append((JA, 0, 0, n - i - 1))
        else:
            out.append((code, jt, jf, k))
    return out + list(second)


def pack(program: Sequence[Insn]) -> bytes:
    """``struct sock_filter[]`` in host byte order."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


def run(program: Sequence[Insn], packet: bytes, ifindex: int = 0) -> int:
    """Interpret ``program`` on ``packet`` (the subset this module emits, plus
    what libpcap emits for simple expressions).  Returns the kernel's verdict:
    bytes to keep, 0 to drop.  For tests and for ``--bpf`` self-checks."""
    a = x = 0
    pc = 0
    mem = [0] * 16
    n = len(packet)
    while True:
        if pc >= len(program):
            return 0
        code, jt, jf, k = program[pc]
        pc += 1
        cls = code & 0x07
        if cls in (0x00, 0x01):  # LD, LDX
            mode, size = code & 0xE0, code & 0x18
            width = {0x00: 4, 0x08: 2, 0x10: 1}[size]
            if mode == 0x00:  # IMM
                val = k
            elif mode == 0x80:  # LEN
                val = n
            elif mode == 0x60:  # MEM
                val = mem[k & 15]
            elif mode == 0xA0 and cls == 0x01:  # MSH
                if k >= n:
                    return 0
                val = (packet[k] & 0x0F) * 4
            else:
                off = k if mode == 0x20 else (x + k) & 0xFFFFFFFF
                if mode == 0x20 and k >= 0x80000000:
                    if (k - (1 << 32)) == SKF_AD_OFF + SKF_AD_IFINDEX:
                        val = ifindex
                    else:
                        return 0
                elif off + width > n:
                    return 0
                else:
                    val = int.from_bytes(packet[off : off + width], "big")
            if cls == 0x00:
                a = val
            else:
                x = val
        elif cls in (0x02, 0x03):  # ST, STX
            mem[k & 15] = a if cls == 0x02 else x
        elif cls == 0x04:  # ALU
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                a = (a + src) & 0xFFFFFFFF
            elif op == 0x10:
                a = (a - src) & 0xFFFFFFFF
            elif op == 0x20:
                a = (a * src) & 0xFFFFFFFF
            elif op == 0x30:
                if src == 0:
                    return 0
                a //= src
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & 0xFFFFFFFF
            elif op == 0x70:
                a >>= src
            elif op == 0x80:
                a = (-a) & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                pc += k
                continue
            cond = {
                0x10: a == src,
                0x20: a > src,
                0x30: a >= src,
                0x40: bool(a & src),
            }[op]
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        elif cls == 0x07:  # MISC: TAX / TXA
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
