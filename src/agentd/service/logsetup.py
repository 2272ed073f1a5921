"""Daemon logging: one line per state change, to stderr or a size-rotated file, as text or JSON."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from agentd.core.clock import format_timestamp
from agentd.hostinfo import running

TEXT_FORMAT = "%(asctime)s {name}[%(process)d] %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` with the time of each second formatted once (the format shows whole seconds): a daemon
    logs 3 lines a task, and each formatted its time anew (``localtime`` and ``strftime``)."""

    _second: tuple[int, str | None, str] | None = None  # (the second, its date format, its text)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        memo = self._second
        if memo is not None and memo[0] == second and memo[1] == datefmt:
            return memo[2]
        text = super().formatTime(record, datefmt)
        self._second = (second, datefmt, text)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, role, pid, message."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def format(self, record: logging.LogRecord) -> str:
        from datetime import UTC, datetime

        data = {
            "time": format_timestamp(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "role": self.name,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(
    name: str,
    *,
    verbose: int = 0,
    log_file: Path | None = None,
    log_format: str = "text",
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
) -> None:
    """Configure the root logger for a daemon called ``name`` (role or role.instance)."""
    handler: logging.Handler
    if log_file is not None:
        from logging import handlers  # (pickle, struct: only a daemon that logs to a file needs them)

        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", errors="backslashreplace"
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(name))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT.format(name=name), DATE_FORMAT))
    # What no format of a daemon's shows is not looked up for each record: the caller's file, line and function (a
    # walk up the stack), the thread's name, multiprocessing's process name, asyncio's task (the logging HOWTO's
    # "Optimization"). The process id stays: both formats show it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    setattr(logging, "logAsyncioTasks", False)  # noqa: B010 (3.12 and later; an unused attribute before)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logging.getLogger("watchdog").setLevel(logging.WARNING)

    def excepthook(kind: type[BaseException], value: BaseException, trace: object) -> None:
        logging.getLogger("agentd").critical("crashed", exc_info=(kind, value, trace))  # type: ignore[arg-type]

    sys.excepthook = excepthook


def cap_task_log(path: Path, limit: int) -> int:
    """Keep a finished task's output log within about ``limit`` bytes: its first and last halves (whole lines), and a
    line between saying how much was cut. Returns the bytes cut (0: under the limit, or ``limit`` is 0).

    Done when the run has ended (the command wrote to the file directly, through its own descriptor), by writing a
    temporary file beside it and renaming it over the log: a crash leaves the old log or the new one.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return 0
    if limit <= 0 or size <= limit:
        return 0
    half = limit // 2
    with open(path, "rb") as handle:
        head = handle.read(half)
        handle.seek(size - half)
        tail = handle.read(half)
    if b"\n" in head:
        head = head[: head.rfind(b"\n") + 1]  # whole lines
    if b"\n" in tail[:-1]:
        tail = tail[tail.find(b"\n") + 1 :]
    cut = size - len(head) - len(tail)
    marker = f"agentd: {cut} bytes cut here (the log exceeded max_task_log = {limit} bytes: head and tail kept)\n"
    if head and not head.endswith(b"\n"):
        marker = "\n" + marker
    temp = path.with_name(f".{path.name}.{os.getpid()}.cut")
    try:
        temp.write_bytes(head + marker.encode() + tail)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return cut


SPARE_PREFIX = ".spare-"  # a folder a supervisor made ahead of its task (agentd.run._shim._prepare): .spare-PID


def drop_spare_folder(name: str, path: str) -> bool:
    """Remove a spare folder whose supervisor (its pid is in its name) no longer runs on this host: one SIGKILLed
    while it waited for its task leaves it behind. Safe whoever else looks: only an empty folder is removed (rmdir),
    a spare folder becomes a task's by an atomic rename, and a supervisor whose spare folder is gone (another host's,
    of the same pid) makes the task's folder as it would without one. True: removed."""
    pid = name.removeprefix(SPARE_PREFIX)
    if not pid.isdigit() or running(int(pid)):  # (alive, perhaps another user's: its own folder)
        return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def prune_task_logs(
    tasks_dir: str | Path, *, keep: int, max_age_days: float, now: float, only: str | None = None
) -> int:
    """Remove task output logs beyond the newest ``keep`` per task and older than ``max_age_days``; returns how many.

    ``only`` limits the pass to one task's folder (after each finished run); without it every task is visited, and
    the spare folders of supervisors that died (:func:`drop_spare_folder`) are removed.
    One listing of each folder and one stat of each log in it (``os.scandir``: no Path made, no stat repeated).
    """
    removed = 0
    if only:
        folders = [os.path.join(tasks_dir, only)]
    else:
        try:
            with os.scandir(tasks_dir) as entries:
                found = [(entry.name, entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        folders = [path for name, path in found if not name.startswith(".")]  # (no task id starts with a dot)
        for name, path in found:
            if name.startswith(SPARE_PREFIX):
                drop_spare_folder(name, path)
    cutoff = now - max_age_days * 86400
    for folder in folders:
        try:
            with os.scandir(folder) as entries:
                logs = [
                    (entry.stat().st_mtime, entry.path)
                    for entry in entries
                    if entry.name.endswith(".log") and len(entry.name) > 4 and entry.is_file()
                ]
        except (FileNotFoundError, NotADirectoryError):
            continue
        logs.sort(key=lambda log: log[0], reverse=True)
        for position, (mtime, path) in enumerate(logs):
            if position >= keep or mtime < cutoff:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed += 1
    return removed
