"""The queue's archive: finished tasks moved out of the live queue, one JSON line each, beside the queue's real file.

``SPRINT_QUEUE.json`` archives into ``SPRINT_QUEUE.archive.jsonl``. Each line is ``{"archived_at": TIME, "task":
{...}}`` with the task exactly as it was (its subtasks inside it). JSON lines because the archive only grows: a move
appends a few lines and fsyncs them, never rewriting what is there, and a line torn by a crash mid-append is one line
that readers skip (the next append starts on a new line).

Crash safety (see :meth:`agentd.store.file.queuefile.QueueStore.archive`): the lines are appended and fsynced before
the queue that no longer holds the tasks replaces the old one, both under the queue lock. A crash in between leaves
the tasks in both files; readers prefer the queue, and the next run finds them archived already (the same text) and
only removes them from the queue. A task is never lost, and never listed twice.
"""

from __future__ import annotations

import _thread  # (a lock without threading's import: `agentd queue list` reads the archive)
import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from agentd.core.clock import format_timestamp
from agentd.core.model import walk_one
from agentd.core.record import Record, set_field
from agentd.errors import FileAccessError
from agentd.lazylog import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

log = get_logger(__name__)

SUFFIX = ".archive.jsonl"


def path_for(queue: Path) -> Path:
    """The archive beside a queue file (``SPRINT_QUEUE.json`` -> ``SPRINT_QUEUE.archive.jsonl``)."""
    return queue.with_name(queue.stem + SUFFIX)


def file_for(queue: str) -> str:
    """:func:`path_for` for a queue file's (normalised) name, without pathlib (see agentd.config.Config)."""
    folder, name = os.path.split(queue)
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # (Path.stem)
    return os.path.join(folder, stem + SUFFIX)


def canonical(task: Mapping[str, Any]) -> str:
    """A task's compact JSON (what tells an archived copy from a changed one)."""
    return json.dumps(task, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class Archived(Record):
    """One archived top-level task (the last line for its id wins)."""

    _fields = ("task", "archived_at", "line")

    task: dict[str, Any]
    archived_at: str | None
    line: int

    def __init__(self, task: dict[str, Any], archived_at: str | None, line: int) -> None:
        set_field(self, "task", task)
        set_field(self, "archived_at", archived_at)
        set_field(self, "line", line)


class Contents(Record):
    """What the archive holds: top-level tasks by id, and the status of every archived id (subtasks included)."""

    _fields = ("tasks", "statuses", "skipped")

    tasks: dict[str, Archived]
    statuses: dict[str, str]
    skipped: int  # lines that are not a task (torn by a crash, or edited by hand)

    def __init__(self, tasks: dict[str, Archived], statuses: dict[str, str], skipped: int) -> None:
        set_field(self, "tasks", tasks)
        set_field(self, "statuses", statuses)
        set_field(self, "skipped", skipped)

    def find(self, task_id: str) -> tuple[dict[str, Any], str | None] | None:
        """The archived task with this id (a subtask too) and when it was archived, or None."""
        for entry in reversed(list(self.tasks.values())):
            for _, raw, _ in walk_one(entry.task, ""):
                if isinstance(raw, dict) and raw.get("id") == task_id:
                    return raw, entry.archived_at
        return None


EMPTY = Contents({}, {}, 0)


class Statuses(Mapping[str, str]):
    """An archive's statuses (archived id -> status, subtasks included), read from the file at the first question.

    A read of the queue asks only about a dependency on a task that is not in the queue (or, as tasks are added, one
    an earlier task depends on that way): most reads never do, and a big archive takes a while to read (20,000
    archived tasks, 12 MB: about 0.14 s, which `agentd queue list` and a daemon's first claim waited for). The file
    is read as it is then: never older than when this was made (the archive only grows before the queue that no
    longer holds its tasks replaces the old one). An unreadable archive counts as empty, said once per version."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._read: dict[str, str] | None = None
        self._lock = _thread.allocate_lock()

    def _statuses(self) -> dict[str, str]:
        read = self._read
        if read is None:
            with self._lock:
                if self._read is None:
                    self._read = self._archive.statuses_now()
                read = self._read
        return read

    def __getitem__(self, key: str) -> str:
        return self._statuses()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._statuses()

    def __iter__(self) -> Iterator[str]:
        return iter(self._statuses())

    def __len__(self) -> int:
        return len(self._statuses())


class Archive:
    """Reads (cached while the file is unchanged) and appends to one archive file."""

    def __init__(self, path: str | Path) -> None:
        self.file = os.fspath(path)
        self._cache: tuple[tuple[int, ...], Contents] | None = None
        self._reported: tuple[int, ...] | None = None  # the unreadable version already reported
        self._statuses: tuple[tuple[int, ...], Statuses] | None = None  # (see statuses)

    @property
    def path(self) -> Path:
        """The archive file (``file`` is its name: a queue read imports no pathlib, see agentd.config.Config)."""
        from pathlib import Path

        return Path(self.file)

    def _identity(self) -> tuple[int, ...] | None:
        try:
            info = os.stat(self.file)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def read(self) -> Contents:
        """Everything archived (an empty archive when there is no file). FileAccessError when it cannot be read."""
        try:
            return self._read()
        except OSError as exc:
            raise FileAccessError(self.path, "cannot read the archive", exc.strerror or str(exc)) from None

    def _read(self) -> Contents:
        identity = self._identity()
        if identity is None:
            return EMPTY
        if self._cache is not None and self._cache[0] == identity:
            return self._cache[1]
        tasks: dict[str, Archived] = {}
        skipped = 0
        with open(self.file, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    entry = json.loads(line)
                    task = entry["task"]
                    task_id = task["id"]
                except (ValueError, KeyError, TypeError):
                    skipped += int(bool(line.strip()))
                    continue
                if isinstance(task_id, str) and isinstance(task, dict):
                    tasks.pop(task_id, None)  # the last line for an id wins, and takes its place at the end
                    stamp = entry.get("archived_at")
                    tasks[task_id] = Archived(task, stamp if isinstance(stamp, str) else None, number)
                else:
                    skipped += 1
        statuses: dict[str, str] = {}
        for entry in tasks.values():
            for _, raw, _ in walk_one(entry.task, ""):
                if isinstance(raw, dict) and isinstance(raw.get("id"), str) and isinstance(raw.get("status"), str):
                    statuses[raw["id"]] = raw["status"]
        contents = Contents(tasks, statuses, skipped)
        self._cache = (identity, contents)
        return contents

    def statuses(self) -> Mapping[str, str]:
        """Archived id -> its status, read at the first question (see :class:`Statuses`): the same object while the
        file is unchanged (its identity: device, inode, size, mtime). No file: an empty archive."""
        try:
            identity = self._identity()
        except OSError:  # (a folder it cannot look into: said as a read would say it)
            return self.statuses_now()
        if identity is None:
            return EMPTY.statuses
        made = self._statuses
        if made is not None and made[0] == identity:
            return made[1]
        statuses = Statuses(self)
        self._statuses = (identity, statuses)
        return statuses

    def statuses_now(self) -> dict[str, str]:
        """Archived id -> its status, read now; an unreadable archive counts as empty (and is logged)."""
        try:
            return self.read().statuses
        except FileAccessError as exc:
            identity = self._identity()
            if identity != self._reported:  # once per version of the file, not on every read
                self._reported = identity
                # (info: a daemon logs it; a CLI command that needs the archive says so in its own one-line error)
                log.info("%s; archived tasks count as unknown until it can be read", exc)
            return EMPTY.statuses

    def append(self, tasks: Iterable[Mapping[str, Any]], now: datetime) -> int:
        """Append the tasks not archived already with the same content; fsync. Returns how many were written."""
        contents = self._read()
        stamp = format_timestamp(now)
        lines = []
        for task in tasks:
            known = contents.tasks.get(str(task.get("id")))
            if known is not None and canonical(known.task) == canonical(task):
                continue  # archived by an earlier run that died before the queue was written
            lines.append(json.dumps({"archived_at": stamp, "task": task}, ensure_ascii=False) + "\n")
        if not lines:
            return 0
        created = not os.path.exists(self.file)
        fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            payload = "".join(lines).encode("utf-8")
            if size and not _ends_with_newline(self.file, size):
                payload = b"\n" + payload  # after a torn line: start a new one
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            folder = os.open(os.path.dirname(self.file) or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        self._cache = None
        return len(lines)


def _ends_with_newline(path: str, size: int) -> bool:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"
    return True
