"""Everything the dashboard reads or changes, through the code the CLI uses; the one module of ``web/`` that touches
the store.

Reads and changes go through the project's :class:`~agentd.store.base.Store`; changes are the CLI's own: the same
pure edits of :mod:`agentd.core.edits` run in the same store transaction, and answers, pauses and resumes are
:mod:`agentd.actions`, which ``agentd queue answer``, ``agentd pause`` and ``agentd resume`` call too, so a change
from the page and one from a terminal cannot differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentd import actions
from agentd.config import Config
from agentd.core import control, edits
from agentd.core.clock import Clock
from agentd.core.model import valid_task_id
from agentd.core.scheduler import LeaseObservation
from agentd.errors import AgentdError, TaskNotFound
from agentd.report import status as status_report
from agentd.report import usage
from agentd.service import background as service
from agentd.store import open_store
from agentd.store.base import Event, Filter, Probe, Snapshot, Store, Txn


@dataclass(frozen=True)
class RunLog:
    """One run's output log: ``<state>/logs/tasks/<task>/<token>.log``."""

    token: int
    path: Path
    size: int


class Source:
    """One project's data, read on demand (no state of its own beyond paths and a cached store)."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.store: Store = open_store(config, clock=clock)
        self.journal_path = config.state_dir / "events.jsonl"  # (the journal's live stream: see streams.journal)
        self.spend = usage.Tally.of(self.store)  # today's spend, read as the journal grows

    # -- reads ---------------------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now()

    def snapshot(self) -> Snapshot:
        """One read of the queue (AgentdError when it cannot be read or is invalid)."""
        return self.store.read()

    def leases(self) -> dict[str, LeaseObservation]:
        """Every lease file, observed (empty when the folder cannot be read)."""
        try:
            return self.store.leases()
        except (AgentdError, OSError):
            return {}

    def probes(self) -> list[Probe]:
        """Every role's daemons, as the store has them registered."""
        return service.daemons(self.config, None)

    def status(self) -> dict[str, Any]:
        """``agentd status --json``'s data."""
        return status_report.build(self.config, self.probes(), self.now(), self.store, self.spend)

    def task(self, task_id: str) -> dict[str, Any]:
        """The raw task as stored; TaskNotFound naming the queue."""
        raw = self.snapshot().task(task_id)
        if raw is None:
            raise TaskNotFound(task_id, self.store.where)
        return raw

    def events(self, where: Filter | None = None) -> Iterator[Event]:
        """The journal's events, oldest first."""
        return self.store.events(where)

    def _logs(self, task_id: str) -> Path:
        """The folder of a task's run logs; TaskNotFound for an id that is not a safe file name (``..``, ``/``)."""
        if not valid_task_id(task_id):
            raise TaskNotFound(task_id, self.store.where)
        return self.config.state_dir / "logs" / "tasks" / task_id

    def run_logs(self, task_id: str) -> list[RunLog]:
        """A task's run logs, by token."""
        folder = self._logs(task_id)
        found = []
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                stem = entry.name.removesuffix(".log")
                if entry.name.endswith(".log") and stem.isdigit():
                    with contextlib.suppress(OSError):
                        found.append(RunLog(int(stem), entry, entry.stat().st_size))
        return sorted(found, key=lambda run: run.token)

    def run_log(self, task_id: str, token: int) -> Path:
        """The path of one run's log (it may not exist)."""
        return self._logs(task_id) / f"{token}.log"

    def signature(self) -> tuple[object, ...]:
        """What changes when the queue, the journal or a lease changes (stat only: cheap enough to poll)."""
        return self.store.signature()

    # -- changes: exactly the CLI's (agentd queue retry / cancel / set-status) -----------------------------------------

    def _transact(self, change: Callable[[Txn], Any]) -> Any:
        try:
            return self.store.transaction(change)
        except TaskNotFound as exc:
            raise TaskNotFound(exc.task_id, self.store.where) from None

    def retry(self, task_id: str) -> str:
        """``agentd queue retry``; returns the new status."""
        workflow = self.config.workflow
        return str(self._transact(lambda txn: edits.retry(txn, task_id, workflow)))

    def cancel(self, task_id: str, note: str | None) -> str:
        """``agentd queue cancel``; returns the new status."""
        workflow = self.config.workflow
        return str(self._transact(lambda txn: edits.cancel(txn, task_id, workflow, note)))

    def set_status(self, task_id: str, status: str, note: str | None) -> str:
        """``agentd queue set-status``; returns the old status."""
        return str(self._transact(lambda txn: edits.set_status(txn, task_id, status, note=note)))

    # -- people in the loop: exactly the CLI's (agentd queue answer, agentd pause, agentd resume) ---------------------

    def answer(self, task_id: str, text: str, by: str) -> actions.Answered:
        """``agentd queue answer``."""
        return actions.answer(self.store, self.config.workflow, task_id, text, by, self.now())

    def pause(self, roles: list[str], for_: str | None, until: str | None, reason: str, by: str) -> list[control.Pause]:
        """``agentd pause`` (no roles: every role); ValueError for a bad ``for_`` or ``until``, RoleNotFound."""
        now = self.now()
        end = actions.pause_end(now, for_, until)
        return actions.pause(self.store, actions.check_roles(self.config.workflow, roles), now, end, reason, by)

    def resume(self, roles: list[str], by: str) -> actions.Resumed:
        """``agentd resume`` (no roles: every pause)."""
        return actions.resume(self.store, actions.check_roles(self.config.workflow, roles), self.now(), by)
