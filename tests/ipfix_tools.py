"""IPFIX test tools: an independent decoder, expected records, real collectors.

The decoder is written from RFC 7011 with ``struct`` and shares no code with
``connstats.export``: it learns templates from template sets and decodes
data sets field by field from them, checking every length on the way.

``Nfcapd`` and ``Nfacctd`` run the real collectors (Debian packages nfdump
and pmacct) on a loopback port and read back what they stored.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import connstats

AddrPort = connstats.AddrPort
Connection = connstats.Connection
Counts = connstats.Counts

# IANA IEs the exporter must use, by number (not imported from connstats).
IE_NAMES = {
    1: "octets",
    2: "packets",
    4: "proto",
    7: "sport",
    8: "src",
    11: "dport",
    12: "dst",
    27: "src",
    28: "dst",
    61: "direction",
    152: "start_ms",
    153: "end_ms",
}


class DecodeError(AssertionError):
    pass


def decode_stream(data: bytes, templates: dict | None = None) -> list[dict[str, Any]]:
    """Decode back-to-back IPFIX messages (a TCP stream or one datagram)."""
    out = []
    templates = {} if templates is None else templates
    offset = 0
    while offset < len(data):
        if len(data) - offset < 16:
            raise DecodeError(f"truncated message header at {offset}")
        version, length = struct.unpack_from(">HH", data, offset)
        if version != 10:
            raise DecodeError(f"version {version} at {offset}")
        if length < 16 or offset + length > len(data):
            raise DecodeError(f"message length {length} at {offset}")
        out.append(decode_message(data[offset : offset + length], templates))
        offset += length
    return out


def decode_message(msg: bytes, templates: dict) -> dict[str, Any]:
    """One message -> {"length", "export_time", "sequence", "domain", "records", "templates"}."""
    version, length, export_time, sequence, domain = struct.unpack_from(">HHIII", msg)
    if version != 10 or length != len(msg):
        raise DecodeError(f"bad header: version {version}, length {length}/{len(msg)}")
    records: list[dict[str, Any]] = []
    template_ids: list[int] = []
    pos = 16
    while pos < length:
        if length - pos < 4:
            raise DecodeError("truncated set header")
        set_id, set_len = struct.unpack_from(">HH", msg, pos)
        if set_len < 4 or pos + set_len > length:
            raise DecodeError(f"set length {set_len} at {pos}")
        body = msg[pos + 4 : pos + set_len]
        if set_id == 2:
            template_ids += _decode_templates(body, templates, domain)
        elif set_id >= 256:
            fields = templates.get((domain, set_id))
            if fields is None:
                raise DecodeError(f"data set {set_id} before its template")
            size = sum(n for _, n in fields)
            if len(body) % size:
                raise DecodeError(f"data set of {len(body)} bytes, records of {size}")
            for r in range(0, len(body), size):
                records.append(_decode_record(body[r : r + size], fields, set_id))
        else:
            raise DecodeError(f"unexpected set id {set_id}")
        pos += set_len
    return {
        "length": length,
        "export_time": export_time,
        "sequence": sequence,
        "domain": domain,
        "records": records,
        "templates": template_ids,
    }


def _decode_templates(body: bytes, templates: dict, domain: int) -> list[int]:
    ids = []
    pos = 0
    while pos + 4 <= len(body):
        tid, count = struct.unpack_from(">HH", body, pos)
        pos += 4
        fields = []
        for _ in range(count):
            ie, n = struct.unpack_from(">HH", body, pos)
            if ie & 0x8000:
                raise DecodeError("enterprise IE not expected")
            fields.append((ie, n))
            pos += 4
        templates[(domain, tid)] = fields
        ids.append(tid)
    if pos != len(body):
        raise DecodeError("template set has trailing bytes")
    return ids


def _decode_record(raw: bytes, fields: list, template: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"template": template, "src": None, "dst": None}
    pos = 0
    for ie, n in fields:
        chunk = raw[pos : pos + n]
        pos += n
        name = IE_NAMES.get(ie)
        if name is None:
            raise DecodeError(f"unexpected IE {ie}")
        if ie in (8, 12, 27, 28):
            rec[name] = ipaddress.ip_address(chunk)
        else:
            rec[name] = int.from_bytes(chunk, "big")
    return rec


# -- what the collector should see ---------------------------------------------------


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def expected(
    windows: list[tuple[datetime, datetime, dict, dict]], domains: tuple[int, int]
) -> Counter:
    """(domain, start_ms, proto, src, sport, dst, dport, direction) -> [packets, bytes].

    Written from the documented rule: tx is egress with the Connection's
    own addresses, rx is ingress with them swapped back.
    """
    out: Counter = Counter()
    for start, _end, virtual, physical in windows:
        for domain, table in zip(domains, (virtual, physical)):
            for conn, c in table.items():
                s, d = conn.src, conn.dst
                if c.tx_packets or c.tx_bytes:
                    key = (
                        domain,
                        ms(start),
                        conn.proto,
                        s.addr,
                        s.port,
                        d.addr,
                        d.port,
                        1,
                    )
                    out[key + ("p",)] += c.tx_packets
                    out[key + ("b",)] += c.tx_bytes
                if c.rx_packets or c.rx_bytes:
                    key = (
                        domain,
                        ms(start),
                        conn.proto,
                        d.addr,
                        d.port,
                        s.addr,
                        s.port,
                        0,
                    )
                    out[key + ("p",)] += c.rx_packets
                    out[key + ("b",)] += c.rx_bytes
    return out


def records_counter(records: list[dict[str, Any]]) -> Counter:
    out: Counter = Counter()
    for r in records:
        key = (
            r["domain"],
            r["start_ms"],
            r["proto"],
            r["src"],
            r["sport"],
            r["dst"],
            r["dport"],
            r["direction"],
        )
        out[key + ("p",)] += r["packets"]
        out[key + ("b",)] += r["octets"]
    return out


def random_window(
    rng: random.Random, n: int, *, start: datetime, seconds: float = 1.0
) -> tuple[datetime, datetime, dict, dict]:
    """A window of ``n`` virtual connections (IPv4/IPv6, TCP/UDP/ICMP) and a few physical."""
    virtual: dict = {}
    while len(virtual) < n:
        v6 = rng.random() < 0.3
        proto = rng.choice((6, 17, 1 if not v6 else 58))
        if v6:
            src = ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(32))
            dst = ipaddress.IPv6Address((0xFD7A115C << 96) | rng.getrandbits(40))
        else:
            src = ipaddress.IPv4Address(0x0A000000 | rng.getrandbits(20))
            dst = ipaddress.IPv4Address(0x64400000 | rng.getrandbits(16))
        ports = proto in (6, 17)
        conn = Connection(
            proto,
            AddrPort(src, rng.randrange(1, 65536) if ports else 0),
            AddrPort(dst, rng.randrange(1, 65536) if ports else 0),
        )
        kind = rng.random()
        tx = (
            (rng.randrange(1, 10**6), rng.randrange(1, 2**40)) if kind > 0.2 else (0, 0)
        )
        rx = (
            (rng.randrange(1, 10**6), rng.randrange(1, 2**40)) if kind < 0.8 else (0, 0)
        )
        virtual[conn] = Counts(tx[0], tx[1], rx[0], rx[1])
    physical = {}
    for i in range(rng.randrange(1, 5)):
        peer = AddrPort(ipaddress.IPv4Address(0xC6336400 + i), 41641)
        physical[
            Connection(0, AddrPort(ipaddress.IPv4Address("192.0.2.1"), 0), peer)
        ] = Counts(
            rng.randrange(1, 1000),
            rng.randrange(1, 10**6),
            rng.randrange(1, 1000),
            rng.randrange(1, 10**6),
        )
    return start, start + timedelta(seconds=seconds), virtual, physical


# -- real collectors -------------------------------------------------------------------


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def udp_rx_queue(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket bound to ``port``."""
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, queues = parts[1], parts[4]
            if int(local.rsplit(":", 1)[1], 16) == port:
                total += int(queues.split(":")[1], 16)
    return total


def wait_drained(port: int, timeout: float = 60.0) -> None:
    """Wait until the collector has read every datagram waiting for it."""
    deadline = time.monotonic() + timeout
    while udp_rx_queue(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


def _wait_for(
    path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 20.0
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited ({proc.returncode}): {text}")
        time.sleep(0.05)
    raise RuntimeError(f"collector did not log {pattern!r}: {text}")


class Nfcapd:
    """nfdump's nfcapd on a loopback port, writing into ``workdir``."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.dir = workdir / "nfcapd"
        self.dir.mkdir()
        self.host = host
        self.port = free_udp_port(host)
        self.log = workdir / "nfcapd.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Nfcapd:
        # -B: a receive buffer that holds a burst (capped by net.core.rmem_max).
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    "nfcapd",
                    "-b",
                    self.host,
                    "-p",
                    str(self.port),
                    "-w",
                    str(self.dir),
                    "-t",
                    "3600",
                    "-B",
                    "4000000",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_for(self.log, r"Startup", self.proc)
        return self

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            wait_drained(self.port)
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def domains(self, log: str) -> dict[int, int]:
        """nfcapd's SysID -> IPFIX observation domain, from its log."""
        return {
            int(sysid): int(domain)
            for sysid, domain in re.findall(
                r"SysID: (\d+), Observation domain (\d+)", log
            )
        }

    def records(self, log: str) -> Counter:
        files = sorted(str(p) for p in self.dir.rglob("nfcapd.*"))
        assert files, f"nfcapd wrote no file: {log}"
        sysids = self.domains(log)
        out: Counter = Counter()
        for f in files:
            text = subprocess.run(
                ["nfdump", "-r", f, "-o", "json"],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "TZ": "UTC"},
            ).stdout
            for r in json.loads(text or "[]"):
                if r.get("type") != "FLOW":
                    continue
                src = r.get("src4_addr") or r.get("src6_addr")
                dst = r.get("dst4_addr") or r.get("dst6_addr")
                start = int(
                    datetime.fromisoformat(r["first"] + "+00:00").timestamp() * 1000
                    + 0.5
                )
                key = (
                    sysids[r["export_sysid"]],
                    start,
                    r["proto"],
                    ipaddress.ip_address(src),
                    r.get("src_port", 0),
                    ipaddress.ip_address(dst),
                    # ICMP: nfdump shows the destination port as type and code
                    r.get(
                        "dst_port", r.get("icmp_type", 0) << 8 | r.get("icmp_code", 0)
                    ),
                    r["direction"],
                )
                out[key + ("p",)] += r["in_packets"]
                out[key + ("b",)] += r["in_bytes"]
        return out

    def stat(self) -> str:
        files = sorted(str(p) for p in self.dir.rglob("nfcapd.*"))
        return subprocess.run(
            ["nfdump", "-R", str(self.dir), "-I"]
            if len(files) > 1
            else ["nfdump", "-r", files[0], "-I"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout


_PMACCT_PRIMITIVES = "name=flow_dir\tfield_type=61\tlen=1\tsemantics=u_int\n"


class Nfacctd:
    """pmacct's nfacctd on a loopback port, print plugin writing JSON lines."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.dir = workdir / "nfacctd"
        self.dir.mkdir()
        self.host = host
        self.port = free_udp_port(host)
        self.log = self.dir / "nfacctd.log"
        self.out = self.dir / "out.json"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Nfacctd:
        prims = self.dir / "primitives.lst"
        prims.write_text(_PMACCT_PRIMITIVES)
        conf = self.dir / "nfacctd.conf"
        conf.write_text(
            "daemonize: false\n"
            # log sequence number gaps ("expecting flow N but received M")
            "nfacctd_disable_checks: false\n"
            f"nfacctd_ip: {self.host}\n"
            f"nfacctd_port: {self.port}\n"
            "nfacctd_pipe_size: 8388608\n"
            # the core -> print plugin pipe must hold a 100,000-connection
            # burst, or the core drops what the plugin has not taken yet
            "plugin_buffer_size: 102400\n"
            "plugin_pipe_size: 204800000\n"
            "plugins: print[out]\n"
            f"aggregate_primitives: {prims}\n"
            "aggregate[out]: src_host, dst_host, src_port, dst_port, proto, "
            "timestamp_start, export_proto_sysid, flow_dir\n"
            "print_output[out]: json\n"
            f"print_output_file[out]: {self.out}\n"
            "print_output_file_append[out]: true\n"
            "print_refresh_time[out]: 1\n"
            # 32771 buckets x depth 10: room for a 100,000-connection window
            "print_cache_entries[out]: 32771\n"
            "timestamps_since_epoch: true\n"
            f"logfile: {self.log}\n"
        )
        with (self.dir / "stdout.log").open("w") as log:
            self.proc = subprocess.Popen(
                ["nfacctd", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_for(self.log, r"waiting for NetFlow/IPFIX data", self.proc)
        return self

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            wait_drained(self.port)
            # The print plugin writes its cache every second and may lag
            # behind the core: wait until its output stops growing.
            deadline = time.monotonic() + 180
            last, since = -1, time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - since < 3.5:
                size = self.out.stat().st_size if self.out.exists() else 0
                if size != last:
                    last, since = size, time.monotonic()
                time.sleep(0.2)
            self.proc.send_signal(signal.SIGINT)  # nfacctd's clean exit
            self.proc.wait(30)
        return self.log.read_text(errors="replace")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def records(self) -> Counter:
        out: Counter = Counter()
        if not self.out.exists():
            return out
        names = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58}
        for line in self.out.read_text().splitlines():
            r = json.loads(line)
            proto = r["ip_proto"]
            proto = names[proto] if proto in names else int(proto)
            key = (
                r["export_proto_sysid"],
                round(float(r["timestamp_start"]) * 1000),
                proto,
                ipaddress.ip_address(r["ip_src"]),
                r["port_src"],
                ipaddress.ip_address(r["ip_dst"]),
                r["port_dst"],
                int(r["flow_dir"]),
            )
            out[key + ("p",)] += r["packets"]
            out[key + ("b",)] += r["bytes"]
        return out


def need(binary: str) -> None:
    import pytest

    if shutil.which(binary) is None:
        pytest.skip(
            f"{binary} is not installed (Debian: apt-get install nfdump pmacct tshark)"
        )


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
