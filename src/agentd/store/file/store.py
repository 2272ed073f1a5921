"""The file store: one project's :class:`~agentd.store.base.Store` over the files of :mod:`agentd.store.file`.

It wraps, and does not re-implement: the queue file (:class:`~agentd.store.file.queuefile.QueueStore`: the lock,
format-preserving atomic writes, hand-edit detection), the lease folder (:class:`~agentd.store.file.leases.LeaseDir`),
the event journal (:mod:`agentd.store.file.journal`) and the PID files (:mod:`agentd.store.file.pidfile`). What it adds
is the project state, ``<state_dir>/state.json``: read inside a transaction under the queue lock on first use, and
written (temporary file, fsync, rename, fsync of the folder) under the same lock right after the queue, so two
transactions never interleave their changes to it. It is never kept inside the queue file, which people edit.

A transaction is one locked :meth:`QueueStore.edit`: its :class:`FileTxn` wraps the edit's
:class:`~agentd.store.file.queuefile.Draft` (tasks copied only when changed) and the lease folder.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime

from agentd.core.clock import Clock, SystemClock
from agentd.errors import FileAccessError, StateInvalid
from agentd.lazylog import get_logger
from agentd.store.file.atomic import replace_file
from agentd.store.file.queuefile import Draft, QueueStore, Snapshot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, TypeVar

    T = TypeVar("T")

    # Imported where first used: `agentd queue add` and `queue set-status` change the queue alone, and the scheduler,
    # the lease folder, the journal and the PID files cost a CLI call as much as its own work (docs/benchmarks.md).
    from agentd.config import Config
    from agentd.core.scheduler import LeaseObservation
    from agentd.core.workflow import Workflow
    from agentd.store.base import Event, Filter, LeaseRecord, Probe
    from agentd.store.file.journal import Journal
    from agentd.store.file.leases import Held, LeaseDir
    from agentd.store.file.pidfile import PidFile
    from agentd.store.file.watch import Watcher

log = get_logger(__name__)

STATE_NAME = "state.json"


class FileTxn:
    """One try of a transaction's change: the queue's :class:`Draft`, the lease folder, the project state."""

    def __init__(self, store: FileStore, draft: Draft, now: datetime) -> None:
        self._store = store
        self._draft = draft
        self._now = now
        self._state: dict[str, Any] | None = None  # read on first use
        self._state_read: dict[str, Any] | None = None

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def snapshot(self) -> Snapshot:
        return self._draft.read

    @property
    def draft(self) -> Draft:
        """The queue document being changed (file-store callers that work on the document as a whole)."""
        return self._draft

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state_read = self._store.state()
            self._state = json.loads(json.dumps(self._state_read))  # the change's own copy
        return self._state

    def state_change(self) -> dict[str, Any] | None:
        """The project state to write, when the change changed it."""
        if self._state is None or self._state == self._state_read:
            return None
        return self._state

    def task(self, task_id: str) -> dict[str, Any] | None:
        return self._draft.task(task_id)

    def add(self, task: dict[str, Any], parent: str | None = None) -> None:
        self._draft.add(task, parent)

    def remove(self, task_id: str) -> dict[str, Any] | None:
        return self._draft.remove(task_id)

    def ids(self) -> list[str]:
        return self._draft.ids()

    def replace(self, queue: dict[str, Any]) -> None:
        self._draft.replace(queue)

    def leases(self) -> dict[str, LeaseObservation]:
        return self._store.leasedir.observe_all()

    def read_lease(self, task_id: str) -> LeaseRecord | None:
        return self._store.leasedir.read_record(task_id)

    def issue_tokens(self, floors: list[int]) -> list[int]:
        return self._store.leasedir.issue_tokens(floors)

    def claim(self, record: LeaseRecord) -> Held | None:
        return self._store.leasedir.acquire(record)

    def break_free(self, task_id: str) -> bool:
        return self._store.leasedir.break_free(task_id)

    def break_held(self, task_id: str) -> None:
        self._store.leasedir.break_held(task_id)

    def holders(self, task_id: str) -> list[int]:
        return self._store.leasedir.holders(task_id)

    def report(self, task_id: str, problem: str) -> None:
        self._store.leasedir.report(task_id, problem)


class _Watching:
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def stop(self, hand_off: Callable[[int], object] | None = None) -> None:
        self._watcher.stop(hand_off)


class FileStore:
    """The JSON queue file, the lease folder, the event journal, the PID files and ``state.json`` of one project."""

    def __init__(self, config: Config, *, clock: Clock | None = None, queue_path: str | Path | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.queue = QueueStore(
            queue_path or config.queue_file, workflow=config.workflow, lock_timeout=config.lock_timeout
        )
        self._leasedir: LeaseDir | None = None

    # (Paths made when asked for: a queue command uses none, and imports no pathlib; see agentd.config.Config)

    @property
    def journal_file(self) -> str:
        """``journal_path`` as a string (`agentd status` reads it without importing pathlib)."""
        return os.path.join(self.config.state_folder, "events.jsonl")

    @property
    def run_folder(self) -> str:
        """``run_dir`` as a string."""
        return os.path.join(self.config.state_folder, "run")

    @property
    def state_file(self) -> str:
        """``state_path`` as a string."""
        return os.path.join(self.config.state_folder, STATE_NAME)

    @property
    def journal_path(self) -> Path:
        return self.config.state_dir / "events.jsonl"

    @property
    def run_dir(self) -> Path:
        return self.config.state_dir / "run"

    @property
    def state_path(self) -> Path:
        return self.config.state_dir / STATE_NAME

    @property
    def leasedir(self) -> LeaseDir:
        """The lease folder (opened on first use)."""
        if self._leasedir is None:
            from agentd.store.file.leases import LeaseDir

            self._leasedir = LeaseDir(self.config.leases_folder, self.config.root_folder, self.clock)
        return self._leasedir

    # -- the queue -----------------------------------------------------------------------------------------------------

    @property
    def where(self) -> Path:
        return self.queue.path

    @property
    def workflow(self) -> Workflow | None:
        return self.queue.workflow

    @workflow.setter
    def workflow(self, value: Workflow | None) -> None:
        self.queue.workflow = value

    def create(self, queue: dict[str, Any]) -> bool:
        """Write the queue file if there is none, and make the lease folder."""
        created = self.queue.create(queue)
        self.config.leases_dir.mkdir(parents=True, exist_ok=True)
        return created

    def read(self, *, lenient: bool = False) -> Snapshot:
        return self.queue.read(lenient=lenient)

    def archived(self, task_id: str) -> tuple[dict[str, Any], str | None] | None:
        return self.queue.archive.read().find(task_id)

    def archive_tasks(
        self, select: Callable[[dict[str, Any]], bool], now: datetime, *, dry_run: bool = False
    ) -> list[str]:
        return self.queue.archive_tasks(select, now, dry_run=dry_run)

    @property
    def archive_where(self) -> Path:
        return self.queue.archive.path

    def prepare(self, claims: int) -> None:
        from agentd.store.file.leases import descriptors_to_spare

        self.leasedir.prepare(claims)
        self.queue.keep_versions(self.config.state_folder)  # (from its second write on: see spare; once)
        if descriptors_to_spare():  # (one descriptor kept: not under a tiny `ulimit -n`)
            self.queue.prepare_write()

    def transaction(self, change: Callable[[FileTxn], T], *, settle_later: bool = False) -> T:
        last: list[FileTxn] = []

        def attempt(draft: Draft) -> T:
            txn = FileTxn(self, draft, self.clock.now())
            last[:] = [txn]
            return change(txn)

        with self.queue.locked():  # (the edit takes it again: the lock counts) the state is written under it too
            outer = self.queue.folder_sync_later  # (a transaction within a transaction of this thread's)
            self.queue.folder_sync_later = settle_later  # (the queue's rename: its folder fsynced by settle)
            try:
                result = self.queue.edit(attempt)
                state = last[0].state_change() if last else None
                if state is not None:
                    self._write_state(state)
            except BaseException:
                self.queue.sync_folder()  # (a rename that stands: durable before the error goes up)
                raise
            finally:
                self.queue.folder_sync_later = outer
        return result

    def settle(self) -> None:
        self.queue.sync_folder()

    def is_own_write(self) -> bool:
        """Whether the queue file is the one this store wrote last (a file event it caused itself)."""
        return self.queue.is_own_write()

    # -- leases --------------------------------------------------------------------------------------------------------

    def leases(self) -> dict[str, LeaseObservation]:
        return self.leasedir.observe_all()

    def lease_ids(self) -> list[str]:
        return list(self.leasedir.task_ids())

    def read_lease(self, task_id: str) -> LeaseRecord | None:
        return self.leasedir.read_record(task_id)

    def holders(self, task_id: str) -> list[int]:
        return self.leasedir.holders(task_id)

    def report(self, task_id: str, problem: str) -> None:
        self.leasedir.report(task_id, problem)

    # -- the journal ---------------------------------------------------------------------------------------------------

    def journal(self, role: str | None = None, logger: Any = None) -> Journal:
        from agentd.store.file.journal import Journal

        return Journal(
            self.journal_path,
            self.clock,
            role,
            logger or log,
            max_bytes=self.config.log.max_bytes,
            backups=self.config.log.backups,
        )

    def events(self, where: Filter | None = None) -> Iterator[Event]:
        from agentd.store.file.journal import read_events

        return read_events(self.journal_path, where)

    def follow(
        self, where: Filter | None = None, *, last: int | None = None
    ) -> tuple[Iterator[Event], Iterator[Event]]:
        from agentd.store.file.journal import LiveMark, follow, parse_line, read_events, read_last

        mark = LiveMark(keep=True)
        if last is not None:  # (read from the end back, as far as it takes)
            backlog: Iterator[Event] = iter(read_last(self.journal_path, where, last, mark=mark))
        else:
            backlog = read_events(self.journal_path, where, mark=mark)

        def live() -> Iterator[Event]:
            # From where the backlog's read of the live file ended (it may have rotated since), else from the start
            # of the live file, skipping what the backlog read of it.
            kept, mark.kept = mark.kept, None
            for text in follow(self.journal_path, from_end=False, kept=kept):
                if kept is None and mark.already_read(text):
                    continue
                event = parse_line(text)
                if event is not None and (where is None or where.matches(event)):
                    yield event

        return backlog, live()

    # -- daemons -------------------------------------------------------------------------------------------------------

    def daemons(self) -> list[Probe]:
        from agentd.store.file.pidfile import pid_files, probe

        return [probe(path) for path in pid_files(self.run_folder)]

    def register(
        self,
        role: str,
        instance: str | None,
        *,
        started: datetime,
        interval: float | None,
        log: str | None,
        boot: float | None = None,
        beat_every: float | None = None,
    ) -> PidFile:
        from agentd.store.file.pidfile import PidFile, pid_path

        held = PidFile(pid_path(self.run_dir, role, instance), role, instance)
        held.acquire(started=started, interval=interval, log=log, boot=boot, beat_every=beat_every)
        return held

    # -- project state -------------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """``state.json`` as it is now ({} when there is none); StateInvalid when it does not parse."""
        try:
            with open(self.state_file, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise FileAccessError(self.state_path, "cannot read", exc.strerror or str(exc)) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateInvalid(self.state_path, None, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise StateInvalid(self.state_path, "$", f"expected a JSON object, found {type(data).__name__}")
        return data

    def _write_state(self, state: dict[str, Any]) -> None:
        """Replace ``state.json`` atomically (under the queue lock): readers see the old or the new file, never part."""
        target = self.state_path
        payload = (json.dumps(state, indent=2, ensure_ascii=False) + "\n").encode("utf-8")  # keys in their order
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for leftover in target.parent.glob(f".{target.name}.*.agentd-tmp"):  # a dead writer's (we hold the lock)
                with contextlib.suppress(OSError):
                    leftover.unlink()
        except OSError as exc:
            raise FileAccessError(target, "cannot write", exc.strerror or str(exc)) from None
        replace_file(target, payload, fault="state.before-rename")

    # -- clock, wake-ups -----------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def signature(self) -> tuple[object, ...]:
        """The identity of the queue file and the journal, and the lease folder's mtime (``stat`` only)."""
        marks: list[object] = []
        for path in (self.queue.path, self.journal_path):
            try:
                st = os.stat(path)
                marks.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                marks.append(None)
        try:
            marks.append(os.stat(self.leasedir.path).st_mtime_ns)
        except OSError:
            marks.append(None)
        return tuple(marks)

    def watch(self, wake: Callable[[str], None]) -> _Watching | None:
        """File events: the queue changed (not by this store's own last write), a lease file was closed or went (not
        one this store holds or just released), or the project state was replaced (a pause or a resume)."""

        def woken(reason: str) -> None:
            if reason == "queue" and self.queue.is_own_write():
                return  # the event of this store's own write: whoever wrote it saw everything it was based on
            wake(reason)

        from agentd.store.file.watch import Watcher  # inotify: only for a process that waits for changes

        watcher = Watcher(
            self.queue.path,
            self.leasedir.path,
            woken,
            self.state_path,
            self.leasedir.own_events,
            self.leasedir.own_file_events,
        )
        with contextlib.suppress(OSError):
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            self.leasedir.path.mkdir(parents=True, exist_ok=True)
        return _Watching(watcher) if watcher.start() else None

    def close(self) -> None:
        self.queue.close()
        if self._leasedir is not None:
            self._leasedir.close()
