"""The single-packet GIL decision measurement (see RESULTS.md, "GIL decision").

1 thread: 2,000,000 calls of ``update_tx_virtual`` on one IPv4 UDP 789-byte
packet (best of 5).  2 threads: 2,000,000 calls each on two distinct
connections, aggregate ns per call (best of 3).  Run it against a build
whose single-packet entry points keep the GIL and one that releases it per
packet to compare the two designs.

    python benchmarks/gil_decision.py
"""

import ipaddress
import struct
import threading
import time
import timeit

import connstats

N = 2_000_000


def udp4(src, dst, sp, dp, n=789):
    payload = b"x" * (n - 28)
    h = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, n, 0, 0, 64, 17, 0,
        ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
    )  # fmt: skip
    return h + struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload


p = udp4("100.64.0.1", "100.64.0.2", 51000, 443)
q = udp4("100.64.0.3", "100.64.0.4", 51000, 443)
s = connstats.Statistics()
f = s.update_tx_virtual

t = min(
    timeit.repeat(
        "for _ in r: f(p)",
        globals={"f": f, "p": p, "r": range(N)},
        number=1,
        repeat=5,
    )
)
print("1 thread", round(t / N * 1e9, 1), "ns/call")


def work(pkt):
    for _ in range(N):
        f(pkt)


best = 1e9
for _ in range(3):
    ts = [threading.Thread(target=work, args=(x,)) for x in (p, q)]
    t0 = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    best = min(best, time.perf_counter() - t0)
print("2 threads", round(best / (2 * N) * 1e9, 1), "ns/call aggregate")
