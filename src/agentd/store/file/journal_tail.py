"""Following the event journal from a cursor, without blocking: what the automation process reads events with.

A :class:`Cursor` names the last event handled (its time and a digest of its line). :meth:`JournalTail.start` reads
the events after it from every file, rotated ones first (or, with no cursor, skips to the end: history is not
replayed); :meth:`JournalTail.poll` then returns what was appended since, following the live file across rotations
(a new inode: the rest of the old file, then the new one from its start). A torn last line waits for its end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.store.file.journal import Event, LiveMark, _rotated_since, parse_line, read_events


def digest(line: str) -> str:
    return hashlib.blake2b(line.encode("utf-8", "backslashreplace"), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Cursor:
    """The last event handled: its time and the digest of its line."""

    time: datetime
    line: str

    @classmethod
    def of(cls, event: Event) -> Cursor:
        return cls(event.time, digest(event.raw))

    def to_dict(self) -> dict[str, str]:
        return {"time": format_timestamp(self.time), "line": self.line}

    @classmethod
    def from_dict(cls, data: Any) -> Cursor | None:
        if not isinstance(data, dict) or not isinstance(data.get("line"), str):
            return None
        try:
            return cls(parse_timestamp(str(data.get("time"))), data["line"])
        except ValueError:
            return None


class JournalTail:
    """The journal's new events, one :meth:`poll` at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._mark = LiveMark()

    def start(self, cursor: Cursor | None) -> list[Event]:
        """The events after ``cursor`` (none when it is None: start at the end), oldest first."""
        self._mark = LiveMark(keep=True)  # (the live file kept open where the read stopped: polls go on from there)
        found = list(read_events(self.path, mark=self._mark))
        if cursor is None:
            after: list[Event] = []
        else:
            position = next((n for n, event in enumerate(found) if digest(event.raw) == cursor.line), None)
            if position is not None:
                after = found[position + 1 :]
            else:  # rotated away since: whatever is newer
                after = [event for event in found if event.time > cursor.time]
        self._open(skip_read=True)
        return after

    def last(self) -> Event | None:
        """The newest event in the journal (to start a cursor at the end)."""
        newest = None
        for newest in read_events(self.path):  # noqa: B007 - the last one is wanted
            pass
        return newest

    def _open(self, *, skip_read: bool) -> None:
        self.close()
        kept, self._mark.kept = self._mark.kept, None
        if skip_read and kept is not None:  # where start's read of the live file stopped, even if it rotated since
            handle = os.fdopen(kept[0], "rb")  # (kept open between polls)
            handle.seek(kept[1])
            self._handle, self._inode, self._partial = handle, os.fstat(handle.fileno()).st_ino, b""
            self._mark = LiveMark()
            return
        if kept is not None:
            os.close(kept[0])
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except FileNotFoundError:
            self._mark = LiveMark()
            return
        self._handle, self._inode, self._partial = handle, os.fstat(handle.fileno()).st_ino, b""
        if not skip_read:
            self._mark = LiveMark()

    def _lines(self, between: bytes = b"") -> list[Event]:
        """The events of the complete lines read now (after ``between``: the files rotated into since the last look,
        whole)."""
        assert self._handle is not None
        data = between + self._partial + self._handle.read()
        *complete, self._partial = data.split(b"\n")
        out = []
        for raw in complete:
            text = raw.decode("utf-8", errors="replace")
            if self._mark.already_read(text):
                continue
            event = parse_line(raw)
            if event is not None:
                out.append(event)
        return out

    def poll(self) -> list[Event]:
        """The events appended since the last look."""
        if self._handle is None:
            self._open(skip_read=False)
            if self._handle is None:
                return []
        out = self._lines()
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            return out
        if current != self._inode:  # rotated: the old file's last lines were read above; now the new one
            old = self._inode
            self._open(skip_read=False)
            if self._handle is not None:
                # (rotated more than once since the last look: the whole files in between, oldest first)
                out += self._lines(_rotated_since(self.path, old, self._inode))
        return out

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        self._handle = None
