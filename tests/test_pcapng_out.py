"""The pcapng tee of ``connstats capture -w``: readable by connstats read and tcpdump."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import pytest

from connstats.capture import _pcapng_out as out
from connstats.capture import open_capture


def _udp(payload: bytes) -> bytes:
    n = 28 + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, n, 1, 0, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))  # fmt: skip
    return ip + struct.pack(">HHHH", 5000, 9, 8 + len(payload), 0) + payload


UDP = _udp(b"")
ODD = _udp(b"abc")  # 31 bytes: padded to 32 in the block


def _file() -> bytes:
    return (
        out.header("eth0", "connstats test")
        + out.enhanced_packet(UDP, 1_700_000_000_123_456_789, outbound=True)
        + out.enhanced_packet(ODD, 1_700_000_001_000_000_001, outbound=False)
        + out.statistics(1_700_000_002_000_000_000, received=5, dropped=3, delivered=2)
    )


def test_read_back_packets_and_timestamps(tmp_path):
    path = tmp_path / "tee.pcapng"
    path.write_bytes(_file())
    with open_capture(str(path)) as reader:
        batch = reader.read()
        data = bytes(batch.data)
        sent, received = (
            [data[o : o + n] for o, n in zip(offsets.tolist(), lengths.tolist())]
            for offsets, lengths in (
                (batch.tx_offsets, batch.tx_lengths),
                (batch.rx_offsets, batch.rx_lengths),
            )
        )
        # the direction each block records (epb_flags), bytes exact
        assert (sent, received) == ([UDP], [ODD])
        assert batch.first_ns == 1_700_000_000_123_456_789
        assert batch.last_ns == 1_700_000_001_000_000_001
        assert reader.linktypes == [out.LINKTYPE_RAW]


def test_blocks_are_well_formed():
    data = _file()
    pos, types = 0, []
    while pos < len(data):
        btype, length = struct.unpack_from("=II", data, pos)
        assert length % 4 == 0
        assert struct.unpack_from("=I", data, pos + length - 4)[0] == length
        types.append(btype)
        pos += length
    assert types == [0x0A0D0D0A, 1, 6, 6, 5]
    # epb_flags of the second packet: inbound (1)
    epb = out.enhanced_packet(ODD, 0, outbound=False)
    assert struct.unpack_from("=HHI", epb, 28 + 32) == (2, 4, 1)
    assert io.BytesIO(data).read(4) == b"\n\r\r\n"


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_it(tmp_path):
    path = tmp_path / "tee.pcapng"
    path.write_bytes(_file())
    text = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, timeout=30
    ).stdout
    assert text.count("192.0.2.1.5000 > 192.0.2.2.9: UDP") == 2, text
