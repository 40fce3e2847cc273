"""pcapng options: the direction epb_flags records, and malformed options.

- An enhanced packet block's ``epb_flags`` option says whether the packet
  came in or went out (``connstats capture -w`` writes it, as dumpcap does).
  Inbound packets count as rx, outbound as tx, whatever ``--local`` says;
  without it ``--local`` decides.  So ``capture -w`` then ``read`` gives the
  table the capture printed, without ``--local``.
- An option that runs past its block (interface or packet block) is skipped,
  with the options after it; the packets before and after it are read, and
  the interface's case is reported as a warning.

Both scanners (compiled and pure Python) run every test.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import captures as cap
import pytest
from captures import Interface, Section
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connstats.capture import CaptureError, CaptureReader, Stop

T0 = 1_700_000_000_000_000_000
OUT = cap.udp4("192.0.2.1", 5000, "198.51.100.7", 53, b"q" * 12)  # 40 bytes
IN = cap.udp4("198.51.100.7", 53, "192.0.2.1", 5000, b"r" * 52)  # 80 bytes
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=cap.SCANNERS)
def scanner(request):
    return cap.scanner_class(request.param)


def capture(flags: list[int | None], *, big: bool = False, packets=None) -> bytes:
    o = ">" if big else "<"
    packets = packets or [OUT, IN]
    return cap.pcapng(
        Section(
            [Interface(101)],
            [(0, T0 + i, p) for i, p in enumerate(packets)],
            big_endian=big,
            epb_options={
                i: cap.epb_flags(o, f) for i, f in enumerate(flags) if f is not None
            },
        )
    )


CONVERSATION = {(17, "192.0.2.1:5000", "198.51.100.7:53"): (1, 40, 1, 80)}
AS_TX = {
    (17, "192.0.2.1:5000", "198.51.100.7:53"): (1, 40, 0, 0),
    (17, "198.51.100.7:53", "192.0.2.1:5000"): (1, 80, 0, 0),
}


@pytest.mark.parametrize("big", [False, True], ids=["le", "be"])
def test_recorded_direction_is_used(scanner, big):
    data = capture([2, 1], big=big)
    assert cap.read_table(data, scanner_class=scanner) == CONVERSATION
    # --local would say otherwise (neither address is local): the record wins
    assert (
        cap.read_table(data, scanner_class=scanner, local=["203.0.113.0/24"])
        == CONVERSATION
    )


def test_unknown_direction_falls_back_to_local(scanner):
    # 0: not recorded; 3: not a direction; no option at all
    for flags in ([0, 0], [3, 3], [None, None], [2, None]):
        data = capture(flags)
        assert cap.read_table(data, scanner_class=scanner) == AS_TX, flags
        table = cap.read_table(data, scanner_class=scanner, local=["192.0.2.1"])
        assert table == CONVERSATION, flags
    # inbound recorded, outbound left to --local
    data = capture([None, 1])
    assert cap.read_table(data, scanner_class=scanner) == CONVERSATION


def test_other_options_before_epb_flags(scanner):
    o = "<"
    comment = struct.pack(o + "HH", 1, 5) + b"hello\0\0\0"  # opt_comment, padded
    options = comment + cap.epb_flags(o, 1)
    data = cap.pcapng(
        Section([Interface(101)], [(0, T0, IN)], epb_options={0: options})
    )
    assert cap.read_table(data, scanner_class=scanner) == {
        (17, "192.0.2.1:5000", "198.51.100.7:53"): (0, 0, 1, 80)
    }


def test_an_epb_option_running_past_its_block_is_skipped(scanner):
    o = "<"
    # epb_flags first, then an option that claims 200 bytes
    options = cap.epb_flags(o, 1)[:8] + struct.pack(o + "HH", 1, 200) + b"xxxx"
    data = cap.pcapng(
        Section(
            [Interface(101)], [(0, T0, IN), (0, T0 + 1, OUT)], epb_options={0: options}
        )
    )
    assert cap.read_table(data, scanner_class=scanner) == CONVERSATION
    # an epb_flags that itself runs past the block is not read
    options = struct.pack(o + "HH", 2, 8) + struct.pack(o + "I", 1)
    data = cap.pcapng(
        Section(
            [Interface(101)], [(0, T0, IN), (0, T0 + 1, OUT)], epb_options={0: options}
        )
    )
    assert cap.read_table(data, scanner_class=scanner) == AS_TX


def idb_with(options: bytes) -> bytes:
    """A little-endian section whose interface block ends with ``options``."""
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1)
    shb += struct.pack("<I", 28)
    length = 20 + len(options)
    idb = struct.pack("<IIHHI", 1, length, 101, 0, 0) + options
    return shb + idb + struct.pack("<I", length)


def epb(packet: bytes, ts: int) -> bytes:
    body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(packet), len(packet))
    body += packet + bytes(-len(packet) % 4)
    return (
        struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    )


@pytest.mark.parametrize(
    "options",
    [
        # if_tsoffset says 8 bytes, the block ends after its header: reading
        # it used to end the run with a struct.error traceback
        struct.pack("<HH", 14, 8),
        # ... 4 of them there: the trailing length was read as the offset
        struct.pack("<HH", 14, 8) + bytes(4),
        # a name that runs past the block, then nothing
        struct.pack("<HH", 2, 64) + b"eth0",
        # a good if_tsresol (ms), then an overrunning if_tsoffset
        struct.pack("<HHB3x", 9, 1, 3) + struct.pack("<HH", 14, 8),
    ],
    ids=["tsoffset-no-bytes", "tsoffset-4-bytes", "name", "tsresol-then-bad"],
)
def test_an_idb_option_running_past_its_block_is_skipped_with_a_warning(
    scanner, options
):
    ts_unit = 1_000_000 if options.startswith(struct.pack("<HH", 9, 1)) else 1_000
    data = idb_with(options) + epb(OUT, 1_700_000_000_000) + epb(IN, 1_700_000_000_001)
    windows, reader = cap.read_windows(data, scanner_class=scanner)
    assert [w.start_ns for w in windows] == [1_700_000_000_000 * ts_unit]
    assert cap.as_table(windows[0].virtual) == AS_TX
    assert len(reader.warnings) == 1
    assert reader.warnings[0].startswith(
        "interface description block at byte 28: option "
    )
    assert reader.warnings[0].endswith(
        "runs past its block; options from there on ignored"
    )


def test_the_command_warns_and_reads_on(tmp_path):
    path = tmp_path / "bad-idb.pcapng"
    path.write_bytes(idb_with(struct.pack("<HH", 14, 8)) + epb(OUT, 1_700_000_000_000))
    run = subprocess.run(
        [sys.executable, "-m", "connstats", "read", str(path), "--format", "csv"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr == (
        f"connstats: warning: {path}: interface description block at byte 28: "
        "option 14 (8 bytes) runs past its block; options from there on ignored\n"
    )
    assert run.stdout.splitlines()[1].endswith(
        ",17,udp,192.0.2.1,5000,198.51.100.7,53,1,40,0,0"
    )


_OPTION = st.tuples(
    st.sampled_from([0, 1, 2, 2, 2, 9, 14, 0xBEEF]),
    st.integers(0, 24),
    st.binary(max_size=12),
)


def _read_all(data: bytes, scanner) -> list:
    out: list = []
    try:
        reader = CaptureReader(io.BytesIO(data), "h", scanner_class=scanner, capacity=2)
        while True:
            batch = reader.read()
            out.append(
                (
                    [bytes(batch.data[o : o + n]) for o, n in zip(batch.tx_offsets, batch.tx_lengths)],
                    [bytes(batch.data[o : o + n]) for o, n in zip(batch.rx_offsets, batch.rx_lengths)],
                )
            )  # fmt: skip
            if batch.stop is Stop.EOF:
                break
        out.append(reader.warnings)
    except CaptureError as exc:
        out.append(str(exc))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    idb_opts=st.lists(_OPTION, max_size=3),
    epb_opts=st.lists(_OPTION, max_size=3),
    big=st.booleans(),
)
@pytest.mark.c_extension
def test_any_options_read_the_same_in_both_scanners(idb_opts, epb_opts, big):
    # Options as declared, whatever their lengths say: never an exception
    # other than CaptureError, and the compiled scanner agrees with the twin.
    o = ">" if big else "<"

    def raw(opts):
        return b"".join(
            struct.pack(o + "HH", code, length) + value + bytes(-len(value) % 4)
            for code, length, value in opts
        )

    shb = struct.pack(o + "IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1)
    shb += struct.pack(o + "I", 28)
    body = struct.pack(o + "HHI", 101, 0, 0) + raw(idb_opts)
    idb = (
        struct.pack(o + "II", 1, 12 + len(body))
        + body
        + struct.pack(o + "I", 12 + len(body))
    )
    body = struct.pack(o + "IIIII", 0, 0, 1, len(IN), len(IN)) + IN + raw(epb_opts)
    block = (
        struct.pack(o + "II", 6, 12 + len(body))
        + body
        + struct.pack(o + "I", 12 + len(body))
    )
    data = shb + idb + block
    twin = _read_all(data, cap.scanner_class("py"))
    assert _read_all(data, cap.scanner_class("c")) == twin
