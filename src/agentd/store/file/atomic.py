"""Replace a small file atomically: write a temporary file beside it, fsync, rename over it, fsync the folder."""

from __future__ import annotations

import contextlib
import os

from agentd import faults
from agentd.errors import FileAccessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def replace_file(target: Path, payload: bytes, *, fault: str | None = None) -> None:
    """Readers see the old ``target`` or the new one, never part of one; a crash leaves at most a temporary file
    (``.NAME.PID.HEX.agentd-tmp``). ``fault``: the crash point just before the rename (see agentd.faults)."""
    temp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.agentd-tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if fault:
            faults.point(fault)
        os.replace(temp, target)
        folder = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise FileAccessError(target, "cannot write", exc.strerror or str(exc)) from None
