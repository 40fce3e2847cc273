"""Statistics: the public object.  A thin owner of a core, a flush thread and shutdown."""

from __future__ import annotations

import atexit
import inspect
import itertools
import logging
import math
import os
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


def _stop_flusher(holder: list[Optional[Flusher]], core: Any) -> None:
    # Called when a Statistics is garbage-collected (see _register): one
    # dropped without shutdown() must not leave its thread behind.  ``holder`` is a one-item list so
    # that a fork() child's replacement Flusher is the one stopped.
    core.close()
    flusher = holder[0]
    if flusher is not None:
        flusher.stop()


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
)


if TYPE_CHECKING:
    from ._fastparse import CountingMethods as _CountingMethods
else:
    _CountingMethods = _impl.core.CountingMethods


class Statistics(_CountingMethods):
    """Per-connection packet and byte counters for IP packets of a TUN device.

    ``Statistics()`` with no arguments is ready for use: counts accumulate
    until :meth:`extract`.  With ``dump``, windows are handed to
    ``dump(start, end, virtual, physical)`` from one background thread every
    ``max_period`` seconds and whenever a new connection would make the
    window hold more than ``max_conns`` connections.

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
    ) -> None:
        period = _period_seconds(max_period)
        if isinstance(max_conns, bool) or not isinstance(max_conns, int):
            raise TypeError(
                f"max_conns: expected an int, got {type(max_conns).__name__}"
            )
        if max_conns < 0:
            raise ValueError(f"max_conns: must be >= 0, got {max_conns}")
        if dump is not None and not callable(dump):
            raise TypeError(f"dump: expected a callable, got {type(dump).__name__}")
        if dump is not None and _is_async(dump):
            raise TypeError(
                "dump: got a coroutine function; dump is called from a thread and "
                "its coroutines would never run (every window lost). Use "
                "connstats.aio.AsyncStatistics and `async for window in "
                "stats.windows()` instead"
            )
        if dump is None and (period or max_conns):
            raise ValueError(
                "dump: max_period and max_conns hand windows to dump(); "
                "pass a dump callback (or use extract() without them)"
            )
        if isinstance(ignore_destinations, (str, bytes, bytearray)):
            raise TypeError(
                "ignore_destinations: expected an iterable of addresses, "
                f"got a single {type(ignore_destinations).__name__}"
            )
        module = self._core_module or _impl.core
        core = module.Core(
            max_conns=max_conns, ignore_destinations=tuple(ignore_destinations)
        )
        self._core = core
        self._period = period
        self._max_conns = max_conns
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
        shutdown are dropped silently.
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
        return (
            f"<connstats.Statistics max_period={self._period:g}s max_conns={self._max_conns} "
            f"connections={self.connections} {state}>"
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


def _register(stats: Statistics, holder: list[Optional[Flusher]], core: Any) -> None:
    with _registry_lock:
        key = next(_registry_keys)

        def collected(_ref: Any) -> None:
            _unregister(key)
            _stop_flusher(holder, core)

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
    global _registry_lock
    # Another thread of the parent may have held the lock at fork time.
    _registry_lock = threading.RLock()
    for _key, stats in _live_instances():
        stats._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

#: Seconds that interpreter exit may spend delivering the final windows of
#: instances nobody shut down (all instances together).
EXIT_FLUSH_BUDGET = 1.0


def _shutdown_at_exit() -> None:
    # Runs after non-daemon threads are joined and before daemon threads
    # (the flush threads) are stopped: deliver what is left, within a budget,
    # so that a blocked dump cannot hold up exit.  Daemon threads may still
    # create instances meanwhile: new ones are picked up by the next pass,
    # until a pass finds none or the budget is spent (then one last pass
    # still stops counting everywhere).
    deadline = time.monotonic() + EXIT_FLUSH_BUDGET
    seen: set[int] = set()
    last_pass = False
    while True:
        fresh = [(k, s) for k, s in _live_instances() if k not in seen]
        if not fresh:
            return
        for key, stats in fresh:
            seen.add(key)
            try:
                stats.shutdown(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # pragma: no cover - exit must go on
                logging.getLogger("connstats").exception(
                    "connstats: shutdown at exit failed"
                )
        if last_pass:
            return
        last_pass = time.monotonic() >= deadline


atexit.register(_shutdown_at_exit)
