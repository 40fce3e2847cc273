"""Instructions per connection of Totals' fold, next to materialization's.

Run under callgrind (instruction counts do not depend on the machine's load):

    valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect='*SeriesTable_*generator*' \
        --toggle-collect='*Window_*generator*' \
        --callgrind-out-file=cg.out python benchmarks/metrics_callgrind.py KIND [FOLDS]
    callgrind_annotate --inclusive=yes cg.out | grep generator

KIND is ``realistic`` or ``adversarial`` (benchmarks/workloads.py).  The
window is materialized once (Window.materialize_slices' generator) and then
folded FOLDS times (default 1) into one Totals (SeriesTable.fold_slices'
generator).  The first fold also creates the 1,000 series: the steady state
is (Ir with FOLDS=3 - Ir with FOLDS=1) / 2.
"""

import sys
from datetime import datetime, timezone

from workloads import joined, window_packets

import connstats
from connstats import metrics

kind = sys.argv[1]
folds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
count = 100_000
packets = window_packets(kind, count)
stats = connstats.Statistics()
for i in range(0, count, 4096):
    stats.update_tx_virtual_buffer(*joined(packets[i : i + 4096]))
virtual, physical = stats.extract()
assert len(virtual) == count
now = datetime(2024, 1, 1, tzinfo=timezone.utc)
totals = metrics.Totals()
for _ in range(folds):
    totals(now, now, virtual, physical)
print(kind, totals)
