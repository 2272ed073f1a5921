"""inotify(7) through the C library already loaded in the process: a descriptor, watches on folders, events read.

The whole of what the change watch needs from the kernel, in ~100 lines and one import (ctypes, ~3 ms): watchdog's
import and observer cost a daemon ~25 ms and ~60 M instructions, and three threads that wake on every event.
``inotify_simple`` (PyPI) is the same ctypes shell, but finds the C library with ``ctypes.util.find_library``, which
runs ``ldconfig -p`` in a subprocess (and imports subprocess) in every daemon; the symbols are in the process already.

Linux only: :class:`Unavailable` where the calls are missing (watch.py then uses watchdog); any other failure, the
kernel's limits among them (``fs.inotify.max_user_instances``: EMFILE; ``max_user_watches``: ENOSPC), is an OSError.
"""

from __future__ import annotations

import ctypes
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Event bits (linux/inotify.h)
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000  # the kernel's queue of events overflowed: some were lost (wd is -1)
IN_IGNORED = 0x00008000  # the watch is gone (its folder removed or unmounted)
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000

_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)
_READ_SIZE = 64 * 1024


class Unavailable(OSError):
    """This system's C library has no inotify."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: the C library is loaded already
    try:
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except AttributeError as exc:
        raise Unavailable(f"no inotify in the C library ({exc})") from None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    return libc


def _error(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


class Inotify:
    """One inotify descriptor, non-blocking and close-on-exec (a task's command never inherits it)."""

    def __init__(self) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise _error("inotify_init1")
        self.fd: int = fd

    def fileno(self) -> int:
        return self.fd

    def add(self, folder: str, mask: int) -> int:
        """Watch ``folder`` (a folder only) for the events of ``mask``; returns the watch descriptor."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), mask | IN_ONLYDIR)
        if wd < 0:
            raise _error("inotify_add_watch", folder)
        return int(wd)

    def read(self) -> list[tuple[int, int, str]]:
        """The events queued now as (wd, mask, name), none when there are none (the descriptor never blocks)."""
        try:
            data = os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return []
        events = []
        at, end = 0, len(data)
        while at + _HEADER.size <= end:
            wd, mask, _cookie, size = _HEADER.unpack_from(data, at)
            at += _HEADER.size
            name = os.fsdecode(data[at : at + size].rstrip(b"\0"))
            at += size
            events.append((wd, mask, name))
        return events

    def close(self, hand_off: Callable[[int], object] | None = None) -> None:
        """Close the descriptor; ``hand_off(fd)`` first, when given, may pass it to a process that keeps it until that
        process ends (see :meth:`agentd.store.base.Watching.stop`)."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if hand_off is not None:
                hand_off(fd)
        finally:
            os.close(fd)
