"""The event journal: every state change a daemon makes, one JSON line in ``.agentd/events.jsonl``.

The same call writes the human log line, so the log and the journal cannot disagree.

Writing: several daemons append to the same file, each line with one ``os.write`` on an ``O_APPEND`` descriptor (atomic
for lines this size). When the file grows past ``max_bytes`` it is rotated like the daemon logs (``events.jsonl`` →
``.1`` → ``.2`` ..., at most ``backups`` kept). Rotation takes an flock on ``events.jsonl.lock`` only to re-check the
size and rename, so two processes never rotate twice; a writer that opened the file just before the rename appends to
``.1``, which readers read before the live file, so no line is lost.

Reading: :func:`read_events` yields the events of every rotated file, oldest first, then the live file; a torn last
line and junk lines are skipped; :class:`Filter` selects by task, role, time and event type.
"""

from __future__ import annotations

import _thread  # (threading's Lock and get_ident, without threading's import: `agentd status`)
import collections
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator

from agentd.config import LogConfig
from agentd.core.clock import Clock, format_timestamp, parse_timestamp
from agentd.core.duration import parse_since as parse_since  # (re-exported)
from agentd.core.duration import parse_span
from agentd.core.model import valid_task_id
from agentd.hostinfo import hostname
from agentd.store.base import EVENT_TYPES as EVENT_TYPES  # (re-exported)
from agentd.store.base import Event as Event
from agentd.store.base import Filter as Filter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from logging import Logger
    from pathlib import Path
    from typing import IO, Any

INFO = 20  # logging.INFO (logging is imported by whoever passes a logger)

_LOG_DEFAULTS = LogConfig()
parse_duration = parse_span  # (the journal's name for it, kept)


def lock_path(path: Path) -> Path:
    """The sidecar lock file that serialises rotations: ``events.jsonl.lock``."""
    return path.with_name(path.name + ".lock")


def rotated_files(path: Path) -> list[Path]:
    """The journal's files that exist, oldest first: ``events.jsonl.N`` ... ``.1``, then ``events.jsonl``."""
    from pathlib import Path

    return [Path(file) for file in _rotated(os.fspath(path))]


def _rotated(path: str) -> list[str]:
    """:func:`rotated_files` as strings (`agentd status` reads the journal without importing pathlib)."""
    numbered: list[tuple[int, str]] = []
    folder, name = os.path.split(path)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        prefix = name + "."
        for entry in os.listdir(folder or os.curdir):
            suffix = entry[len(prefix) :] if entry.startswith(prefix) else ""
            if suffix.isdigit() and int(suffix) > 0:
                numbered.append((int(suffix), os.path.join(folder, entry)))
    files = [entry for _, entry in sorted(numbered, reverse=True)]
    if os.path.exists(path):
        files.append(path)
    return files


@contextlib.contextmanager
def _locked(path: str | Path, operation: int) -> Iterator[None]:
    """Hold an flock on the journal's sidecar lock file (no lock at all when it cannot be opened: read-only)."""
    try:
        fd = os.open(os.fspath(path) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # releases the flock


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate the journal if it is larger than ``max_bytes``; returns whether this call rotated it.

    The size is re-checked under the lock, so of several processes that saw a large file only the first rotates.
    """
    if max_bytes <= 0:
        return False
    with _locked(path, fcntl.LOCK_EX):
        try:
            if os.stat(path).st_size <= max_bytes:
                return False
        except FileNotFoundError:
            return False
        existing = [p for p in rotated_files(path) if p != path]  # .N ... .1
        for old in existing:
            number = int(old.name.rsplit(".", 1)[1])
            if number >= backups:
                old.unlink(missing_ok=True)
            else:
                os.replace(old, old.with_name(f"{path.name}.{number + 1}"))
        if backups > 0:
            os.replace(path, path.with_name(f"{path.name}.1"))
        else:
            path.unlink(missing_ok=True)
        return True


def escaped(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone UTF-16 surrogates) written as ``\\udXXX`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Journal:
    """Appends events to a JSON-lines file (one ``write`` per line, O_APPEND), rotates it by size, and logs them."""

    def __init__(
        self,
        path: Path | None,
        clock: Clock,
        role: str | None,
        logger: Logger,
        *,
        max_bytes: int = _LOG_DEFAULTS.max_bytes,
        backups: int = _LOG_DEFAULTS.backups,
    ) -> None:
        self.path = path
        self.clock = clock
        self.role = role
        self.log = logger
        self.max_bytes = max_bytes
        self.backups = backups
        self.host = hostname()
        self._lock = _thread.allocate_lock()
        self._pending: list[bytes] | None = None  # lines held by batch(), appended together at its end
        self._batcher: int | None = None  # the thread whose batch() holds them

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Events this thread emits meanwhile are appended in one ``os.write`` at the end (one open of the file for a
        pass's events instead of one each); their log lines are written at once, as always. An event another thread
        emits meanwhile appends the held lines before its own, so the file keeps the order the events were emitted
        in. Nested or concurrent batches join the one open (only its owner's events are held)."""
        with self._lock:
            if self._pending is not None:
                owner = False
            else:
                owner = True
                self._pending, self._batcher = [], _thread.get_ident()
        try:
            yield
        finally:
            if owner:
                with self._lock:
                    lines, self._pending, self._batcher = self._pending or [], None, None
                    if lines:
                        self._append(b"".join(lines))

    def emit(self, event: str, message: str, *, level: int = INFO, **fields: Any) -> None:
        """Log ``message`` and append the event with its fields.

        Text that UTF-8 cannot encode (a lone UTF-16 surrogate copied from a task) never fails: the log line shows it
        as a ``\\u`` escape, and the journal line is written with JSON escapes (it reads back as the same string)."""
        if self.log.isEnabledFor(level):  # (no escape made for a level not logged)
            self.log.log(level, escaped(message))
        if self.path is None:
            return
        record = {
            "time": format_timestamp(self.clock.now()),
            "event": event,
            "role": self.role,
            "host": self.host,
            "pid": os.getpid(),
            **fields,
            "message": message,
        }
        try:
            line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the same record, ASCII-escaped
            line = (json.dumps(record, default=str) + "\n").encode("ascii")
        with self._lock:
            if self._pending is not None:
                if self._batcher == _thread.get_ident():
                    self._pending.append(line)
                    return
                line = b"".join(self._pending) + line  # (another thread's batch: its events came first)
                self._pending.clear()
            self._append(line)

    def _append(self, data: bytes) -> None:
        """One ``os.write`` of whole lines at the end of the file (under ``self._lock``), rotating it when full."""
        assert self.path is not None
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:  # the folder is made only when missing, not tried on every event
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, flags, 0o644)
            try:
                os.write(fd, data)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if 0 < self.max_bytes < size:
                rotate(self.path, self.max_bytes, self.backups)
        except OSError as exc:
            self.log.warning("cannot append to %s: %s", self.path, exc.strerror or exc)


# -- reading -----------------------------------------------------------------------------------------------------------


def parse_line(line: str | bytes) -> Event | None:
    """An event from one journal line; None for junk (not JSON, not an object, no ``event`` or readable ``time``)."""
    text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str) or not isinstance(data.get("time"), str):
        return None
    try:
        moment = parse_timestamp(data["time"])
    except ValueError:
        return None
    return Event(data, text, moment)


class LiveMark:
    """How far reading got into the live file, so a follower that re-reads it from its start can skip those lines.

    A follower that opened a newer file (rotated in between) is recognised by a different first line.
    """

    def __init__(self, first: str | None = None, lines: int = 0, *, keep: bool = False) -> None:
        self.first = first
        self.lines = lines
        self._skipped = 0
        # With ``keep``, the live file itself, kept open where a read went through all of it (a descriptor of its
        # own, and the offset after its last complete line): a follower goes on from there, and from the files it was
        # rotated into meanwhile, instead of matching lines of whatever file the name holds by then.
        self.keep = keep
        self.kept: tuple[int, int] | None = None

    def already_read(self, line: str) -> bool:
        """Whether ``line`` (the next complete line a follower of the live file got) was read before."""
        if self._skipped >= self.lines:
            return False
        if self._skipped == 0 and line != self.first:
            self.lines = 0  # another file: nothing of it was read
            return False
        self._skipped += 1
        return True


_TIME_FIRST = b'{"time": "'  # how each line agentd writes begins (see Journal.emit)


def _before(line: bytes, since: datetime) -> bool:
    """Whether ``line``, read from its first field alone, is an event before ``since``: only for a line that begins
    as agentd writes them, with a time :func:`parse_timestamp` reads; any other is False (it is parsed whole). The
    same reading of the same text as :func:`parse_line` makes, so a line skipped here is one the filter refuses."""
    if not line.startswith(_TIME_FIRST):
        return False
    start = len(_TIME_FIRST)
    end = line.find(b'"', start, start + 64)
    if end < 0:
        return False
    try:
        return parse_timestamp(line[start:end].decode("ascii")) < since
    except ValueError:  # (an escape, a byte beyond ASCII, not a time: the whole line decides)
        return False


def _opened(journal: str) -> list[tuple[str, IO[bytes]]]:
    """Every file of the journal, oldest first, opened at once under a shared lock, so that a rotation cannot make
    the reader skip or repeat a file (the reading itself happens after the lock is released). The caller closes them."""
    handles: list[tuple[str, IO[bytes]]] = []
    if _rotated(journal):
        with _locked(journal, fcntl.LOCK_SH):
            for file in _rotated(journal):
                with contextlib.suppress(FileNotFoundError):
                    handles.append((file, open(file, "rb")))  # noqa: SIM115 - the caller closes them
    return handles


def _screen(where: Filter | None) -> Callable[[bytes], bool]:
    """Whether a line may pass ``where``, judged without parsing it: one without the name of any event type the
    filter asks for, without the task's id as a JSON string (a valid id: never escaped), or whose first field is a
    time before its ``since`` (see :func:`_before`), cannot. Each is written in a line as it is (see
    :meth:`Journal.emit`)."""
    if where is None:
        return lambda line: True
    names = tuple(name.encode("utf-8") for name in where.types)
    name = names[0] if len(names) == 1 else None  # (the usual filter: one type, looked for without a loop)
    task = b'"' + where.task.encode("ascii") + b'"' if where.task is not None and valid_task_id(where.task) else None
    since = where.since
    if task is None and name is not None:  # (`agentd status`'s, and `events --type`: no more tests than needed)
        if since is None:
            return lambda line: name in line
        return lambda line: name in line and not _before(line, since)

    def may_pass(line: bytes) -> bool:
        if task is not None and task not in line:
            return False
        if name is not None:
            if name not in line:
                return False
        elif names and not any(each in line for each in names):
            return False
        return since is None or not _before(line, since)

    return may_pass


def read_events(path: str | Path, where: Filter | None = None, *, mark: LiveMark | None = None) -> Iterator[Event]:
    """The journal's events that pass ``where``, oldest file first, each file in the order it was written.

    Every file is opened at once under a shared lock, so a rotation cannot make the reader skip or repeat a file;
    the reading itself happens after the lock is released. ``mark`` records how far the live file was read.

    A line is parsed only when it may pass (see :func:`_screen`): one without the name of any event type the filter
    asks for, without its task's id, or whose first field is a time before its ``since``, is skipped unparsed (a busy
    project's journal holds up to 60 MB, most of it before today, and `agentd status` counts today's costed runs in
    it).
    """
    journal = os.fspath(path)
    handles: list[tuple[str, IO[bytes]]] = []
    may_pass = _screen(where)
    try:
        handles = _opened(journal)
        for file, handle in handles:
            live = file == journal
            offset = 0
            for line in handle:
                if line[-1:] != b"\n":
                    break  # a torn last line (still being written, or cut by a crash): left
                if live and mark is not None:
                    if mark.lines == 0:
                        mark.first = line[:-1].decode("utf-8", errors="replace")
                    mark.lines += 1
                    offset += len(line)
                if not may_pass(line):
                    continue
                event = parse_line(line)
                if event is not None and (where is None or where.matches(event)):
                    yield event
            if live and mark is not None and mark.keep:
                mark.kept = (os.dup(handle.fileno()), offset)
    finally:
        for _, handle in handles:
            handle.close()


BACKWARD_BLOCK = 1 << 16  # bytes read at a time by read_last, from the end of a file toward its start


def read_last(path: str | Path, where: Filter | None, count: int, *, mark: LiveMark | None = None) -> list[Event]:
    """The last ``count`` events that pass ``where``, in the journal's order: what the last ``count`` of
    :func:`read_events` are, read from the end of the newest file back, only as far as it takes (`agentd events -n
    20` and `-f`'s first lines: a full journal holds up to 60 MB). ``mark``: as for :func:`read_events` when it keeps
    the live file (a mark that does not is filled by reading it all)."""
    if mark is not None and not mark.keep:
        return list(collections.deque(read_events(path, where, mark=mark), maxlen=max(0, count)))
    journal = os.fspath(path)
    handles: list[tuple[str, IO[bytes]]] = []
    may_pass = _screen(where)
    found: list[Event] = []
    try:
        handles = _opened(journal)
        for file, handle in reversed(handles):
            end = _complete_end(handle)
            if file == journal and mark is not None:
                mark.kept = (os.dup(handle.fileno()), end)
            if len(found) >= count:
                continue
            for line in _lines_backward(handle, end):
                if not may_pass(line):
                    continue
                event = parse_line(line)
                if event is not None and (where is None or where.matches(event)):
                    found.append(event)
                    if len(found) >= count:
                        break
    finally:
        for _, handle in handles:
            handle.close()
    found.reverse()
    return found


def _complete_end(handle: IO[bytes]) -> int:
    """Where a file's complete lines end: after its last newline (a torn last line is left), 0 without one."""
    position = os.fstat(handle.fileno()).st_size
    while position > 0:
        start = max(0, position - BACKWARD_BLOCK)
        handle.seek(start)
        newline = handle.read(position - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _lines_backward(handle: IO[bytes], end: int) -> Iterator[bytes]:
    """The newline-terminated lines of a file's first ``end`` bytes (which end with a newline), last first."""
    position = end
    carried = b""  # the end of a line whose start is in the block before (with its newline)
    while position > 0:
        start = max(0, position - BACKWARD_BLOCK)
        handle.seek(start)
        data = handle.read(position - start) + carried
        position = start
        parts = data.split(b"\n")  # (the last part is empty: the data ends with a newline)
        whole = parts[:-1] if start == 0 else parts[1:-1]
        for line in reversed(whole):
            yield line + b"\n"
        carried = b"" if start == 0 else parts[0] + b"\n"


def _open(path: Path | str) -> tuple[Any, int | None]:
    """The file at ``path`` open for reading, and its inode (None, None if there is none now)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller keeps it
    except FileNotFoundError:
        return None, None
    return handle, os.fstat(handle.fileno()).st_ino


def _rotated_since(path: Path | str, inode: int | None, newest: int | None) -> bytes:
    """What the files a log rotated into hold that is newer than the file of ``inode`` and older than the current
    one (inode ``newest``), oldest first: a log that rotated twice between two looks (``path.1`` is then a whole file
    the follower never opened). Where the old file was rotated out altogether, every kept backup is newer than it."""
    backups = []
    number = 1
    while number <= 1000:
        handle, found = _open(f"{path}.{number}")
        if handle is None:
            break
        backups.append((handle, found))
        number += 1
    try:
        ours = next((n for n, (_, found) in enumerate(backups) if found == inode), len(backups))
        newer = [handle for handle, found in reversed(backups[:ours]) if found != newest]
        return b"".join(handle.read() for handle in newer)
    finally:
        for handle, _ in backups:
            handle.close()


def follow(
    path: Path, *, from_end: bool = True, poll: float = 0.2, kept: tuple[int, int] | None = None
) -> Iterator[str]:
    """New lines of a log as they are written, across rotations (a new inode or a shorter file: reopen).

    ``kept``: a descriptor of the file to go on from and the offset to go on at (:attr:`LiveMark.kept`, which this
    takes over): what was written to it after that, and to the files the log rotated into since, comes first."""
    handle = None
    inode = None
    pending = b""
    first = True
    if kept is not None:
        handle = os.fdopen(kept[0], "rb")  # (kept open across iterations)
        handle.seek(kept[1])
        inode = os.fstat(handle.fileno()).st_ino
        first = False
    while True:
        if handle is None:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - kept open across iterations
            except FileNotFoundError:
                time.sleep(poll)
                continue
            inode = os.fstat(handle.fileno()).st_ino
            if first and from_end:
                handle.seek(0, os.SEEK_END)
            first = False
        chunk = handle.read()
        if not chunk:
            try:
                current = os.stat(path)
            except FileNotFoundError:
                time.sleep(poll)
                continue
            if current.st_ino == inode and current.st_size >= handle.tell():
                time.sleep(poll)
                continue
            chunk = handle.read()  # rotated: whatever reached the old file last, then the new file from its start
            handle.close()
            handle, newest = _open(path)
            if newest != inode:  # (the same file cut short, as copytruncate does: nothing in between to read)
                chunk += _rotated_since(path, inode, newest)  # (rotated more than once since the last look)
            inode = newest
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
