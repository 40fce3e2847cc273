"""Instructions per packet of the capture ring's walk (``src/cs_ring.h``), under callgrind.

Walks a 1 MiB block of 8,191 frames (46-byte IPv4/UDP packets) REPS times
through the test hook ``_walk_image``; ``cs_ring_walk``'s own instruction
count divided by REPS x 8,191 is the walk's cost per packet:

    valgrind --tool=callgrind --callgrind-out-file=cg.out \
        python benchmarks/ring_walk_probe.py 11
    callgrind_annotate cg.out | grep cs_ring_walk
"""

import importlib
import socket
import struct
import sys

ring = importlib.import_module("connstats.capture._ring")
DESC, HDR, SLL, MAC = 48, 48, 20, 80


def frame(data, pkttype=0):
    hdr = struct.pack(
        "=IIIIIIHHIIHH8x", 0, 1, 2, len(data), len(data), 0, MAC, MAC, 0, 0, 0, 0
    )
    sll = struct.pack(
        "=HHiHBB8s", socket.AF_PACKET, socket.htons(0x0800), 1, 1, pkttype, 6, b""
    )
    body = hdr + sll + bytes(MAC - HDR - SLL) + data
    return body + bytes(-len(body) % 8)


ip = (
    struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        46,
        0,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    + struct.pack(">HHHH", 1, 53, 26, 0)
    + bytes(18)
)
f = frame(ip)
size = 1 << 20
n = (size - DESC) // len(f)
chained = b"".join(
    struct.pack("=I", len(f) if i + 1 < n else 0) + f[4:] for i in range(n)
)
image = struct.pack("=IIIIIIQQQ", 3, 0, 1, n, DESC, 0, 0, 0, 0) + chained
image += bytes(size - len(image))
reps = int(sys.argv[1])
for _ in range(reps):
    tx, rx, c = ring._walk_image(image)
assert c["packets"] == n, c
print(n, "packets per block")
