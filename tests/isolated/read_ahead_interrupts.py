"""Interrupt a reader that reads ahead, at random moments, many times.

    python read_ahead_interrupts.py SEED ROUNDS

Each round reads a capture in memory through a reader with read-ahead and
small buffers (thousands of hand-overs to the helper thread), while a timer
raises KeyboardInterrupt at a random moment (SIGALRM), then closes the
reader.  Prints ``ok INTERRUPTED HELPERS`` at the end: rounds interrupted,
and helper threads still alive (must be 0).  A reader that loses track of
the helper's read hangs instead, in close() or in a later read;
tests/test_capture_read_ahead.py runs this with a timeout.
"""

from __future__ import annotations

import io
import random
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for captures

import captures as cap

from connstats.capture import CaptureReader, Stop

T0 = 1_700_000_000_000_000_000


#: True only inside the block that handles the interrupt: a signal handler
#: may run a few instructions late, after that block; unarmed, it then does
#: nothing instead of killing this script.
armed = False


def on_alarm(signum: int, frame: object) -> None:
    if armed:
        raise KeyboardInterrupt


def main() -> None:
    seed, rounds = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGALRM, on_alarm)
    frames = [
        cap.ethernet(
            cap.tcp4("192.0.2.1", 1000 + i % 5, "192.0.2.2", 80, b"x" * (i % 300))
        )
        for i in range(3000)
    ]
    data = cap.pcap([(T0 + i * 1000, f) for i, f in enumerate(frames)], 1)
    small_room = type("SmallRoom", (CaptureReader,), {"_head_room": 600})
    rng = random.Random(seed)
    interrupted = 0
    global armed
    for _ in range(rounds):
        reader = small_room(io.BytesIO(data), "t", buffer_size=2048, read_ahead=True)
        try:
            armed = True
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.0001, 0.01))
            # Not `while reader.read().stop is not Stop.EOF: pass`: Python
            # 3.13 raises a KeyboardInterrupt that lands in such a loop's
            # condition past every handler (python/cpython#130279).
            while True:
                if reader.read().stop is Stop.EOF:
                    break
            armed = False
        except KeyboardInterrupt:
            armed = False
            interrupted += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        reader.close()
    helpers = sum(t.name == "connstats-read-ahead" for t in threading.enumerate())
    print("ok", interrupted, helpers, flush=True)


if __name__ == "__main__":
    main()
