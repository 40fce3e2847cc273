"""``connstats capture`` on a real veth pair: exact counts, filters, -i any, lo, tee, drops.

Each test builds the lab of ``tests/netlab.py`` (two namespaces ``cs-cap-*``,
a veth pair, a C sender) and removes it afterwards, after stopping every
process it started there.  They need root and Linux and are skipped
elsewhere with the reason printed; the tests that ping skip, saying so,
where ``ping`` is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import netlab

_REASON = netlab.can_run()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
ROOT = Path(__file__).resolve().parents[1]
IP_BYTES = 18 + netlab.UDP_OVERHEAD  # the sender's default payload
NO_PING = "ping (iputils-ping) is not installed"
needs_ping = pytest.mark.skipif(shutil.which("ping") is None, reason=NO_PING)


def _env() -> dict[str, str]:
    import connstats

    env = dict(os.environ)
    if Path(connstats.__file__ or "").resolve().is_relative_to(ROOT):
        # Running from the source tree: let the child import the same package.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH")) if p
        )
    return env


@pytest.fixture
def lab():
    try:
        with netlab.Lab(f"t{os.getpid() % 100000}") as lab:
            yield lab
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build the veth lab: {(exc.stderr or b'')!r}")


def start(lab: netlab.Lab, *args: str, pure: bool = False) -> subprocess.Popen[str]:
    env = _env()
    if pure:
        env["CONNSTATS_NO_EXTENSIONS"] = "1"
    else:
        # the ring's tests run the compiled capture also where the suite
        # itself runs the pure-Python core
        env.pop("CONNSTATS_NO_EXTENSIONS", None)
    proc = lab.spawn(
        lab.b, sys.executable, "-m", "connstats", "capture", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    netlab.wait_for_line(proc, "connstats: capturing")
    time.sleep(0.2)
    return proc


def stop(
    proc: subprocess.Popen[str], drain: float = 0.3, signum: int = signal.SIGINT
) -> tuple[int, str, str]:
    time.sleep(drain)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def jsonl(out: str) -> tuple[dict[tuple, list[int]], dict, list[dict]]:
    """(totals per connection, captureSummary, window messages)."""
    totals: dict[tuple, list[int]] = {}
    summary: dict = {}
    windows = []
    for line in out.splitlines():
        msg = json.loads(line)
        if "captureSummary" in msg:
            summary = msg["captureSummary"]
            continue
        windows.append(msg)
        for entry in msg.get("virtualTraffic", []):
            key = (entry["proto"], entry["src"], entry["dst"])
            counts = totals.setdefault(key, [0, 0, 0, 0])
            for i, f in enumerate(("txPkts", "txBytes", "rxPkts", "rxBytes")):
                counts[i] += entry.get(f, 0)
    return totals, summary, windows


def udp_rx(src_port: int, packets: int) -> tuple[tuple, list[int]]:
    # rx: src and dst swapped, so the receiver's side comes first
    return (
        (17, f"{netlab.DST}:{netlab.PORT}", f"{netlab.SRC}:{src_port}"),
        [0, 0, packets, packets * IP_BYTES],
    )


@pytest.mark.parametrize("pure", [False, True], ids=["ring", "recvfrom-fallback"])
def test_exact_counts_against_sender_and_interface_counter(lab, pure):
    # the pure-Python fallback reads one packet per call: a slower rate
    n, flows, rate = (40_000, 4, 20_000) if not pure else (4_000, 4, 4_000)
    rx0 = lab.rx_packets()
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "--max-period", "0.5",
                 pure=pure)  # fmt: skip
    sent, _took, _cpu = lab.send(n, rate=rate, flows=flows)
    status, out, err = stop(proc)
    assert status == 0, err
    arrived = lab.rx_packets() - rx0
    totals, summary, windows = jsonl(out)
    assert sent == n
    assert arrived == n
    assert summary["packets"] == n
    assert summary["kernelDrops"] == 0
    assert summary["kernelReceived"] == n
    assert summary["bytes"] == n * IP_BYTES
    assert len(windows) > 1  # windows cut by --max-period still add up exactly
    assert summary["mode"].startswith("recvfrom" if pure else "TPACKET_V3")
    assert totals == dict(
        udp_rx(40000 + f, k) for f, k in enumerate(netlab.per_flow(n, flows))
    )


def test_port_and_host_filter_run_in_the_kernel(lab):
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "--port", "40001",
                 "--host", netlab.SRC)  # fmt: skip
    lab.send(4_000, rate=20_000, flows=2)
    status, out, err = stop(proc)
    assert status == 0, err
    totals, summary, _ = jsonl(out)
    assert totals == dict([udp_rx(40001, netlab.per_flow(4_000, 2)[1])])
    # filtered out in the kernel: never received, never dropped
    assert summary["kernelReceived"] == netlab.per_flow(4_000, 2)[1]
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "--proto", "tcp")
    lab.send(1_000, rate=20_000)
    status, out, err = stop(proc)
    assert jsonl(out)[1]["packets"] == 0


def test_bpf_expression_compiled_by_libpcap(lab):
    from connstats.capture import _libpcap

    if not _libpcap.available():
        pytest.skip("libpcap is not installed (apt-get install libpcap0.8)")
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "--bpf",
                 "udp and src port 40000", "--net", "192.0.2.0/24")  # fmt: skip
    lab.send(3_000, rate=20_000, flows=3)
    status, out, err = stop(proc)
    assert status == 0, err
    assert jsonl(out)[0] == dict([udp_rx(40000, netlab.per_flow(3_000, 3)[0])])


@needs_ping
def test_any_and_several_interfaces_and_loopback_counted_once(lab):
    # lo inside the receiving namespace carries only what this test sends
    ping = [
        "ip",
        "netns",
        "exec",
        lab.b,
        "ping",
        "-q",
        "-c",
        "3",
        "-i",
        "0.05",
        "127.0.0.1",
    ]
    for args in (["-i", "any"], ["-i", lab.dev_b, "-i", "lo"], ["-i", "lo"]):
        proc = start(lab, *args, "--format", "jsonl")
        lab.send(1_000, rate=20_000)
        subprocess.run(ping, check=True, capture_output=True, timeout=30)
        status, out, err = stop(proc)
        assert status == 0, err
        totals, summary, _ = jsonl(out)
        # three echo requests and three replies, 84 bytes each, each once (rx)
        icmp = {(1, "127.0.0.1:0", "127.0.0.1:0"): [0, 0, 6, 6 * 84]}
        if args == ["-i", "lo"]:
            assert totals == icmp, args
            assert summary["packets"] == 6
        else:
            assert totals == {**icmp, **dict([udp_rx(40000, 1_000)])}, args
            assert summary["packets"] == 1_006
        # the kernel handed over the outgoing copies too; they are not counted
        assert summary["loopbackCopies"] == 6
        assert summary["kernelReceived"] == summary["packets"] + 6


@needs_ping
def test_write_then_read_gives_the_same_counts(lab, tmp_path):
    path = tmp_path / "tee.pcapng"
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "-w", str(path))
    lab.send(5_000, rate=20_000, flows=5)
    subprocess.run(["ip", "netns", "exec", lab.b, "ping", "-q", "-c", "2", "-i", "0.05",
                    netlab.SRC], check=True, capture_output=True, timeout=30)  # fmt: skip
    # SIGTERM, as a service manager stops it: between blocks, tee complete
    status, out, err = stop(proc, signum=signal.SIGTERM)
    assert status == 0, err
    live, summary, _ = jsonl(out)
    assert summary["interrupted"] is True
    assert summary["packets"] == 5_004
    # The file records each packet's direction (epb_flags): no --local needed
    assert _read_jsonl(path) == live
    # echo requests sent by the receiver: tx on the live side too
    assert live[(1, f"{netlab.DST}:0", f"{netlab.SRC}:0")] == [2, 168, 2, 168]


def test_drops_are_reported_in_every_format_and_fail_on_drop(lab):
    for fmt in ("table", "jsonl", "csv"):
        proc = start(lab, "-i", lab.dev_b, "--format", fmt, "--ring-size", "8k",
                     "--block-size", "4k", "--fail-on-drop")  # fmt: skip
        # A stopped capture cannot empty its two 4 KiB blocks: the kernel drops.
        proc.send_signal(signal.SIGSTOP)
        lab.send(5_000, rate=50_000)
        proc.send_signal(signal.SIGCONT)
        status, out, err = stop(proc, drain=0.5)
        assert status == 3, (out, err)
        assert "connstats: WARNING: the kernel dropped" in err
        if fmt == "jsonl":
            _, summary, windows = jsonl(out)
            dropped = summary["kernelDrops"]
            assert windows[-1]["capture"]["kernelDrops"] == dropped
        elif fmt == "csv":
            # rows stay rows; the summary line goes to stderr
            assert out.splitlines()[0].startswith("window,")
            line = next(x for x in err.splitlines() if x.startswith(f"{lab.dev_b}: "))
            dropped = int(line.rsplit(", ", 1)[1].split()[0])
        else:
            line = out.strip().splitlines()[-1]
            assert line.startswith(f"{lab.dev_b}: ") and " dropped" in line
            dropped = int(line.rsplit(", ", 1)[1].split()[0])
            assert "dropped by the kernel" in out
        assert 0 < dropped < 5_000
        assert f"the kernel dropped {dropped} of 5000 packets" in err


def test_interface_going_down_keeps_what_was_counted(lab):
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl")
    lab.send(1_000, rate=20_000)
    time.sleep(0.3)
    subprocess.run(["ip", "-n", lab.b, "link", "set", lab.dev_b, "down"], check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert (
        err == f"connstats: capture on {lab.dev_b} stopped: the interface went down\n"
    )
    totals, summary, _ = jsonl(out)
    assert totals == dict([udp_rx(40000, 1_000)])
    assert summary["packets"] == 1_000


def _read_jsonl(path: Path, *args: str) -> dict[tuple, list[int]]:
    read = subprocess.run(
        [sys.executable, "-m", "connstats", "read", str(path), "--format", "jsonl", *args],
        capture_output=True, text=True, env=_env(), check=True, timeout=60,
    )  # fmt: skip
    return jsonl(read.stdout)[0]


@pytest.mark.parametrize("end", ["signal", "duration"])
def test_the_end_counts_the_block_the_kernel_was_filling(lab, end):
    # Blocks handed over 5 s after their first packet: the ten packets are
    # all in the block the kernel is filling when the capture ends.  They
    # were received: they are counted, not lost between the two counters.
    until = ["--duration", "1.5"] if end == "duration" else []
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "--block-timeout", "5000",
                 *until)  # fmt: skip
    lab.send(10, rate=1_000)
    if end == "signal":
        status, out, err = stop(proc)
    else:
        out, err = proc.communicate(timeout=60)
        status = proc.returncode
    assert status == 0, err
    totals, summary, _ = jsonl(out)
    assert summary["kernelReceived"] == 10
    assert (summary["packets"], summary["kernelDrops"]) == (10, 0)
    assert totals == dict([udp_rx(40000, 10)])


SEND_BIG = r"""
import socket, sys, time
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
for n in map(int, sys.argv[1:]):
    s.sendto(b"x" * n, r.getsockname())
    time.sleep(0.05)  # one block each: the ring's last block gets one too
print(s.getsockname()[1], r.getsockname()[1])
"""


def test_packets_larger_than_a_block_count_as_read_counts_them(lab, tmp_path):
    # lo's MTU is 64 KiB: each datagram is one IP packet, most larger than
    # a 4 KiB block holds.  The ring cuts them short; they still count as
    # the UDP packets they are, with their IP length, as `connstats read`
    # counts the -w file (which keeps them cut, with their wire length).
    path = tmp_path / "big.pcapng"
    sizes = [6000, 3000, 100, 9000, 2000, 20000, 5000]
    proc = start(lab, "-i", "lo", "--format", "jsonl", "--ring-size", "16k",
                 "--block-size", "4k", "-w", str(path))  # fmt: skip
    sent = lab.run_in(lab.b, sys.executable, "-c", SEND_BIG, *map(str, sizes))
    sport, dport = sent.stdout.split()
    status, out, err = stop(proc)
    assert status == 0, err
    live, summary, _ = jsonl(out)
    want = {
        (17, f"127.0.0.1:{dport}", f"127.0.0.1:{sport}"): [
            0, 0, len(sizes), sum(n + netlab.UDP_OVERHEAD for n in sizes)
        ]
    }  # fmt: skip
    assert live == want
    assert summary["truncated"] == len([n for n in sizes if n > 4096])
    assert summary["kernelDrops"] == 0
    assert _read_jsonl(path) == want


SEND_PADDED = r"""
import socket, struct, sys
dev, mac, src, dst, n = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), *sys.argv[3:6]
ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
frame = mac + b"\x02\x00\x00\x00\x00\x02\x08\x00" + ip + struct.pack(">HHHH", 40000, 9, 8, 0)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
for _ in range(int(n)):
    s.send(frame + bytes(18))  # padded to the 60-byte Ethernet minimum
"""


def test_padding_after_short_packets_is_not_counted(lab, tmp_path):
    # 28-byte IP packets in 60-byte Ethernet frames: the 18 bytes of padding
    # after the IP packet are not part of it, and `connstats read` of the
    # -w file does not count them either.
    path = tmp_path / "short.pcapng"
    proc = start(lab, "-i", lab.dev_b, "--format", "jsonl", "-w", str(path))
    mac_b = lab.link(lab.b, lab.dev_b)["address"]
    lab.run_in(lab.a, sys.executable, "-c", SEND_PADDED, lab.dev_a, mac_b, netlab.SRC,
               netlab.DST, "100")  # fmt: skip
    status, out, err = stop(proc)
    assert status == 0, err
    live, summary, _ = jsonl(out)
    want = {
        (17, f"{netlab.DST}:{netlab.PORT}", f"{netlab.SRC}:40000"): [0, 0, 100, 2800]
    }
    assert live == want and summary["bytes"] == 2800
    assert _read_jsonl(path) == want
    # packets of the capture: a new -w file is readable by its owner only
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _marked_processes(mark: str) -> list[int]:
    """Processes whose environment holds ``mark`` (started by a run that set it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_without_ping_the_ping_tests_skip_and_stop_their_captures(tmp_path):
    # This module again, in a mount namespace where ping is not there (an
    # empty, non-executable file over it): the ping tests skip and say why,
    # and no process of that run is left behind.
    ping = shutil.which("ping")
    if ping is None:
        pytest.skip(f"{NO_PING}: the ping tests skip in this very run")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    mark = f"CONNSTATS_TEST_RUN=noping-{os.getpid()}"
    env = {**_env(), mark.split("=")[0]: mark.split("=")[1]}
    hide = 'mount --bind /dev/null "$0" && exec "$@"'
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide,
         os.path.realpath(ping), sys.executable, "-m", "pytest", __file__, "-q", "-rs",
         "-p", "no:cacheprovider", "-k", "loopback_counted_once or write_then_read"],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    left = _marked_processes(mark)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout, run.stdout
    assert run.stdout.count(NO_PING) == 2, run.stdout
    assert left == []
