"""A wake-up that a signal handler may set: ``threading.Event``'s set, clear, is_set and wait, over an eventfd.

A Python signal handler runs in the main thread between two of its bytecodes, wherever it is. An Event's ``set`` there
waits for the Event's own lock, which the ``clear`` or ``set`` the signal interrupted holds: for ever (a daemon sent
SIGHUP or SIGTERM at that moment hung). :class:`WakeUp` takes no lock: ``set`` adds to an eventfd's counter (writes a
byte to a pipe where there is no eventfd), ``wait`` polls it, ``clear`` reads it back to nothing in one ``read``. Each
is one system call, so a ``set`` from another thread (or a handler) during a ``clear`` is kept or cleared whole, as an
Event's: never lost half way. A watch's thread polls its descriptor (:meth:`fileno`) beside another's to be stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import sys
import weakref


class WakeUp:
    """What a loop sleeps on and anything may wake it by, a signal handler included (see the module)."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):  # (Linux)
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._size = 8  # (an eventfd's count)
        else:
            self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._size = _PIPE_MAX
        self._closing = weakref.finalize(self, _close_pair, self._r, self._w)

    def fileno(self) -> int:
        """The descriptor that polls readable while it is set (to wait on it beside others)."""
        return self._r

    def close(self) -> None:
        """Close its descriptors now (else when it is collected); once."""
        self._closing()

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # (a pipe full: set already)
            os.write(self._w, (1).to_bytes(8, sys.byteorder) if self._r == self._w else b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):  # (not set)
            os.read(self._r, self._size)  # (the whole count, or all a pipe holds: one read, so one step)

    def is_set(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether it is set, once it is or *timeout* seconds passed (None: no limit)."""
        poller = select.poll()  # (one per call: a poll object is not for two threads at once)
        poller.register(self._r, select.POLLIN)
        return bool(poller.poll(None if timeout is None else math.ceil(max(0.0, timeout) * 1000)))


_PIPE_MAX = 1 << 16  # bytes a pipe holds (Linux's default; this one is never resized)


def _close_pair(read_end: int, write_end: int) -> None:
    for fd in {read_end, write_end}:
        with contextlib.suppress(OSError):
            os.close(fd)
