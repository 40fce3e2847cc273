"""IPFIXExporter: a ``dump`` callback that sends windows to a flow collector."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from .._clock import EPOCH
from . import _ipfix
from ._transport import TCPTransport, UDPTransport

logger = logging.getLogger("connstats.export")

_MS: Final = timedelta(milliseconds=1)
_SCHEMES: Final = {"ipfix": "udp", "ipfix+udp": "udp", "ipfix+tcp": "tcp"}
_LOG_INTERVAL: Final = 10.0
_U32: Final = 0xFFFFFFFF
# IP + UDP/TCP header bytes that the MTU must also hold.
_OVERHEAD: Final = {
    (socket.AF_INET, "udp"): 28,
    (socket.AF_INET6, "udp"): 48,
    (socket.AF_INET, "tcp"): 40,
    (socket.AF_INET6, "tcp"): 60,
}
# The largest IP packet a UDP datagram can travel in: the IPv4 total length
# counts the header, the IPv6 payload length does not (no jumbograms).
_UDP_MTU_MAX: Final = {socket.AF_INET: 0xFFFF, socket.AF_INET6: 40 + 0xFFFF}


def parse_collector(collector: Any) -> tuple[str, int, str | None]:
    """``(host, port)``, ``"HOST:PORT"``, ``"[V6]:PORT"`` or an ``ipfix://`` URL.

    Returns ``(host, port, transport or None)``; a URL's scheme names the
    transport (``ipfix://`` and ``ipfix+udp://``: UDP, ``ipfix+tcp://``: TCP).
    """
    transport: str | None = None
    if isinstance(collector, tuple) and len(collector) == 2:
        host, port = collector
    elif isinstance(collector, str):
        text = collector.strip()
        if "://" in text:
            parts = urlsplit(text)
            if parts.scheme not in _SCHEMES:
                raise ValueError(
                    f"collector: unknown scheme {parts.scheme!r} in {collector!r} "
                    f"(use {', '.join(s + '://' for s in _SCHEMES)})"
                )
            transport = _SCHEMES[parts.scheme]
            text = parts.netloc
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(
                f"collector: expected HOST:PORT, [IPV6]:PORT or ipfix://HOST:PORT, got {collector!r}"
            )
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"collector: port {port_text!r} is not a number") from None
    else:
        raise TypeError(
            "collector: expected (host, port) or a 'HOST:PORT' string, "
            f"got {type(collector).__name__}"
        )
    if not isinstance(host, str) or not host:
        raise TypeError(f"collector: host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"collector: port must be 1..65535, got {port!r}")
    return host, port, transport


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start/end: expected timezone-aware datetimes")
    return (moment - EPOCH) // _MS


class _RateLimitedLog:
    """One WARNING per interval; the ones in between are counted and summarised."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, self._suppressed)
        self._last = now
        self._suppressed = 0
        logger.warning(message, *args)


class IPFIXExporter:
    """Send connstats windows to an IPFIX (RFC 7011) collector.

    An instance is a ``dump(start, end, virtual, physical)`` callable: pass it
    as ``Statistics(dump=...)`` or call it from your own dump.  It never
    raises for network failures: they are logged (rate-limited, logger
    ``connstats.export``) and counted in :attr:`export_errors` and
    :attr:`records_not_sent`, and the next window is tried afresh.  Records
    that cannot be encoded (a window before 1970: IPFIX times are unsigned)
    are logged and counted in :attr:`records_not_sent` too: every record of a
    window ends up in :attr:`records_sent`, :attr:`records_not_sent` or (TCP)
    :attr:`records_queued`.  Over UDP ``mtu`` must fit a UDP datagram
    (65535 bytes over IPv4, 65575 over IPv6, headers included).

    Each connection gives up to two data records per window: tx as
    ``flowDirection`` egress (1) with the Connection's own source and
    destination, rx as ingress (0) with source and destination swapped back
    to how they were on the wire.  Virtual connections are exported in
    observation domain ``observation_domain_id``, physical (underlay) ones
    in ``physical_observation_domain_id``.
    """

    def __init__(
        self,
        collector: Any,
        *,
        transport: str | None = None,
        observation_domain_id: int = 1,
        physical_observation_domain_id: int | None = None,
        template_refresh: float = 60.0,
        template_refresh_messages: int = 1000,
        mtu: int = 1400,
        max_rate: float = 0.0,
        timeout: float = 1.0,
        max_buffer: int = 4 << 20,
    ) -> None:
        host, port, url_transport = parse_collector(collector)
        if transport is None:
            transport = url_transport or "udp"
        elif url_transport is not None and url_transport != transport:
            raise ValueError(
                f"transport: {transport!r} contradicts the collector URL's {url_transport!r}"
            )
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport: expected 'udp' or 'tcp', got {transport!r}")
        if physical_observation_domain_id is None:
            physical_observation_domain_id = (observation_domain_id + 1) & _U32
        for name, value in (
            ("observation_domain_id", observation_domain_id),
            ("physical_observation_domain_id", physical_observation_domain_id),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if not 0 <= value <= _U32:
                raise ValueError(f"{name}: must be 0..4294967295, got {value}")
        if observation_domain_id == physical_observation_domain_id:
            raise ValueError(
                "physical_observation_domain_id: must differ from observation_domain_id "
                "(it is how physical records are told apart)"
            )
        for name, number in (
            ("template_refresh", template_refresh),
            ("max_rate", max_rate),
            ("timeout", timeout),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise TypeError(
                    f"{name}: expected a number, got {type(number).__name__}"
                )
            if not number >= 0 or number == float("inf"):
                raise ValueError(
                    f"{name}: must be a finite number >= 0, got {number!r}"
                )
        for name, count in (
            ("template_refresh_messages", template_refresh_messages),
            ("mtu", mtu),
            ("max_buffer", max_buffer),
        ):
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"{name}: expected an int, got {type(count).__name__}")
            if count < 0:
                raise ValueError(f"{name}: must be >= 0, got {count}")
        try:
            infos = socket.getaddrinfo(
                host,
                port,
                type=socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM,
            )
        except socket.gaierror as exc:
            raise ValueError(
                f"collector: cannot resolve {host!r}: {exc.strerror}"
            ) from None
        family, _, _, _, address = infos[0]
        if transport == "udp" and mtu > _UDP_MTU_MAX[family]:
            # Every message would be refused by the kernel (EMSGSIZE).
            version = 4 if family == socket.AF_INET else 6
            raise ValueError(
                f"mtu: {mtu} is larger than any UDP datagram over IPv{version} "
                f"(at most {_UDP_MTU_MAX[family]} bytes with its headers); use "
                "ipfix+tcp:// for larger messages"
            )
        max_size = min(mtu - _OVERHEAD[(family, transport)], 0xFFFF)
        if max_size < _ipfix.min_message_size():
            raise ValueError(
                f"mtu: {mtu} leaves {max_size} bytes per message; at least "
                f"{_ipfix.min_message_size() + _OVERHEAD[(family, transport)]} needed"
            )
        if transport == "tcp" and max_buffer < max_size:
            raise ValueError(f"max_buffer: must hold one message ({max_size} bytes)")
        self.collector = (host, port)
        self.transport = transport
        self.address = address
        self.observation_domain_id = observation_domain_id
        self.physical_observation_domain_id = physical_observation_domain_id
        self.template_refresh = float(template_refresh)
        self.template_refresh_messages = template_refresh_messages
        self.max_message_size = max_size
        self.max_rate = float(max_rate)
        self.timeout = float(timeout)
        self._encoder = _ipfix.Encoder(max_size)
        self._udp: UDPTransport | None = None
        self._tcp: TCPTransport | None = None
        if transport == "udp":
            self._udp = UDPTransport(family, address)
        else:
            self._tcp = TCPTransport(
                family, address, max_buffer=max_buffer, timeout=timeout
            )
        self._lock = threading.Lock()
        self._log = _RateLimitedLog(_LOG_INTERVAL)
        # Per observation domain: sequence number, and when/after how many
        # messages the templates were last sent (None: not in this session).
        self._sequence = {observation_domain_id: 0, physical_observation_domain_id: 0}
        self._templates_at: dict[int, float | None] = dict.fromkeys(self._sequence)
        self._since_templates = dict.fromkeys(self._sequence, 0)
        self._next_send = 0.0
        self._deadline = 0.0
        self._closed = False
        self._handled = 0  # records of the current window sent or counted not sent
        #: Failed sends, connects and dropped messages (each logged, rate-limited).
        self.export_errors = 0
        #: Data records handed to the network (UDP) or written to the connection (TCP).
        self.records_sent = 0
        #: Data records lost at the exporter: failed sends, full TCP queue, broken connection.
        self.records_not_sent = 0
        #: IPFIX messages sent, templates included.
        self.messages_sent = 0
        #: Template messages sent (one per observation domain and refresh).
        self.templates_sent = 0

    # -- the dump callback -------------------------------------------------------------

    def __call__(
        self,
        start: datetime,
        end: datetime,
        virtual: Mapping[Any, Any],
        physical: Mapping[Any, Any],
    ) -> None:
        """Export one window (the signature of ``Statistics(dump=...)``)."""
        start_ms, end_ms = _ms(start), _ms(end)
        with self._lock:
            if self._closed:
                self._log.warning(
                    "IPFIX exporter to %s is closed; window dropped", self._where()
                )
                self.records_not_sent += _count_records(virtual) + _count_records(
                    physical
                )
                return
            # Every record of the window ends up sent, queued (TCP) or not
            # sent; those the encoder or a bug never got to are not sent too.
            self._handled = 0
            # A window waits for the network this long in all (TCP: a slow
            # collector; UDP: a full socket buffer).
            self._deadline = time.monotonic() + self.timeout
            try:
                if self._tcp is not None:
                    self._tcp_prepare()
                for domain, table in (
                    (self.observation_domain_id, virtual),
                    (self.physical_observation_domain_id, physical),
                ):
                    if table:
                        self._export_table(domain, table, start_ms, end_ms)
                if self._tcp is not None:
                    self._tcp_flush(self._deadline)
            except Exception:  # never let the flush thread see an exporter bug
                self.export_errors += 1
                lost = max(
                    0,
                    _count_records(virtual) + _count_records(physical) - self._handled,
                )
                self.records_not_sent += lost
                logger.exception(
                    "IPFIX export to %s failed; %d records not sent",
                    self._where(),
                    lost,
                )

    def close(self, timeout: float | None = None) -> None:
        """Write what TCP still has queued (``timeout`` seconds at most) and close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._tcp is not None:
                wait = self.timeout if timeout is None else timeout
                self._tcp_flush(time.monotonic() + wait)
                lost = self._tcp.drop()
                if lost:
                    self.records_not_sent += lost
                    self.export_errors += 1
                    self._log.warning(
                        "IPFIX exporter to %s closed with %d records unsent",
                        self._where(),
                        lost,
                    )
                self._tcp.close()
            if self._udp is not None:
                self._udp.close()

    def __enter__(self) -> IPFIXExporter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<connstats.export.IPFIXExporter {self.transport} {self._where()} "
            f"records_sent={self.records_sent} records_not_sent={self.records_not_sent} "
            f"export_errors={self.export_errors}>"
        )

    # -- internals -----------------------------------------------------------------------

    def _where(self) -> str:
        host, port = self.collector
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _export_table(
        self, domain: int, table: Mapping[Any, Any], start_ms: int, end_ms: int
    ) -> None:
        export_time = int(time.time()) & _U32
        set_sequence = _ipfix.set_sequence
        for message, records in self._encoder.messages(
            table, start_ms, end_ms, export_time, domain
        ):
            if self._udp is not None and self._templates_due(domain):
                templates = _ipfix.template_message(
                    export_time, self._sequence[domain], domain
                )
                if self._send_udp(templates):
                    self.templates_sent += 1
                    self._templates_at[domain] = time.monotonic()
                    self._since_templates[domain] = 0
            set_sequence(message, self._sequence[domain])
            if self._udp is not None:
                ok = self._send_udp(message)
            else:
                ok = self._enqueue_tcp(message, records)
            self._handled += records
            if ok:
                self._sequence[domain] = (self._sequence[domain] + records) & _U32
                self._since_templates[domain] += 1
                if self._udp is not None:
                    self.records_sent += records
            else:
                self.records_not_sent += records

    def _templates_due(self, domain: int) -> bool:
        last = self._templates_at[domain]
        if last is None:
            return True
        if self.template_refresh and time.monotonic() - last >= self.template_refresh:
            return True
        every = self.template_refresh_messages
        return bool(every) and self._since_templates[domain] >= every

    def _pace(self) -> None:
        if not self.max_rate:
            return
        now = time.monotonic()
        if self._next_send > now:
            time.sleep(self._next_send - now)
            now = self._next_send
        self._next_send = max(self._next_send, now - 0.05) + 1.0 / self.max_rate

    def _send_udp(self, message: memoryview | bytes) -> bool:
        assert self._udp is not None
        self._pace()
        try:
            ok = self._udp.send(message, self._deadline)
        except OSError as exc:
            self.export_errors += 1
            self._log.warning("IPFIX export to %s: %s", self._where(), exc)
            return False
        if ok:
            self.messages_sent += 1
            # The count of a data message is added by the caller.
            return True
        self.export_errors += 1
        return False

    def _tcp_prepare(self) -> None:
        tcp = self._tcp
        assert tcp is not None
        if tcp.connected:
            return
        try:
            tcp.connect(self._deadline)
        except OSError as exc:
            self.export_errors += 1
            self._log.warning(
                "IPFIX export to %s: cannot connect: %s", self._where(), exc
            )
            return
        # A new transport session: fresh sequence numbers, templates first.
        for domain in self._sequence:
            self._sequence[domain] = 0
            tcp.enqueue(_ipfix.template_message(int(time.time()) & _U32, 0, domain), 0)
            self.templates_sent += 1

    def _enqueue_tcp(self, message: memoryview, records: int) -> bool:
        tcp = self._tcp
        assert tcp is not None
        if not tcp.connected:
            return False
        if tcp.enqueue(message, records):
            return True
        # Queue full: write what the collector takes (until the window's
        # deadline), then try once more.
        self._tcp_flush(self._deadline)
        if tcp.connected and tcp.enqueue(message, records):
            return True
        self.export_errors += 1
        self._log.warning(
            "IPFIX export to %s: collector too slow, %d-byte queue full; records dropped",
            self._where(),
            tcp.max_buffer,
        )
        return False

    def _tcp_flush(self, deadline: float) -> None:
        tcp = self._tcp
        assert tcp is not None
        try:
            written = tcp.flush(deadline)
        except OSError as exc:
            self.export_errors += 1
            lost = tcp.drop()
            self.records_not_sent += lost
            self._log.warning(
                "IPFIX export to %s: connection lost (%s); %d records dropped",
                self._where(),
                exc,
                lost,
            )
            return
        self.messages_sent += written[0]
        self.records_sent += written[1]

    @property
    def records_queued(self) -> int:
        """Records waiting in the TCP queue (always 0 over UDP)."""
        return 0 if self._tcp is None else self._tcp.queued_records


def _count_records(table: Mapping[Any, Any]) -> int:
    """The data records a table gives (one per direction with traffic).

    A value that is not Counts-like (a caller's own table) counts as one
    record, so that it is not lost from the tallies either.
    """
    n = 0
    for counts in table.values():
        try:
            n += bool(counts.tx_packets or counts.tx_bytes) + bool(
                counts.rx_packets or counts.rx_bytes
            )
        except Exception:
            n += 1
    return n
