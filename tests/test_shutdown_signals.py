"""shutdown() interrupted (Ctrl-C) or re-entered (a signal handler).

docs/guarantees.md, "Signals and Ctrl-C": every step of
shutdown() is idempotent and no lock is held across a point where a signal
handler can run, so a call interrupted anywhere leaves a state that the next
call completes, and a handler may call shutdown() while its thread is inside
shutdown().

Real signals run in a subprocess (tests/isolated/shutdown_signals.py); here a
KeyboardInterrupt is also injected deterministically before and after each
step.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from captures import udp4
from subproc import core_env

from connstats import _flusher

SCRIPT = Path(__file__).parent / "isolated" / "shutdown_signals.py"

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)


@pytest.mark.parametrize("scenario", ["reentry", "interrupt"])
def test_shutdown_under_real_signals(impl, scenario):
    env = core_env(impl.name)
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), scenario, "600"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{scenario}: hung (deadlock?)\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.stdout.startswith("OK"), proc.stdout


class Recorder:
    def __init__(self) -> None:
        self.windows: list[dict] = []

    def __call__(self, start, end, virtual, physical) -> None:
        self.windows.append(dict(virtual))


class CoreProxy:
    """Stands in for the instance's core; its close() raises KeyboardInterrupt
    once, before or after really closing."""

    def __init__(self, core: Any, when: str) -> None:
        self._real = core
        self._when = when

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        when, self._when = self._when, ""
        if when == "before":
            raise KeyboardInterrupt
        self._real.close()
        if when == "after":
            raise KeyboardInterrupt


def interrupt_flusher_method(monkeypatch, name: str, when: str) -> None:
    real = getattr(_flusher.Flusher, name)
    state = {"when": when}

    def patched(self, *args):
        when, state["when"] = state["when"], ""
        if when == "before":
            raise KeyboardInterrupt
        result = real(self, *args)
        if when == "after":
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(_flusher.Flusher, name, patched)


STEPS = [
    "close-before",
    "close-after",
    "stop-before",
    "stop-after",
    "wait-before",
    "wait-after",
]


@pytest.mark.parametrize("step", STEPS)
def test_shutdown_interrupted_at_each_step_is_completed_by_the_next_call(
    impl, monkeypatch, step
):
    rec = Recorder()
    stats = impl.Statistics(max_period=3600, dump=rec)
    packet = udp4("10.0.0.1", 1, "192.0.2.1", 53)
    stats.update_tx_virtual(packet)
    what, when = step.split("-")
    if what == "close":
        stats._core = CoreProxy(stats._core, when)
    elif what == "stop":
        interrupt_flusher_method(monkeypatch, "stop", when)
    elif hasattr(_flusher.Flusher, "wait"):
        interrupt_flusher_method(monkeypatch, "wait", when)
    else:  # older code waited on an Event: interrupt that instead
        real_wait = threading.Event.wait
        state = {"when": when}

        def wait(self, timeout=None):
            w, state["when"] = state["when"], ""
            if w == "before":
                raise KeyboardInterrupt
            result = real_wait(self, timeout)
            if w == "after":
                raise KeyboardInterrupt
            return result

        monkeypatch.setattr(threading.Event, "wait", wait)
    with pytest.raises(KeyboardInterrupt):
        stats.shutdown(timeout=10)
    assert stats.shutdown(timeout=10) is True
    assert stats.is_shutdown
    stats.update_tx_virtual(packet)
    assert stats.connections == 0
    assert [sum(c.tx_packets for c in w.values()) for w in rec.windows] == [1]


def test_signal_handler_shutdown_inside_shutdown_in_process(impl):
    """A handler that runs while shutdown() waits for the final dump (here:
    called directly from inside dump's wait) completes it too."""
    rec = Recorder()
    release = threading.Event()

    def slow_dump(start, end, virtual, physical):
        release.wait(10)
        rec(start, end, virtual, physical)

    stats = impl.Statistics(max_period=3600, dump=slow_dump)
    stats.update_tx_virtual(udp4("10.0.0.1", 1, "192.0.2.1", 53))
    results = []

    def handler(signum, frame):
        results.append(stats.shutdown(timeout=10))

    old = signal.signal(signal.SIGALRM, handler)
    try:
        threading.Timer(0.2, release.set).start()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert stats.shutdown(timeout=10) is True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert results == [True]
    assert len(rec.windows) == 1
