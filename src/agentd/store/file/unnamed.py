"""Files made ahead without a name, and named when they are used: the lease files of a daemon's next claims and its
queue's next temporary file (see :meth:`agentd.store.file.leases.LeaseDir.prepare` and
:meth:`agentd.store.file.queuefile.QueueStore.prepare_write`).

Making a file is the dear part of a small write: a new inode (on ext4 without a journal, found past every inode of
its group freed in the last 60 s, 360 s while that inode's table block is not yet written back: ``recently_deleted``
in fs/ext4/ialloc.c). Made unnamed (``O_TMPFILE``) ahead, it is named later with ``linkat`` of its ``/proc/self/fd``
link, which makes no inode and fails with EEXIST when the name exists, as ``O_EXCL`` does. Linux only; where the file
system makes no unnamed file, or there is no ``/proc`` to name one by, callers make their files by name.
"""

from __future__ import annotations

import errno
import os

AVAILABLE = hasattr(os, "O_TMPFILE")
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)  # (what open(2) says where O_TMPFILE is not made)


def make(folder: str, flags: int, mode: int, *, dir_fd: int | None = None) -> int:
    """A new unnamed file in ``folder`` (relative to ``dir_fd`` when given), open with ``flags`` (``os.O_RDWR`` or
    ``os.O_WRONLY``, and more), close-on-exec. OSError as open(2) raises it (see :func:`unsupported`)."""
    return os.open(folder, flags | os.O_TMPFILE | os.O_CLOEXEC, mode, dir_fd=dir_fd)


def unsupported(exc: OSError) -> bool:
    """Whether a failure of :func:`make` means the file system makes no unnamed files (not a passing want of
    descriptors or space)."""
    return exc.errno in _UNSUPPORTED


def name(fd: int, path: str, *, dir_fd: int | None = None) -> None:
    """Give the unnamed file open as ``fd`` the name ``path`` (relative to ``dir_fd`` when given). FileExistsError
    when the name exists; another OSError when it cannot be named so (no /proc, another file system)."""
    # linkat(2) with AT_SYMLINK_FOLLOW, which os.link calls when given a dir fd (src_dir_fd is ignored for an absolute
    # path); without one it calls link(2), which would link the /proc symlink itself (EXDEV).
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, dst_dir_fd=dir_fd, follow_symlinks=True)
