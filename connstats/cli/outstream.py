"""Output failures of the command line, told apart from input failures.

A write to standard output can fail for two reasons that need opposite
treatment.  The reader went away (``connstats read big.pcap | head``): that
is not an error, and coreutils say nothing; they are killed by SIGPIPE, so
the shell sees status 141 (128 + 13).  Python ignores SIGPIPE and gets EPIPE
instead, so the command exits quietly with 141 itself.  Any other failure
(``> /dev/full``: ENOSPC, a closed descriptor, EIO) is a real error and gets
one line, ``connstats: cannot write standard output: No space left on
device``, and status 1.

:class:`GuardedOutput` wraps the text stream the writers use and turns any
``OSError`` of a write or flush into :class:`OutputError`, which is not an
``OSError``: the read loop catches ``OSError`` to blame the input file, and
must not blame it for the output's failures.
"""

from __future__ import annotations

import codecs
import errno
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

#: Exit status after EPIPE: what the shell reports for a tool killed by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


class OutputError(Exception):
    """Writing the output failed; ``broken_pipe`` when the reader went away."""

    def __init__(self, name: str, exc: BaseException) -> None:
        self.name = name
        self.errno = getattr(exc, "errno", None)
        self.broken_pipe = isinstance(exc, BrokenPipeError) or self.errno == errno.EPIPE
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        super().__init__(f"cannot write {name}: {reason}")


class GuardedOutput:
    """A text stream whose write and flush raise :class:`OutputError`."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self.name = name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            raise OutputError(self.name, exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            raise OutputError(self.name, exc) from None

    def binary_writer(self) -> Callable[[bytes], None] | None:
        """A ``write(bytes)`` straight into the stream's binary layer, or None.

        Only where the text layer would write the same bytes: UTF-8, and
        ``\n`` written as it is (every platform whose line end is ``\n``).
        The text written so far is flushed first, so the bytes follow it;
        text written after them follows them.  Megabytes of JSON or CSV rows
        then go out in chunks, never as one ``str`` and its encoded copy.
        """
        stream = self._stream
        raw = getattr(stream, "buffer", None)
        encoding = getattr(stream, "encoding", None)
        if raw is None or not isinstance(encoding, str) or os.linesep != "\n":
            return None
        try:
            if codecs.lookup(encoding).name != "utf-8":
                return None
        except LookupError:
            return None
        self.flush()
        name = self.name

        def write(data: bytes) -> None:
            try:
                raw.write(data)
            except (OSError, ValueError) as exc:
                raise OutputError(name, exc) from None

        return write

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False


def silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's own flush at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def flush_stdout() -> OutputError | None:
    """Flush standard output now; the failure, if any, instead of a traceback at exit."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        silence_stdout()
        return OutputError("standard output", exc)
    return None


#: Mode of the files -o and -w create: they hold addresses, ports and (-w)
#: packet payloads, often written as root; only their owner reads them.  An
#: existing file is truncated and keeps its mode (chmod it, or create it
#: beforehand with the mode wanted, to share the output).
PRIVATE_MODE = 0o600


def create_private(path: str, mode: str = "w") -> Any:
    """Open ``path`` for writing (``"w"`` text, ``"wb"`` binary), new files 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        if mode == "wb":
            return os.fdopen(fd, "wb")
        return os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
