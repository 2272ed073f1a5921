"""The daemon's part in worktree mode, off its main loop: remove the worktrees of tasks that reached a final status
(per ``keep`` and ``delete_branch``) and repair what a crash left (at start and after each recovery), on a worker
thread of its own. The daemon only hands it work; git never runs on the daemon's loop. Each problem is journalled
once (``workspace-error``), and the work goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

from agentd.config import Config
from agentd.store.base import Journal, Store
from agentd.workspaces.settings import owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("agentd.workspaces")

_STOP = ("stop", None, False)


class Janitor:
    """Removes final tasks' worktrees and repairs after crashes, on a thread of its own."""

    def __init__(self, config: Config, journal: Journal, store: Store) -> None:
        self.config = config
        self.store = store  # the daemon's: what the tasks' statuses are
        from agentd.workspaces.manager import Workspaces  # (git, shutil, bz2, lzma: only in worktree mode)

        self.spaces = Workspaces(config.root, config.workspaces, config.state_dir)
        self.journal = journal
        self._jobs: queue.SimpleQueue[tuple[str, str | None, bool]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reported: set[str] = set()

    @classmethod
    def for_config(cls, config: Config, journal: Journal, store: Store) -> Janitor | None:
        """A janitor in worktree mode, else None."""
        return cls(config, journal, store) if config.workspaces.enabled else None

    def start(self) -> None:
        """Start the worker and ask it for a repair (what a crash before this start may have left)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="agentd-workspaces", daemon=True)
            self._thread.start()
        self.repair()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the work handed over so far (up to ``timeout`` s) and end the worker."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def repair(self) -> None:
        self._jobs.put(("repair", None, False))

    def after_pass(self, finished: Iterable[tuple[Any, Any]], recovered: Iterable[Any]) -> None:
        """Hand over the work one pass calls for: the worktrees of runs whose task is now final, a repair after a
        recovery (its worker died: a worktree or merge may be half-made)."""
        workflow = self.config.workflow
        for run, decided in finished:
            status = getattr(decided, "status", None)
            if status in workflow.done_statuses or status in workflow.final_statuses:
                self._jobs.put(("remove", run.task_id, status not in workflow.done_statuses))
        if any(True for _ in recovered):
            self.repair()

    def _loop(self) -> None:
        while True:
            job, task_id, failed = self._jobs.get()
            if job == "stop":
                return
            try:
                if job == "repair":
                    for line in self.spaces.repair():
                        self.journal.emit("workspace-repaired", line)
                    self._sweep()
                elif task_id is not None:
                    self._remove(task_id, failed)
            except Exception as exc:  # reported once; the daemon goes on
                text = str(exc)
                if text not in self._reported:
                    self._reported.add(text)
                    self.journal.emit(
                        "workspace-error", f"workspaces: {text}", level=logging.ERROR, task=task_id, error=text
                    )
            for line in self.spaces.take_cleared():  # lock files a killed git left, removed on the way
                self.journal.emit("workspace-repaired", line)

    def _sweep(self) -> None:
        """Remove what a daemon killed before its removals left: worktrees of tasks that are final by now."""
        workflow = self.config.workflow
        statuses = {task.id: task.status for task in self.store.read().tasks}
        for info in self.spaces.worktrees():
            status = statuses.get(info.task_id or "")
            if info.task_id is None or status is None:
                continue  # a task no longer in the queue: doctor reports it, `agentd workspace clean` removes it
            if status in workflow.done_statuses or status in workflow.final_statuses:
                self._remove(info.task_id, status not in workflow.done_statuses)

    def _remove(self, task_id: str, failed: bool) -> None:
        settings = self.spaces.settings
        workflow = self.config.workflow
        final = set(workflow.done_statuses) | set(workflow.final_statuses)
        snapshot = self.store.read()
        by_id = {task.id: task for task in snapshot.tasks}

        def whose(other: str) -> str:
            parent = lambda t: getattr(by_id.get(t), "parent", None)  # noqa: E731
            return owner(other, parent, lambda t: (snapshot.task(t) or {}).get("workspace"))

        task_id = whose(task_id)  # a subtask's end may free its parent's worktree
        sharing = [task for task in snapshot.tasks if whose(task.id) == task_id]
        if any(task.status not in final for task in sharing):
            return  # the task, or a subtask working in its worktree, is not final yet
        failed = failed or any(task.status not in workflow.done_statuses for task in sharing)
        if settings.keeps(failed) or not self.spaces.path_of(task_id).exists():
            return
        if self.spaces.remove(task_id):
            kept = "deleted" if settings.delete_branch else "kept"
            self.journal.emit(
                "workspace-removed",
                f"removed the worktree of {task_id} (its task is final; branch {settings.branch_for(task_id)} {kept})",
                task=task_id,
            )
