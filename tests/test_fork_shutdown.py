"""fork() in the middle of a shutdown(), fork() from inside dump, hash seeds.

docs/guarantees.md, "fork()":
* an instance is shut down in a child exactly when its core was closed at the
  fork, whatever step of shutdown() the parent was in: never "shut down" with
  a core still counting;
* a dump callback that forks leaves one flush loop in the child (the
  inherited one ends when dump returns);
* a child keeps its parent's hashing seeds.

Children report through a pipe and leave with os._exit.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import pytest
from captures import udp4
from subproc import collect, fork_here, report_and_exit

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded:DeprecationWarning"
    ),
]


class Recorder:
    def __init__(self) -> None:
        self.windows: list[dict] = []

    def __call__(self, start, end, virtual, physical) -> None:
        self.windows.append(dict(virtual))

    def packets(self) -> int:
        return sum(c.tx_packets for w in self.windows for c in w.values())


class ForkingCore:
    """Stands in for an instance's core; close() forks once, before or after
    really closing, i.e. in the middle of shutdown()."""

    def __init__(self, core: Any, when: str, child: Callable[[], Any]) -> None:
        self._real = core
        self._when = when
        self._child = child
        self.collect: Callable[[], Any] = lambda: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        when, self._when = self._when, ""
        if when == "before":
            self.collect = fork_here(self._child)
        self._real.close()
        if when == "after":
            self.collect = fork_here(self._child)


@pytest.mark.parametrize("when", ["before", "after"])
def test_child_forked_during_shutdown_is_consistent(impl, when):
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "192.0.2.1", 53))

    def child() -> dict:
        # Runs inside the parent's shutdown(), in the child.
        shut = stats.is_shutdown
        stats.update_tx_virtual(udp4("10.0.0.9", 9, "192.0.2.9", 99))
        counted = stats.connections
        result = stats.shutdown(timeout=5)
        return {
            "is_shutdown": shut,
            "counted": counted,
            "shutdown": result,
            "delivered": rec.packets(),
        }

    proxy = ForkingCore(stats._core, when, child)
    stats._core = proxy
    assert stats.shutdown(timeout=10) is True
    report = proxy.collect()
    assert rec.packets() == 1  # the parent is unaffected
    assert report["shutdown"] is True
    if report["is_shutdown"]:
        # shut down in the child: nothing may be counted there
        assert report["counted"] == 0 and report["delivered"] == 0, report
    else:
        # running in the child: what it counts reaches its dump
        assert report["counted"] == 1 and report["delivered"] == 1, report
    assert report["is_shutdown"] is (when == "after")


def test_dump_that_forks_leaves_one_flush_loop_in_the_child(impl):
    rec = Recorder()
    state: dict[str, Any] = {}
    r, w = os.pipe()

    def child_checks(forker: threading.Thread) -> dict:
        forker.join(5)  # the inherited loop: it must end once dump returned
        stats = state["stats"]
        stats.update_tx_virtual(udp4("10.9.9.9", 9, "192.0.2.9", 99))
        flush_threads = sum(
            1 for t in threading.enumerate() if t.name == "connstats-flush"
        )
        result = stats.shutdown(timeout=5)  # delivers the child's window
        return {
            "inherited_loop_alive": forker.is_alive(),
            "flush_threads": flush_threads,
            "windows": [sum(c.tx_packets for c in x.values()) for x in rec.windows],
            "shutdown": result,
        }

    def dump(start, end, virtual, physical):
        if "forked" in state:
            rec(start, end, virtual, physical)
            return
        state["forked"] = True
        pid = os.fork()
        if pid:
            state["pid"] = pid
            rec(start, end, virtual, physical)
            return
        # the child, in the inherited flush thread: report from another
        # thread once this dump call has returned
        rec.windows.clear()
        forker = threading.current_thread()

        def report() -> None:
            report_and_exit(w, lambda: child_checks(forker))

        threading.Thread(target=report).start()

    stats = state["stats"] = impl.Statistics(max_conns=1, dump=dump)
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "192.0.2.1", 53))
    stats.update_tx_virtual(udp4("10.0.0.2", 2, "192.0.2.1", 53))
    deadline = time.monotonic() + 10
    while "pid" not in state and time.monotonic() < deadline:
        time.sleep(0.005)
    assert "pid" in state, "dump never ran"
    os.close(w)
    report = collect(state["pid"], r, 20.0)
    assert stats.shutdown(timeout=10) is True
    assert report["inherited_loop_alive"] is False, report
    assert report["flush_threads"] == 1, report
    assert report["windows"] == [1] and report["shutdown"] is True, report


def test_child_keeps_the_parents_hash_seeds(impl):
    """Documented choice: seeds are not renewed in a fork child (as for
    Python's own str hashing); its table starts empty, so nothing the parent
    counted collides there."""
    conn = impl.decode(udp4("10.0.0.1", 1, "192.0.2.1", 53))
    value = impl.Connection(*conn)
    parent = [hash(value), hash(conn[1]), hash(conn[2])]
    child = fork_here(lambda: [hash(value), hash(conn[1]), hash(conn[2])])
    assert child() == parent
