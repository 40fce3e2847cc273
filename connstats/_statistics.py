"""Statistics: the public object.  A thin owner of a core, a flush thread and shutdown."""

from __future__ import annotations

import atexit
import inspect
import itertools
import logging
import math
import operator
import os
import sys
import threading
import time
import weakref
from collections import deque
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Optional

from . import _impl
from ._flusher import DumpCallback, Flusher
from ._impl import materialize_all
from ._types import CONNECTION_BYTES, MESSAGE_OVERHEAD_BYTES

if TYPE_CHECKING:
    from ._fastparse import Connection, Counts


def _period_seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"max_period: expected seconds (int or float) or datetime.timedelta, "
            f"got {type(value).__name__}"
        )
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ValueError(f"max_period: must be a finite number >= 0, got {value!r}")
    return seconds


def _is_async(dump: Any) -> bool:
    # An `async def` function (also behind functools.partial), an async
    # generator function, or an object whose __call__ is one: called from
    # the flush thread, each returns an object that nobody awaits.
    call = None
    if not inspect.isroutine(dump):
        call = inspect.getattr_static(type(dump), "__call__", None)
    for candidate in (dump, call):
        if inspect.iscoroutinefunction(candidate) or inspect.isasyncgenfunction(
            candidate
        ):
            return True
    return False


def _stop_flusher(holder: list[Optional[Flusher]], core: Any, key: int) -> None:
    # Called when a Statistics is garbage-collected (see _register): one
    # dropped without shutdown() must not leave its thread behind.  ``holder``
    # is a one-item list so that a fork() child's replacement Flusher is the
    # one stopped.  Its final window is delivered by its thread after the
    # instance is gone: the flusher stays in _pending_flushes until then, so
    # that the exit hook waits for that delivery too.
    core.close()
    flusher = holder[0]
    if flusher is None or flusher.done:
        return
    flusher.on_done = lambda: _pending_flushes.pop(key, None)
    _pending_flushes[key] = flusher
    flusher.stop()
    # A thread that finished before on_done was set did not remove it.
    if flusher.done:
        _pending_flushes.pop(key, None)
    if _exit_deadline is not None:
        _finish_at_exit(flusher)


#: Longest wait for the flush thread to end once its final flush is done
#: (it ends microseconds later; the bound keeps a re-entrant call from
#: waiting on a join the interrupted outer call is in the middle of).
JOIN_GRACE = 1.0

# The per-packet methods (see _bind_hot_path).
_HOT_PATH = (
    "update_tx_virtual",
    "update_rx_virtual",
    "update_tx_physical",
    "update_rx_physical",
    "update_tx_virtual_batch",
    "update_rx_virtual_batch",
    "update_tx_virtual_buffer",
    "update_rx_virtual_buffer",
    "update_virtual",
    "update_physical",
    "update_records",
)


def _conns_for_bytes(max_bytes: Any) -> int:
    """The connection bound that ``max_bytes`` implies (0 if unbounded)."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes: expected an int, got {type(max_bytes).__name__}")
    # The real value as an exact int (operator.index copies an int
    # subclass's value; int() would call a subclass's own __int__).
    max_bytes = operator.index(max_bytes)
    if max_bytes == 0:
        return 0
    smallest = MESSAGE_OVERHEAD_BYTES + CONNECTION_BYTES
    if max_bytes < smallest:
        raise ValueError(
            f"max_bytes: must be 0 (unbounded) or at least {smallest} "
            f"(one connection: {MESSAGE_OVERHEAD_BYTES} + {CONNECTION_BYTES}), "
            f"got {max_bytes}"
        )
    return (max_bytes - MESSAGE_OVERHEAD_BYTES) // CONNECTION_BYTES


if TYPE_CHECKING:
    from ._fastparse import CountingMethods as _CountingMethods
else:
    _CountingMethods = _impl.core.CountingMethods


class Statistics(_CountingMethods):
    """Per-connection packet and byte counters for IP packets of a TUN device.

    ``Statistics()`` with no arguments is ready for use: counts accumulate
    until :meth:`extract`.  With ``dump``, windows are handed to
    ``dump(start, end, virtual, physical)`` from one background thread every
    ``max_period`` seconds, whenever a new connection would make the window
    hold more than ``max_conns`` connections, and whenever it would make
    the window's network log message (upstream's bound: ``219 + 247 *
    connections`` bytes) exceed ``max_bytes``; whichever comes first.

    With ``track_times=True`` the windows' values are :class:`TimedCounts`:
    Counts with the wall-clock time (ns since the epoch) of the update call
    that first and last counted the connection in the window.  Off by
    default: it costs a clock read per call and 16 bytes per connection.

    All methods are safe to call from any thread.
    """

    #: The core module (compiled or pure Python); tests override it.
    _core_module: Optional[ModuleType] = None

    def __init__(
        self,
        max_period: float | timedelta = 0,
        max_conns: int = 0,
        dump: Optional[DumpCallback] = None,
        *,
        ignore_destinations: Iterable[Any] = (),
        max_bytes: int = 0,
        track_times: bool = False,
    ) -> None:
        period = _period_seconds(max_period)
        if isinstance(max_conns, bool) or not isinstance(max_conns, int):
            raise TypeError(
                f"max_conns: expected an int, got {type(max_conns).__name__}"
            )
        if max_conns < 0:
            raise ValueError(f"max_conns: must be >= 0, got {max_conns}")
        byte_conns = _conns_for_bytes(max_bytes)
        if dump is not None and not callable(dump):
            raise TypeError(f"dump: expected a callable, got {type(dump).__name__}")
        if dump is not None and _is_async(dump):
            raise TypeError(
                "dump: got a coroutine function; dump is called from a thread and "
                "its coroutines would never run (every window lost). Use "
                "connstats.aio.AsyncStatistics and `async for window in "
                "stats.windows()` instead"
            )
        if dump is None and (period or max_conns or byte_conns):
            raise ValueError(
                "dump: max_period, max_conns and max_bytes hand windows to dump(); "
                "pass a dump callback (or use extract() without them)"
            )
        if isinstance(ignore_destinations, (str, bytes, bytearray)):
            raise TypeError(
                "ignore_destinations: expected an iterable of addresses, "
                f"got a single {type(ignore_destinations).__name__}"
            )
        if not isinstance(track_times, bool):
            raise TypeError(
                f"track_times: expected a bool, got {type(track_times).__name__}"
            )
        # Both bounds count connections: the core enforces the smaller one.
        bounds = [b for b in (max_conns, byte_conns) if b]
        limit = min(bounds) if bounds else 0
        module = self._core_module or _impl.core
        core = module.Core(
            max_conns=limit,
            ignore_destinations=tuple(ignore_destinations),
            track_times=track_times,
        )
        self._core = core
        self._period = period
        self._max_conns = max_conns
        self._max_bytes = operator.index(max_bytes)
        self._dump = dump
        # Windows extract() cut but could not hand out (building the dicts
        # raised): the next extract() returns them, or the final flush.
        self._returned: deque[Any] = deque()
        self._bind_hot_path()
        self._flusher = (
            Flusher(core, dump, period, self._returned) if dump is not None else None
        )
        self._flusher_holder = [self._flusher]
        _register(self, self._flusher_holder, core)
        # A dump that reports this instance's health too (metrics.Totals)
        # says so with this hook; looked up on the type, like a dunder.
        watch = getattr(type(dump), "_connstats_watch", None)
        if watch is not None:
            watch(dump, self)

    def _bind_hot_path(self) -> None:
        # With the compiled core, the per-packet methods are C methods of the
        # base class (CountingMethods): each access makes a bound method of
        # its own, so threads that fetch it once do not share one object
        # (whose reference count every call would write on free-threaded
        # 3.13), and a call costs what calling any builtin method costs.
        direct = self._attach_core(self._core)
        module = self._core_module or _impl.core
        if direct and not getattr(module, "HAS_DEFERRED_REFCOUNT", False):
            return
        # Otherwise (the pure-Python core; free-threaded 3.14+) the core's
        # bound methods are stored on the instance, which costs no Python
        # frame per call.  On 3.14t they are also shared by every thread, and
        # deferred reference counting keeps calls from writing their count.
        core = self._core
        defer = getattr(module, "defer_refcount", None)
        for name in _HOT_PATH:
            if getattr(type(self), name) is not getattr(_CountingMethods, name):
                continue  # a subclass's own method must not be shadowed
            method = getattr(core, name)
            setattr(self, name, method)
            if defer is not None:
                defer(method)

    # -- windows ---------------------------------------------------------------

    def extract(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Synchronously take the open window's counts and reset them.

        Returns ``(virtual, physical)``, each ``dict[Connection, Counts]``.
        Windows already cut for ``dump`` are not included.
        """
        # A cut window is held in ``windows`` until the dicts are built: if
        # building raises (MemoryError on a huge window, Ctrl-C), it goes
        # back to self._returned and the next extract() (or the final flush)
        # hands it out.  The moves are deque/list C calls, so no Python-level
        # exception can land between taking a window and holding it.
        windows: list[Any] = []
        built = False
        try:
            try:
                windows.extend(iter(self._returned.popleft, None))
            except IndexError:
                pass
            windows.extend(itertools.islice(iter(self._core.cut, None), 1))
            result = materialize_all(windows) if windows else ({}, {})
            built = True
        finally:
            if not built:
                self._returned.extendleft(windows[::-1])
        return result

    def test_extract(self) -> tuple[dict[Connection, Counts], dict[Connection, Counts]]:
        """Alias of :meth:`extract`, kept for parity with the Go package."""
        return self.extract()

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Stop counting, hand the final window to ``dump`` and stop the thread.

        Idempotent and safe from any thread, including from inside ``dump``
        (which cannot wait for itself: the final window is then delivered
        right after ``dump`` returns).  Returns True when the final flush has
        completed, False if ``timeout`` seconds passed first.  Updates after
        shutdown count nothing and raise nothing, but their arguments are
        checked as before it: a bad call raises the same ``TypeError`` or
        ``ValueError`` on both cores, whenever it is made.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(
                    f"timeout: expected seconds or None, got {type(timeout).__name__}"
                )
            if math.isnan(timeout) or timeout < 0:
                raise ValueError(f"timeout: must be >= 0, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        # No lock and no "first call" flag: every step is idempotent, so a
        # call interrupted anywhere (Ctrl-C) leaves a state that the next call
        # completes, and a signal handler may call shutdown() while this
        # thread is already inside it.  Closing the core is what "shut down"
        # means (is_shutdown reads it), so no flag can disagree with it.
        self._core.close()
        flusher = self._flusher
        if flusher is None:
            return True
        flusher.stop()
        if flusher.in_thread():
            return flusher.done
        if not flusher.wait(deadline):
            return False
        thread = flusher.thread
        if thread is not None:
            grace = JOIN_GRACE
            if deadline is not None:
                grace = max(0.0, min(grace, deadline - time.monotonic()))
            thread.join(grace)
        return True

    def __enter__(self) -> Statistics:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    # -- introspection ---------------------------------------------------------

    @property
    def is_shutdown(self) -> bool:
        """True once shutdown() has stopped counting."""
        return bool(self._core.closed)

    @property
    def connections(self) -> int:
        """Connections (virtual + physical) in the open window."""
        return int(self._core.connections)

    @property
    def dropped_windows(self) -> int:
        """Windows lost because ``dump`` fell behind, or because their dicts
        could not be built (docs/guarantees.md, "Windows and backlog")."""
        flusher = self._flusher
        extra = flusher.dropped[0] if flusher is not None else 0
        return int(self._core.dropped_windows) + extra

    @property
    def dropped_packets(self) -> int:
        """Packets counted in windows that were lost (see ``dropped_windows``)."""
        flusher = self._flusher
        extra = flusher.dropped[1] if flusher is not None else 0
        return (int(self._core.dropped_packets) + extra) & _U64

    @property
    def dropped_bytes(self) -> int:
        """Bytes counted in windows that were lost (see ``dropped_windows``)."""
        flusher = self._flusher
        extra = flusher.dropped[2] if flusher is not None else 0
        return (int(self._core.dropped_bytes) + extra) & _U64

    @property
    def dump_errors(self) -> int:
        """Failed hand-overs: ``dump`` raised, or a window's dicts could not be
        built (each is logged on logger "connstats")."""
        return self._flusher.dump_errors if self._flusher is not None else 0

    def __repr__(self) -> str:
        state = "shut down" if self.is_shutdown else "running"
        bytes_bound = f" max_bytes={self._max_bytes}" if self._max_bytes else ""
        return (
            f"<connstats.Statistics max_period={self._period:g}s max_conns={self._max_conns}"
            f"{bytes_bound} connections={self.connections} {state}>"
        )

    def _after_fork_in_child(self) -> None:
        # Locks and threads of the parent do not survive fork(); the child
        # starts from an empty table and, if needed, its own flush thread.
        # The core keeps its closed state: an instance is shut down in the
        # child exactly when its core was closed at the fork, whatever step
        # of a shutdown() the parent was in.
        self._core._after_fork_in_child()
        self._returned = deque()  # the parent's counts stay with the parent
        old = self._flusher
        if old is None:
            return
        # If dump() forked, the old loop runs on in the child's only thread;
        # retired, it ends as soon as dump returns instead of competing with
        # the new thread for the child's windows.
        old.retire()
        self._flusher = Flusher(
            self._core,
            old._dump,
            self._period,
            self._returned,
            start=not self._core.closed,
        )
        self._flusher_holder[0] = self._flusher


_U64 = (1 << 64) - 1

# Live instances, for the fork and exit hooks.  A dict of weak references
# guarded by a lock: the hooks iterate a snapshot taken under it while other
# threads create and drop instances (on free-threaded builds, and on GIL
# builds between two steps of a Python-level iteration).  An RLock: the
# garbage collector may drop an instance (running _unregister) in a thread
# that is inside _register, or a signal handler may create one.
# (weakref.finalize is not used for the same reason: at exit it walks its
# own registry unguarded, which fails while daemon threads create instances.)
_registry_lock = threading.RLock()
_registry: dict[int, "weakref.ref[Statistics]"] = {}
_registry_keys = itertools.count()

# Flushers of collected instances whose final flush has not run yet, by
# registry key; each removes itself when done (Flusher.on_done).  Single dict
# operations, no lock: the flush thread that removes its entry must never
# wait for a thread that the collector interrupted while holding a lock.
_pending_flushes: dict[int, Flusher] = {}

# Set when the exit hook starts: from then on a collected instance's final
# flush is waited for where it was collected (see _finish_at_exit).
_exit_deadline: Optional[float] = None


def _register(stats: Statistics, holder: list[Optional[Flusher]], core: Any) -> None:
    with _registry_lock:
        key = next(_registry_keys)

        def collected(_ref: Any) -> None:
            _unregister(key)
            _stop_flusher(holder, core, key)

        _registry[key] = weakref.ref(stats, collected)


def _unregister(key: int) -> None:
    with _registry_lock:
        _registry.pop(key, None)


def _live_instances() -> list[tuple[int, Statistics]]:
    # dict.copy() allocates no object while it copies, so the collector
    # cannot run _unregister (re-entering the RLock) in the middle of it.
    with _registry_lock:
        refs = _registry.copy()
    return [(key, stats) for key, ref in refs.items() if (stats := ref()) is not None]


def _reset_after_fork() -> None:
    global _registry_lock, _exit_deadline
    # Another thread of the parent may have held the lock at fork time.
    _registry_lock = threading.RLock()
    # The parent's pending final flushes (and their threads) stay with it,
    # and so does its exit (a dump may fork while the exit hook runs).
    _pending_flushes.clear()
    _exit_deadline = None
    for _key, stats in _live_instances():
        stats._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

#: Seconds that interpreter exit may spend delivering the final windows of
#: instances nobody shut down (all instances together).
EXIT_FLUSH_BUDGET = 1.0


def _finish_at_exit(flusher: Flusher) -> None:
    # An instance collected while the exit hook runs or after it (an atexit
    # hook that runs later drops the last reference): its final flush is
    # waited for here, within what is left of the exit budget.  Not once the
    # interpreter is finalizing (its daemon threads no longer run), and not
    # in the flush thread itself (dump dropping its own instance).
    deadline = _exit_deadline
    if deadline is None or flusher.in_thread() or sys.is_finalizing():
        return
    try:
        flusher.wait(deadline)
    except Exception:  # pragma: no cover - exit must go on
        pass


def _at_exit(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # pragma: no cover - exit must go on
        logging.getLogger("connstats").exception(
            "connstats: final flush at exit failed"
        )


def _shutdown_at_exit() -> None:
    # Runs after non-daemon threads are joined and before daemon threads
    # (the flush threads) are stopped: deliver what is left, within a budget,
    # so that a blocked dump cannot hold up exit.  Two kinds of instances
    # have a final window to deliver: live ones nobody shut down (shut down
    # here), and collected ones whose flush thread has not finished (the
    # local of a function that ended the program; waited for here).  Daemon
    # threads may still create and drop instances meanwhile: those are
    # picked up by the next pass, until a pass finds none or the budget is
    # spent (then one last pass still stops counting everywhere).
    global _exit_deadline
    deadline = time.monotonic() + EXIT_FLUSH_BUDGET
    _exit_deadline = deadline
    seen: set[int] = set()
    waited: set[int] = set()
    last_pass = False
    while True:
        fresh = [(k, s) for k, s in _live_instances() if k not in seen]
        # dict.copy(): no allocation while copying (see _live_instances).
        pending = [
            (k, f) for k, f in _pending_flushes.copy().items() if k not in waited
        ]
        if not fresh and not pending:
            return
        # Every flush thread is told to finish before the hook waits for any
        # of them: they deliver in parallel, and one dump that blocks does
        # not spend the budget of the others.
        for key, stats in fresh:
            seen.add(key)
            _at_exit(stats.shutdown, 0.0)
        for _key, stats in fresh:
            _at_exit(stats.shutdown, max(0.0, deadline - time.monotonic()))
        for key, flusher in pending:
            waited.add(key)
            _at_exit(flusher.wait, deadline)
        if last_pass:
            return
        last_pass = time.monotonic() >= deadline


atexit.register(_shutdown_at_exit)
