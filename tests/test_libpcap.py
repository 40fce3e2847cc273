"""connstats.capture._libpcap: BPF expressions compiled and run by the real libpcap."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import captures as cap

from connstats.capture import _libpcap

pytestmark = pytest.mark.skipif(
    not _libpcap.available(), reason="libpcap is not installed (apt install libpcap0.8)"
)

DNS = cap.udp4("10.0.0.1", 40000, "10.0.0.2", 53, b"q")
WEB = cap.tcp4("10.0.0.1", 40001, "192.0.2.9", 443)
WEB6 = cap.tcp6("fd00::1", 40002, "fd00::2", 443)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("udp port 53", [True, False, False]),
        ("tcp port 443", [False, True, True]),
        ("ip6", [False, False, True]),
        ("host 192.0.2.9", [False, True, False]),
        ("net 10.0.0.0/8 and not port 443", [True, False, False]),
        ("", [True, True, True]),
    ],
)
def test_filters_ethernet_and_raw_ip(expr, expected):
    eth = _libpcap.compile_filter(expr, 1)
    raw = _libpcap.compile_filter(expr, 101)
    for packet, want in zip((DNS, WEB, WEB6), expected):
        assert _libpcap.offline_filter(eth, cap.ethernet(packet)) is want
        assert _libpcap.offline_filter(raw, packet) is want


def test_wire_length_is_what_len_tests():
    prog = _libpcap.compile_filter("greater 1000", 101)
    assert not _libpcap.offline_filter(prog, DNS)
    assert _libpcap.offline_filter(prog, DNS, wire_length=1500)


def test_bad_expression_names_it():
    with pytest.raises(_libpcap.FilterError, match="'tcp prt 80'.*syntax error"):
        _libpcap.compile_filter("tcp prt 80", 1)
    with pytest.raises(TypeError, match="expr"):
        _libpcap.compile_filter(b"tcp", 1)  # type: ignore[arg-type]


def test_instructions_and_close():
    prog = _libpcap.compile_filter("tcp", 1)
    insns = prog.instructions
    assert insns and all(len(i) == 4 for i in insns)
    assert insns[-1][0] == 0x06  # BPF_RET
    prog.close()
    with pytest.raises(ValueError, match="closed"):
        _libpcap.offline_filter(prog, cap.ethernet(WEB))


def test_missing_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_libpcap, "_lib", None)
    monkeypatch.setattr(_libpcap, "_lib_error", None)
    monkeypatch.setattr(_libpcap.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_libpcap, "_CANDIDATES", ("libnothere-cs-readb.so",))
    assert not _libpcap.available()
    with pytest.raises(_libpcap.LibpcapMissingError, match="libpcap is not installed"):
        _libpcap.compile_filter("tcp", 1)
