"""``connstats read`` with no FILE: standard input when something is piped in.

``tcpdump -w - | connstats read`` used to print the built-in sample and exit
0.  Standard input is read when it is a pipe, a socket or a file; a
terminal, ``/dev/null`` or no standard input at all still give the sample.
Real processes: tcpdump writes the stream, connstats reads it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import captures as cap
import pytest

PACKETS = [
    cap.udp4("192.0.2.1", 5000 + i, "198.51.100.7", 53, b"q" * i) for i in range(5)
]


def _capture(tmp_path: Path) -> Path:
    path = tmp_path / "in.pcap"
    path.write_bytes(cap.pcap([(10**18 + i, p) for i, p in enumerate(PACKETS)], 101))
    return path


def _read(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connstats", "read", "--format", "csv", *args],
        capture_output=True, text=True, timeout=120, **kw,
    )  # fmt: skip


def _rows(out: str) -> list[str]:
    return [",".join(line.split(",")[4:]) for line in out.splitlines()[1:]]


def _want() -> list[str]:
    return sorted(
        f"17,udp,192.0.2.1,{5000 + i},198.51.100.7,53,1,{28 + i},0,0" for i in range(5)
    )


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_a_pipe_from_tcpdump_is_read(tmp_path):
    path = _capture(tmp_path)
    tcpdump = subprocess.Popen(["tcpdump", "-r", str(path), "-w", "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        run = _read(stdin=tcpdump.stdout)
    finally:
        assert tcpdump.stdout is not None
        tcpdump.stdout.close()
        tcpdump.wait(timeout=60)
    assert run.returncode == 0, run.stderr
    assert sorted(_rows(run.stdout)) == _want()


def test_a_redirected_file_is_read(tmp_path):
    with open(_capture(tmp_path), "rb") as f:
        run = _read(stdin=f)
    assert run.returncode == 0, run.stderr
    assert sorted(_rows(run.stdout)) == _want()


def test_dev_null_and_no_stdin_give_the_sample():
    sample = _read("connstats/data/sample.pcap", cwd=Path(__file__).parents[1])
    assert sample.returncode == 0
    run = _read(stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    assert run.stdout == sample.stdout
    # no standard input at all (closed file descriptor 0)
    run = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.close(0); "
         "from connstats.cli import main; sys.exit(main(['read', '--format', 'csv']))"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == sample.stdout


def test_an_empty_pipe_is_an_empty_input():
    run = _read(input="")
    assert run.returncode == 1
    assert (
        run.stderr == "connstats: <stdin>: empty input, not a pcap or pcapng capture\n"
    )
