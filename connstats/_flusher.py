"""The flush thread: the one thread that calls ``dump``.

It sleeps in the core's ``wait()`` (a C wait with the GIL released) and is
woken by the core when a window opens, when a window is cut because of
``max_conns``, or by ``shutdown``.  While no window is open and nothing is
pending it does not wake at all.

Nothing that happens in the thread ends it early: ``dump`` raising anything
(``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit`` included), building
a window's dicts failing (``MemoryError`` on a huge window), or a core call
failing.  A window is held by the thread from the moment it is cut until
``dump`` has returned for it or it has been counted as dropped, and every
failure makes the thread pause (with a growing delay) instead of spinning.
"""

from __future__ import annotations

import _thread
import inspect
import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ._impl import materialize

logger = logging.getLogger("connstats")

#: Seconds between two "dropped windows" warnings.
DROP_WARNING_INTERVAL = 10.0

#: How many times the thread tries to build a window's dicts before it
#: counts the window as dropped (each failed try counts in ``dump_errors``).
BUILD_ATTEMPTS = 3

#: Pause after the first failure of a round; it doubles with each further
#: failure in a row, up to RETRY_DELAY_MAX.  A pause ends early when the
#: core is notified (a wake-up is never lost: every round re-reads the core).
RETRY_DELAY = 0.05
RETRY_DELAY_MAX = 1.0

#: Longest single wait of a thread waiting for the final flush; the
#: completion flag is re-read after each (see Flusher.wait).
WAIT_SLICE = 0.25

# (start, end, virtual, physical); the tables map Connection to Counts.
DumpCallback = Callable[[datetime, datetime, dict[Any, Any], dict[Any, Any]], Any]


class _Retry(Exception):
    """A round must pause and start again (the failure is already counted)."""


def _log(message: str, *args: Any, error: bool = True, exc_info: bool = True) -> None:
    # Logging can itself fail (out of memory, a broken handler); the flush
    # thread must outlive that too.
    try:
        if error:
            logger.error(message, *args, exc_info=exc_info)
        else:
            logger.warning(message, *args)
    except BaseException:  # pragma: no cover - nothing left to report to
        pass


class Flusher:
    """Owns the flush thread of one Statistics instance.

    ``returned`` holds windows that ``extract()`` cut but could not hand out;
    the final flush delivers those too, so that none is lost at shutdown.
    With ``start=False`` there is no thread and the final flush counts as
    done (a fork() child whose instance was already shut down).
    """

    def __init__(
        self,
        core: Any,
        dump: DumpCallback,
        period: float,
        returned: deque[Any],
        *,
        start: bool = True,
    ) -> None:
        self._core = core
        self._dump = dump
        self._period = period
        self._returned = returned
        self._stopping = False
        # Set in a fork() child on the parent's Flusher: its loop (alive in
        # the child only when dump() itself forked) must end, not compete
        # with the child's own flush thread for windows.
        self._retired = False
        # Cut windows not yet handed to dump, oldest first.
        self._held: deque[Any] = deque()
        self._attempts = 0  # failed builds of self._held[0]
        self.dump_errors = 0
        self.windows_delivered = 0
        # (windows, packets, bytes) whose dicts could not be built in
        # BUILD_ATTEMPTS tries: one tuple, replaced in one store, so that a
        # reader in another thread never sees a window half counted.
        self.dropped: tuple[int, int, int] = (0, 0, 0)
        self._reported_drops = 0
        self._last_drop_warning = 0.0
        # True once everything counted was delivered or counted as dropped.
        # The lock is held while the thread runs: waiters block on it, and
        # re-read ``done`` after each slice, so a waiter that was interrupted
        # between acquiring and releasing it can never block another one.
        self.done = not start
        # Called (once, from the thread that ran the final flush) right after
        # ``done`` is set: the exit bookkeeping of an instance that was
        # garbage-collected before its final flush had run (see _statistics).
        self.on_done: Optional[Callable[[], Any]] = None
        self._running = _thread.allocate_lock()
        # Taken by the one caller that runs the final flush itself when no
        # thread could be started.
        self._inline = _thread.allocate_lock()
        self.thread: Optional[threading.Thread] = None
        if start:
            self._running.acquire()
            thread = threading.Thread(
                target=self._run, name="connstats-flush", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # Python 3.12+ starts no thread once the interpreter is
                # finalizing (an instance made by a daemon thread during
                # exit). Counting still works; wait() runs the final flush in
                # the caller of shutdown() (the exit hook's pass included).
                pass
            else:
                self.thread = thread

    # -- control (any thread) ------------------------------------------------

    def stop(self) -> None:
        """Ask the thread to deliver what is left and exit (idempotent)."""
        self._stopping = True
        self._core.notify()

    def retire(self) -> None:
        """Make the loop end without touching the core again (fork child)."""
        self._retired = True

    def wait(self, deadline: Optional[float]) -> bool:
        """Wait for the final flush until ``deadline`` (monotonic; None = forever).

        No lock is held between two slices, so a signal handler may call
        this (through shutdown()) while the same thread is already inside it.
        """
        if (
            self.thread is None
            and self._stopping
            and not self.done
            and self._inline.acquire(False)
        ):
            self._run()
        while not self.done:
            slice_ = WAIT_SLICE
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    return self.done
            if self._running.acquire(True, slice_):
                self._running.release()
        return True

    def in_thread(self) -> bool:
        thread = self.thread
        return thread is not None and thread.ident == _thread.get_ident()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._retired:
            try:
                if self._round():
                    break
                failures = 0
            except BaseException as exc:  # anything: the thread must go on
                if self._retired:
                    return
                failures += 1
                if not isinstance(exc, _Retry):
                    _log("connstats: flush thread error; retrying")
                self._pause(failures)
        else:
            return
        self.done = True
        # The release orders the store to ``done`` before the read of
        # ``on_done`` (a setter that finds done still False is then seen).
        self._running.release()
        on_done = self.on_done
        if on_done is not None:
            try:
                on_done()
            except BaseException:  # pragma: no cover - bookkeeping only
                pass

    def _pause(self, failures: int) -> None:
        delay = min(RETRY_DELAY * 2 ** min(failures - 1, 16), RETRY_DELAY_MAX)
        try:
            self._core.wait(delay)
        except BaseException:
            time.sleep(delay)

    def _round(self) -> bool:
        """Deliver what is due; True once the final window has been handled."""
        core = self._core
        self._deliver_held()
        while self._take(core.pop_pending()):
            self._deliver_held()
        self._report_drops()
        if self._stopping:
            # The core is closed (shutdown closes it first): nothing new can
            # arrive, so what is left now is everything.
            while self._take(core.pop_pending()):
                self._deliver_held()
            # extract() may take these concurrently: each goes to one side.
            try:
                self._held.extend(iter(self._returned.popleft, None))
            except IndexError:
                pass
            self._take(core.cut())
            self._deliver_held()
            self._report_drops(final=True)
            return True
        info = core.window_info() if self._period else None
        if info is None:
            core.wait(None)
            return False
        generation, start = info
        # Clamped so that a wall clock stepped backwards cannot postpone a
        # flush by more than one period.
        remaining = min(start + self._period - time.time(), self._period)
        if remaining > 0:
            core.wait(remaining)
            return False
        self._take(core.cut(generation))
        self._deliver_held()
        return False

    def _take(self, window: Any) -> bool:
        if window is None:
            return False
        self._held.append(window)
        return True

    def _deliver_held(self) -> None:
        while self._held:
            self._deliver(self._held[0])
            self._held.popleft()
            self._attempts = 0
            if self._retired:
                # dump() forked and this is the child: the loop stops here.
                raise _Retry

    def _deliver(self, window: Any) -> None:
        try:
            virtual, physical = materialize(window)
        except BaseException:
            self.dump_errors += 1
            self._attempts += 1
            if self._attempts < BUILD_ATTEMPTS:
                _log(
                    "connstats: building a window for dump failed "
                    "(attempt %d of %d); retrying",
                    self._attempts,
                    BUILD_ATTEMPTS,
                )
                raise _Retry from None
            self._drop(window)
            return
        if not virtual and not physical:
            return
        try:
            start = datetime.fromtimestamp(window.start, timezone.utc)
            end = datetime.fromtimestamp(window.end, timezone.utc)
            result = self._dump(start, end, virtual, physical)
            if result is not None and inspect.isawaitable(result):
                self._refuse_awaitable(result)
        except BaseException:
            # SystemExit, KeyboardInterrupt, GeneratorExit... raised by dump
            # are its failures too: the window was handed over.
            self.dump_errors += 1
            _log("connstats: dump callback raised; later windows are still delivered")
        self.windows_delivered += 1

    def _refuse_awaitable(self, result: Any) -> None:
        # A dump that returns a coroutine (a lambda or partial around an
        # `async def`, which Statistics cannot see at construction): nothing
        # here runs an event loop, so the window would vanish without a
        # trace.  Count and log it instead; closing the coroutine keeps
        # Python's "never awaited" warning away from the user's log.
        self.dump_errors += 1
        close = getattr(result, "close", None)
        if close is not None:
            close()
        _log(
            "connstats: dump returned an awaitable (%s), which nothing awaits: "
            "the window is lost; use connstats.aio.AsyncStatistics for asyncio",
            type(result).__name__,
            exc_info=False,
        )

    def _drop(self, window: Any) -> None:
        packets = bytes_ = 0
        try:
            packets = int(window.packets)
            bytes_ = int(window.bytes)
        except BaseException:  # pragma: no cover - counted as a window anyway
            pass
        windows, packets_before, bytes_before = self.dropped
        self.dropped = (
            windows + 1,
            (packets_before + packets) & 0xFFFFFFFFFFFFFFFF,
            (bytes_before + bytes_) & 0xFFFFFFFFFFFFFFFF,
        )
        _log(
            "connstats: dropped a window of %d packets (%d bytes): its dicts "
            "could not be built in %d attempts",
            packets,
            bytes_,
            BUILD_ATTEMPTS,
        )

    def _report_drops(self, final: bool = False) -> None:
        # At most one warning per DROP_WARNING_INTERVAL under sustained
        # overload, and a last one when the thread ends.
        dropped = self._core.dropped_windows
        now = time.monotonic()
        if dropped != self._reported_drops and (
            final or now - self._last_drop_warning >= DROP_WARNING_INTERVAL
        ):
            self._last_drop_warning = now
            _log(
                "connstats: dropped %d window(s) so far (%d packets, %d bytes): "
                "dump is slower than max_conns cuts windows",
                dropped,
                self._core.dropped_packets,
                self._core.dropped_bytes,
                error=False,
            )
            self._reported_drops = dropped
