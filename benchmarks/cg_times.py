"""One configuration of the callgrind figures of RESULTS.md, "Arrow windows and
times per connection": fill a core with CONNS connections, then send them REPS
more times through one path.  Instructions per packet are those of a run with
REPS rounds minus a run with 0 rounds, divided by REPS * CONNS:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/cg_times.py {default|times} {single|batch} CONNS REPS

PYTHONPATH chooses the checkout (a build of main beside this one for the
"before" figures).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import joined, window_packets  # noqa: E402

from connstats._impl import core  # noqa: E402

mode, path, conns, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
packets = window_packets("realistic", conns)
buf, offsets, lengths = joined(packets)
c = core.Core(**({"track_times": True} if mode == "times" else {}))
c.update_tx_virtual_buffer(buf, offsets, lengths)  # warm: every connection in the table
if path == "single":
    up = c.update_tx_virtual
    for _ in range(reps):
        for p in packets:
            up(p)
else:
    for _ in range(reps):
        c.update_tx_virtual_buffer(buf, offsets, lengths)
