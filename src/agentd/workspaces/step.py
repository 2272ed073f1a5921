"""The workspace step: ``python -m agentd.workspaces.step SPEC -- COMMAND...``, run by a task's supervisor.

It runs inside the task's process group, so cancel, timeouts and the death of the daemon stop it like the command:

1. makes (or reuses) the task's worktree under the git lock, and in a new one runs ``setup`` before marking it ready
   (a worktree killed half-made is made again on the next run: :meth:`Workspaces.ensure`);
2. runs the command there (its exit code or signal is the step's own);
3. for a role that merges, after a success merges the task's branch into base. A conflict leaves base untouched and
   writes the result file (``{"status": on_conflict, "note": "merge conflict in ..."}``) and a ``merge-conflict``
   event; a base checkout in the way (uncommitted changes there) is retried every few seconds, spending no attempt,
   until it clears or the role's timeout ends the run.

A problem with the workspace itself (no base branch, git failing, ``setup`` failing) ends the run with exit 125 (a
failed attempt, never one of the role's ``outcomes`` codes in practice) and a result file whose note says why, so the
task's status note names it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentd import faults
from agentd.store.file.sidelock import SidecarLock
from agentd.workspaces.git import GitError
from agentd.workspaces.manager import Workspaces
from agentd.workspaces.settings import WorkspaceSettings

log = logging.getLogger("agentd.workspaces")

WORKSPACE_FAILED = 125  # not 1: a tester's outcomes often map 1 (tests fail) to a status of its own
NOT_FOUND = 127
MERGE_RETRY_FIRST = 2.0  # s before trying again a merge the base's checkout was in the way of ...
MERGE_RETRY_MAX = 60.0  # ... doubled up to this


class _Journal:
    """The event journal, imported only when there is an event to write: most runs reuse a ready worktree and write
    none, and the journal's imports (the config and its schemas) would cost every run a good part of a second."""

    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self._journal: Any = None

    def emit(self, event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
        if self._journal is None:
            from agentd.core.clock import SystemClock
            from agentd.store.file.journal import Journal

            self._journal = Journal(self.path, SystemClock(), self.role, log)
        self._journal.emit(event, message, level=level, **fields)


def _write_result(update: dict[str, Any]) -> None:
    """Merge ``update`` into the run's result file (written whole, then renamed: never half-written)."""
    where = os.environ.get("AGENTD_RESULT")
    if not where:
        return
    path = Path(where)
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text("utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    data.update(update)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, ensure_ascii=False) + "\n", "utf-8")
    os.replace(temp, path)


def _result_status() -> tuple[bool, str | None]:
    """(whether the command's result file reads, the status it names)."""
    where = os.environ.get("AGENTD_RESULT")
    if not where:
        return True, None
    try:
        data = json.loads(Path(where).read_text("utf-8"))
    except FileNotFoundError:
        return True, None
    except (OSError, ValueError):
        return False, None
    if not isinstance(data, dict):
        return False, None
    status = data.get("status")
    return True, status if isinstance(status, str) else None


def _fail(message: str) -> int:
    print(f"agentd workspace: {message}", file=sys.stderr, flush=True)
    _write_result({"note": message})
    return WORKSPACE_FAILED


def _prepare(spaces: Workspaces, owner: str, journal: _Journal) -> Path:
    """The owner's worktree, made and set up by one run at a time (subtasks sharing it may start together)."""
    guard = SidecarLock(spaces.state_dir / "workspaces" / f"{owner}.lock", 24 * 3600.0)
    guard.path.parent.mkdir(parents=True, exist_ok=True)
    guard.acquire()
    try:
        made = spaces.ensure(owner)
        if made.created:
            journal.emit(
                "workspace-created",
                f"made the worktree of {owner} at {made.path} on branch {made.branch}",
                task=owner,
                branch=made.branch,
                path=str(made.path),
            )
            setup = spaces.settings.setup
            if setup:
                done = subprocess.run(
                    list(setup), cwd=made.path, check=False, stdin=subprocess.DEVNULL, close_fds=False
                )  # (close_fds=False: the lease's descriptor goes down too, see _run)
                if done.returncode != 0:
                    raise _SetupFailed(f"setup {' '.join(setup)} failed in {made.path} (exit {done.returncode})")
            faults.point("workspace.after-setup")
            spaces.mark_ready(owner)
        return made.path
    finally:
        guard.release()


class _SetupFailed(Exception):
    pass


def _run(command: Sequence[str], cwd: Path) -> int:
    """Run the command; returns its exit code (a signal that killed it is passed on: the step dies of it too)."""
    try:
        # close_fds=False: the command inherits what this step did (its standard streams and the lease's locked
        # descriptor; everything Python opens here is close-on-exec), as it would run without a workspace: the
        # lease's lock lives as long as any process of the run, and a daemon finds by it what escaped the run.
        proc = subprocess.Popen(list(command), cwd=cwd, close_fds=False)
    except FileNotFoundError:
        print(f"agentd workspace: command not found: {command[0]}", file=sys.stderr, flush=True)
        return NOT_FOUND
    except PermissionError as exc:
        print(f"agentd workspace: cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        return 126
    while True:
        try:
            code = proc.wait()
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
    if code < 0:
        signum = -code
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    return code


def _report_cleared(spaces: Workspaces, journal: _Journal) -> None:
    """Journal the lock files a killed git left that the last git work removed."""
    for line in spaces.take_cleared():
        journal.emit("workspace-repaired", line)


def _merge(spaces: Workspaces, spec: dict[str, Any], journal: _Journal) -> int:
    owner, task = spec["owner"], spec["task"]
    readable, status = _result_status()
    if not readable or (status is not None and status != spec["on_success"]):
        return 0  # the command chose another status (or its result file is bad: the daemon says so)
    branch = spaces.settings.branch_for(owner)
    delay = MERGE_RETRY_FIRST
    waited = False
    while True:
        try:
            result = spaces.merge(owner, spec["merge"], message=f"Merge {branch} (task {task})")
        except (GitError, ValueError) as exc:
            return _fail(f"cannot merge: {exc}")
        finally:
            _report_cleared(spaces, journal)
        if result.merged:
            journal.emit("merged", f"{task}: {result.note}", task=task, branch=branch, commit=result.commit)
            return 0
        if result.retry:
            if not waited:
                journal.emit(
                    "merge-waiting",
                    f"{task}: {result.note}; trying again every few seconds",
                    level=logging.WARNING,
                    task=task,
                )
                waited = True
            time.sleep(delay)
            delay = min(delay * 2, MERGE_RETRY_MAX)
            continue
        paths = list(result.conflicts)
        conflict: dict[str, Any] = {"status": spec["on_conflict"], "note": result.note}
        if spec.get("hold"):  # on_conflict is the unblock rule's status: the reason keeps it there
            conflict["fields"] = {"blocked_reason": result.note}
        _write_result(conflict)
        journal.emit(
            "merge-conflict",
            f"{task}: {result.note}; {spaces.settings.base} left as it was; the task goes to {spec['on_conflict']}",
            level=logging.WARNING,
            task=task,
            branch=branch,
            paths=paths,
            status=spec["on_conflict"],
        )
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m agentd.workspaces.step SPEC -- COMMAND...", file=sys.stderr)
        return 2
    spec: dict[str, Any] = json.loads(args[0])
    command = args[2:]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the whole group gets them: let the command end
        signal.signal(signum, lambda *_: None)
    settings = WorkspaceSettings.from_config(spec["settings"])
    state_dir = Path(spec["state_dir"])
    spaces = Workspaces(Path(spec["root"]), settings, state_dir)
    journal = _Journal(state_dir / "events.jsonl", spec["role"])
    try:
        path = _prepare(spaces, spec["owner"], journal)
    except (GitError, _SetupFailed) as exc:
        return _fail(str(exc))
    except Exception as exc:  # a WorkspaceError (base missing, a folder in the way), a lock that timed out
        return _fail(str(exc))
    finally:
        _report_cleared(spaces, journal)
    code = _run(command, path)
    if code != 0 or "merge" not in spec:
        return code
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the command is done: a stop now ends the merge
        signal.signal(signum, signal.SIG_DFL)  # (a merge cut short leaves base as it was: the next run merges)
    return _merge(spaces, spec, journal)


if __name__ == "__main__":
    sys.exit(main())
