"""Write a big queue's temporary file with the disk already at work on its first megabytes.

A transaction writes the whole queue to a temporary file, fsyncs it, then renames it over the queue. Left to
itself, the kernel starts writing those pages to the disk only at the fsync, so the fsync of a 6 MB queue waited
for all of them: 5-6 ms of a daemon's 12 ms transaction on the 2-core test machine. :func:`write_all` writes a
payload of :data:`CHUNK` bytes or more a chunk at a time and, after each chunk, asks the kernel to start writing it
out (``sync_file_range`` with ``SYNC_FILE_RANGE_WRITE``: it queues the writes and does not wait for them). The disk
then works while the rest is copied in, and the fsync finds most of the file on its way or written: it waited
0.1 ms instead of about 3 ms after the next read's state was made. :func:`start` does the same for a small file as
a whole, for a process that writes the queue again and again (a daemon: see ``QueueStore._write``).

This is a head start only. The fsync that follows is still what makes the file durable before the rename, as
before; a failed or missing ``sync_file_range`` (not Linux, no glibc, a file system or sandbox without it) only
loses the head start, and after the first failure the process stops asking. ``ctypes`` is imported only for a
payload this large (a daemon on a big queue has it loaded already, see :mod:`agentd.store.file.allocator`), or at a
process's second write of a small queue (a daemon's change watch has it loaded already).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

CHUNK = 1 << 20  # bytes written before their write-out is started (a payload smaller than this: one plain write)
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writing out the dirty pages of the range, without waiting

# None: not looked up yet; False: not to be had here (or it failed once); else sync_file_range(fd, offset, n, flags)
_start: Callable[[int, int, int, int], int] | bool | None = None


def _lookup() -> Callable[[int, int, int, int], int] | bool:
    global _start
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):  # no ctypes, no C library to load, or no such call in it
        _start = False
        return False
    function.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    function.restype = ctypes.c_int
    _start = function
    return function


def write_all(fd: int, payload: bytes, start: int = 0) -> None:
    """``payload`` from its byte ``start`` on, written to ``fd`` at that offset (``fd`` at its start: a file just
    opened); what is written, when :data:`CHUNK` bytes or more, with the write-out of each chunk started as soon as it
    is written (see the module's note). A ``start`` past 0 writes only the part of a file known to hold the bytes
    before it already (see ``agentd.store.file.spare``)."""
    view = memoryview(payload)[start:]
    if start:
        os.lseek(fd, start, os.SEEK_SET)
    if len(view) >= CHUNK and _start is not False:
        offset = 0
        while offset < len(view):
            written = os.write(fd, view[offset : offset + CHUNK])
            offset += written
            if not _write_out(fd, start + offset - written, written):  # (a hint refused: the rest written plainly)
                break
        view = view[offset:]
    while view:
        view = view[os.write(fd, view) :]


def start(fd: int) -> bool:
    """Start writing out all of ``fd``'s dirty pages, without waiting for them (``sync_file_range`` with
    ``SYNC_FILE_RANGE_WRITE`` over the whole file); False where that is not to be had (then, and after a first
    failure, nothing is asked of the kernel). Only a head start: the caller's fsync still makes the file durable."""
    return _write_out(fd, 0, 0)  # (offset 0, length 0: to the end of the file)


def _write_out(fd: int, offset: int, count: int) -> bool:
    """``sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE)``, looked up at the first call; False where it
    is not to be had, and from its first failure on."""
    global _start
    call = _start if _start is not None else _lookup()
    if not call:
        return False
    assert not isinstance(call, bool)
    if call(fd, offset, count, _SYNC_FILE_RANGE_WRITE) != 0:
        _start = False
        return False
    return True
