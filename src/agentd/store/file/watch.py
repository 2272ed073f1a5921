"""File events that wake a daemon at once: the queue changed, or a lease was released or lost its last holder.

The events of a process's own lease files (its tasks' supervisors ending, its own releases) are left out: the process
knows of those already.

On Linux, inotify through :mod:`agentd.store.file.inotify` and one thread that waits on its descriptor; watchdog where
inotify is missing. The folders are watched, not the files: the queue is replaced by a rename. The close of a lease
file's last writable descriptor is the moment its flock is released, so a peer's death is seen immediately. The kernel
reports that close under the name the descriptor was opened by: the lease's own for a file created by name,
``#<inode>`` for one made unnamed (``O_TMPFILE``) and named later, the spare's for one reused from a spare (a
daemon's claims make theirs those two ways; until round 24 their closes were taken for junk, and a peer's death was
seen only by the daemon's check of peers' leases, every second while any exist, or its next look). An
overflow of the kernel's event queue wakes the daemon as any change does (it looks and sees what changed); the kernel's
limits on watches reached, or a watch lost, leave polling on the interval, the fallback that is always there.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading

from agentd.store.file import inotify
from agentd.wakeup import WakeUp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

log = logging.getLogger(__name__)

# What each folder is watched for. Opens and read-only closes (every reader's) are left out in the kernel, not in
# Python. So are writes (IN_MODIFY) and, in the queue's folder, creations: a queue replaced by a rename is a move, one
# written in place is seen when its writer closes it; an event per write() of any file in the folder (a log, an agent's
# work beside the queue) would wake the watch's thread for nothing.
_QUEUE_EVENTS = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM
_STATE_EVENTS = inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM | inotify.IN_DELETE
_LEASE_EVENTS = inotify.IN_CLOSE_WRITE | inotify.IN_DELETE
# (queue, reason) for each "file events unavailable" said: said again only once the watch has worked meanwhile.
_REFUSED: set[tuple[str, str]] = set()
_GONE = inotify.IN_IGNORED | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_UNMOUNT


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
        own_file: Callable[[str], bool] | None = None,
    ) -> None:
        self.queue = os.path.realpath(queue)
        self.leases = os.path.realpath(leases)
        self.state = os.path.realpath(state) if state is not None else None
        self.wake = wake
        self.own = own  # whether the events of a task's lease file are this process's own (left out)
        self.own_file = own_file  # the same for a lease file's close reported under another name (see _path_reason)
        self._inotify: inotify.Inotify | None = None
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        self._stop: WakeUp | None = None  # what stops the thread (an eventfd: under a low `ulimit -n` every one counts)
        self._thread: threading.Thread | None = None
        self._observer: Any = None  # watchdog's, where inotify is missing

    def start(self) -> bool:
        """Start watching; False when file events are unavailable, so only polling is left (and a log line, once
        per reason until a start works: a daemon tries again on its interval)."""
        try:
            self._start_inotify()
        except inotify.Unavailable:
            self._close()
            if not self._start_watchdog():
                return False
        except OSError as exc:  # the kernel's limits (max_user_instances, max_user_watches) among others
            self._close()
            self._unavailable(exc)
            return False
        _REFUSED.difference_update({said for said in tuple(_REFUSED) if said[0] == self.queue})
        return True

    def _unavailable(self, exc: BaseException) -> None:
        """Say that file events are unavailable, once per reason for this queue: a daemon tries again on its
        interval (the kernel's limit may have been reached by others, who let go)."""
        said = (self.queue, str(exc))
        if said not in _REFUSED:
            _REFUSED.add(said)
            log.warning("file events unavailable (%s); polling every interval", exc)

    def _start_inotify(self) -> None:
        masks: dict[str, int] = {os.path.dirname(self.queue): _QUEUE_EVENTS}
        if os.path.isdir(self.leases):
            masks[self.leases] = masks.get(self.leases, 0) | _LEASE_EVENTS
        if self.state is not None and os.path.isdir(os.path.dirname(self.state)):
            folder = os.path.dirname(self.state)
            masks[folder] = masks.get(folder, 0) | _STATE_EVENTS
        self._inotify = inotify.Inotify()
        for folder, mask in masks.items():
            self._folders[self._inotify.add(folder, mask)] = folder
        self._stop = WakeUp()
        self._thread = threading.Thread(target=self._run, args=(self._stop.fileno(),), name="agentd-watch", daemon=True)
        self._thread.start()

    def _run(self, stop_r: int) -> None:
        # A signal for the process is the main thread's: one the kernel handed to this thread, asleep in poll(), would
        # have its Python handler wait until the main thread next woke.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        source = self._inotify
        assert source is not None
        poller = select.poll()
        poller.register(source.fd, select.POLLIN)
        poller.register(stop_r, select.POLLIN)
        try:
            while True:
                ready = poller.poll()
                if any(fd == stop_r for fd, _ in ready):
                    return
                reasons: dict[str, None] = {}  # (in order, each once per read)
                for wd, mask, name in source.read():
                    reason = self._reason(wd, mask, name)
                    if reason:
                        reasons[reason] = None
                for reason in reasons:
                    self.wake(reason)
        except OSError as exc:  # (the descriptor failing: nothing to do but poll)
            log.warning("file events stopped (%s); polling every interval", exc)

    def _reason(self, wd: int, mask: int, name: str) -> str | None:
        """Why an event wakes the daemon (None: it does not)."""
        if mask & inotify.IN_Q_OVERFLOW:
            # Events were lost: look at everything. "lease" is the file event a store never takes for its own write.
            return "lease"
        folder = self._folders.get(wd)
        if folder is None:
            return None
        if mask & _GONE:
            if mask & inotify.IN_IGNORED:
                del self._folders[wd]
                log.warning("file events: %s is no longer watched; polling every interval", folder)
            return "lease"  # a watched folder removed or moved: whatever it held changed
        return self._path_reason(
            folder,
            name,
            queue=bool(mask & _QUEUE_EVENTS),
            state=bool(mask & _STATE_EVENTS),
            lease=bool(mask & _LEASE_EVENTS),
            closed=bool(mask & inotify.IN_CLOSE_WRITE),
        )

    def _path_reason(
        self, folder: str, name: str, *, queue: bool, state: bool, lease: bool, closed: bool = False
    ) -> str | None:
        """Why a change to ``name`` in ``folder`` wakes the daemon (None: it does not); ``queue``, ``state`` and
        ``lease``: whether the event is one of the kinds that count for the queue, the state file or a lease file;
        ``closed``: whether it is the close of a file open for writing."""
        path = os.path.join(folder, name)
        if queue and path == self.queue:
            return "queue"
        if state and path == self.state:
            return "state"  # a pause or resume: written by rename
        if lease and folder == self.leases and name.endswith(".json"):  # (a folder: junk removed)
            if self.own is not None and self.own(name[: -len(".json")]):
                return None
            return "lease"
        if closed and folder == self.leases and name.startswith(("#", ".spare-")):
            # The close of a lease whose file was opened before it had the lease's name: made unnamed (the kernel
            # reports it as "#<inode>") or reused from a spare (under the spare's name). Its holder's end, a death
            # too, frees its lock: as for a lease's own name, unless it is this process's own.
            if self.own_file is not None and self.own_file(name):
                return None
            return "lease"
        return None

    def _start_watchdog(self) -> bool:
        """Where inotify is missing: watchdog's observer (kqueue, FSEvents or its own polling)."""
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer

            watcher = self

            class Handler(FileSystemEventHandler):
                def on_any_event(self, event: FileSystemEvent) -> None:
                    for path in (event.src_path, getattr(event, "dest_path", "") or ""):
                        if path:
                            folder, name = os.path.split(os.fsdecode(path))
                            reason = watcher._watchdog_reason(folder, name, event.event_type)
                            if reason:
                                watcher.wake(reason)
                                return

            observer = Observer()
            handler = Handler()
            folders = {os.path.dirname(self.queue), self.leases if os.path.isdir(self.leases) else ""}
            if self.state is not None and os.path.isdir(os.path.dirname(self.state)):
                folders.add(os.path.dirname(self.state))
            for folder in sorted(folders - {""}):
                observer.schedule(handler, folder, recursive=False)
            observer.daemon = True
            observer.start()
        except Exception as exc:  # any failure here only costs latency
            self._unavailable(exc)
            return False
        self._observer = observer
        return True

    def _watchdog_reason(self, folder: str, name: str, kind: str) -> str | None:
        """:meth:`_path_reason` for a watchdog event of ``kind`` (its ``event_type``)."""
        return self._path_reason(
            folder,
            name,
            queue=kind in ("moved", "closed"),
            state=kind in ("created", "moved", "deleted"),
            lease=kind in ("closed", "deleted"),
        )

    def stop(self, hand_off: Callable[[int], object] | None = None) -> None:
        """Stop the watch's thread and close its descriptors (``hand_off``: see :meth:`inotify.Inotify.close`)."""
        if self._thread is not None:
            if self._stop is not None:
                self._stop.set()
            self._thread.join(timeout=2)
            self._thread = None
        self._close(hand_off)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None

    def _close(self, hand_off: Callable[[int], object] | None = None) -> None:
        if self._stop is not None:
            self._stop.close()
            self._stop = None
        if self._inotify is not None:
            self._inotify.close(hand_off)
            self._inotify = None
        self._folders.clear()
