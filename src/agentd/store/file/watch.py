"""File events that wake a daemon at once: the queue changed, or a lease was released or lost its last holder.

The events of a process's own lease files (its tasks' supervisors ending, its own releases) are left out: the process
knows of those already.

Uses watchdog (inotify on Linux). The close of a lease file's last writable descriptor is the moment its flock is
released, so a peer's death is seen immediately; polling on the interval stays as the fallback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(
        self,
        queue: Path,
        leases: Path,
        wake: Callable[[str], None],
        state: Path | None = None,
        own: Callable[[str], bool] | None = None,
    ) -> None:
        self.queue = os.path.realpath(queue)
        self.leases = os.path.realpath(leases)
        self.state = os.path.realpath(state) if state is not None else None
        self.wake = wake
        self.own = own  # whether the events of a task's lease file are this process's own (left out)

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = {os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")}
        if self.queue in paths and event.event_type in ("moved", "closed"):
            self.wake("queue")
            return
        if self.state is not None and self.state in paths and event.event_type in ("created", "moved", "deleted"):
            self.wake("state")  # a pause or resume: written by rename
            return
        if isinstance(event, FileClosedEvent | FileDeletedEvent | DirDeletedEvent):  # a folder: junk a person removed
            parent, name = os.path.split(os.fsdecode(event.src_path))
            if parent == self.leases and name.endswith(".json"):
                if self.own is not None and self.own(name[: -len(".json")]):
                    return
                self.wake("lease")


class Watcher:
    """Watches the queue file, the lease folder and the project's state file (pauses); calls ``wake(reason)`` from its
    own thread."""

    def __init__(
        self,
        queue: Path,
        leases: Path,
        wake: Callable[[str], None],
        state: Path | None = None,
        own: Callable[[str], bool] | None = None,
    ) -> None:
        self._observer: Any = None
        self._queue = queue
        self._leases = leases
        self._state = state
        self._wake = wake
        self._own = own

    def start(self) -> bool:
        """Start watching; False (and a log line) when file events are unavailable, so only polling is left."""
        try:
            observer = Observer()
            handler = _Handler(self._queue, self._leases, self._wake, self._state, self._own)
            # Opens and read-only closes (every reader's) are filtered out in the kernel watch, not in Python. So are
            # writes (IN_MODIFY) and creations: a queue replaced by a rename is a move, one written in place is seen
            # when its writer closes it; a write event per write() of any file in the folder (a log, an agent's
            # work beside the queue) cost the watch's threads ~0.2 ms each, for nothing.
            queue_events: list[type[FileSystemEvent]] = [FileMovedEvent, FileClosedEvent]
            lease_events: list[type[FileSystemEvent]] = [FileClosedEvent, FileDeletedEvent, DirDeletedEvent]
            state_events: list[type[FileSystemEvent]] = [FileCreatedEvent, FileMovedEvent, FileDeletedEvent]
            folder = os.path.dirname(os.path.realpath(self._queue))
            state_folder = None
            if self._state is not None and self._state.parent.is_dir():
                state_folder = os.path.realpath(self._state.parent)
            if state_folder == folder:  # the state file beside the queue: its events in the same watch
                queue_events = [*queue_events, FileCreatedEvent, FileDeletedEvent]
            observer.schedule(handler, folder, recursive=False, event_filter=queue_events)
            if self._leases.is_dir():
                observer.schedule(handler, os.path.realpath(self._leases), recursive=False, event_filter=lease_events)
            if state_folder is not None and state_folder != folder:
                observer.schedule(handler, state_folder, recursive=False, event_filter=state_events)
            observer.daemon = True
            observer.start()
        except Exception as exc:  # any failure here only costs latency
            log.warning("file events unavailable (%s); polling every interval", exc)
            return False
        self._observer = observer
        return True

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
