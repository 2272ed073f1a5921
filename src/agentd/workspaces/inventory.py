"""What worktrees a project has, whose task each belongs to, and which ones may go (for `agentd workspace` and
`agentd doctor`). Reading never changes anything; :func:`clean` removes only worktrees whose task is final or gone,
and never one with uncommitted changes unless forced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.config import Config
from agentd.workspaces.git import Git, GitError
from agentd.workspaces.manager import Workspaces, WorktreeInfo


@dataclass(frozen=True)
class Entry:
    """One task's worktree as `agentd workspace list` shows it."""

    task_id: str
    branch: str | None
    path: Path
    state: str  # ready | half-made (no ready mark: made again on the next run) | missing (its folder is gone)
    size: int | None  # bytes on disk (None: not measured, or gone)
    status: str | None  # its task's status; None: the task is no longer in the queue

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "branch": self.branch,
            "path": str(self.path),
            "state": self.state,
            "size": self.size,
            "status": self.status,
        }


def tree_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symbolic links not followed)."""
    total = 0
    for here, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(here, name)).st_size
            except OSError:
                continue
    return total


def _state(info: WorktreeInfo) -> str:
    if not info.exists:
        return "missing"
    return "ready" if info.ready else "half-made"


def inventory(config: Config, statuses: Mapping[str, str], *, sizes: bool = True) -> list[Entry]:
    """Every task worktree of the project, with its task's status from ``statuses`` (task id -> status)."""
    spaces = Workspaces(config.root, config.workspaces, config.state_dir)
    found = []
    for info in spaces.worktrees():
        if info.task_id is None:
            continue
        size = tree_bytes(info.path) if sizes and info.exists else None
        found.append(Entry(info.task_id, info.branch, info.path, _state(info), size, statuses.get(info.task_id)))
    return found


def why_cleanable(entry: Entry, final: Iterable[str]) -> str | None:
    """Why the worktree may go (its task is final, or no longer in the queue), or None while its task lives."""
    if entry.status is None:
        return "its task is no longer in the queue"
    if entry.status in set(final):
        return f"its task is {entry.status}"
    return None


def dirty(path: Path) -> bool:
    """Whether the worktree has changes not committed (they would be lost with it)."""
    try:
        return bool(Git(path).out("status", "--porcelain"))
    except GitError:
        return False


def clean(config: Config, entries: Iterable[Entry], *, dry_run: bool = False, force: bool = False) -> list[str]:
    """Remove the given worktrees (their branches stay unless delete_branch); one line per worktree."""
    spaces = Workspaces(config.root, config.workspaces, config.state_dir)
    lines = []
    for entry in entries:
        if entry.state != "missing" and not force and dirty(entry.path):
            lines.append(f"left {entry.path}: it has uncommitted changes (--force removes it anyway)")
            continue
        if dry_run:
            lines.append(f"would remove {entry.path} ({entry.task_id})")
            continue
        try:
            spaces.remove(entry.task_id)
        except (GitError, OSError, ValueError) as exc:
            lines.append(f"left {entry.path}: {exc}")
            continue
        kept = "deleted" if config.workspaces.delete_branch else "kept"
        lines.append(f"removed {entry.path} ({entry.task_id}; branch {entry.branch or '-'} {kept})")
    return lines


def problems(config: Config) -> list[tuple[str, str, str]]:
    """What stops worktree mode from working: (code, message, fix); empty when git and base are there."""
    settings = config.workspaces
    git = Git(config.root)
    try:
        inside = git.out("rev-parse", "--show-toplevel")
    except (GitError, FileNotFoundError) as exc:
        return [
            (
                "workspaces-no-git",
                f"[workspaces] mode = worktree, but {config.root} is not a git repository ({exc})",
                'git init (and commit), or set [workspaces] mode = "none"',
            )
        ]
    if not git.rev(f"refs/heads/{settings.base}"):
        return [
            (
                "workspaces-no-base",
                f"[workspaces] base {settings.base!r} is not a branch of {inside}",
                f"create it (git branch {settings.base}) or set [workspaces] base",
            )
        ]
    return []


def stale_locks(config: Config, now: float, older_than: float = 60.0) -> list[tuple[Path, float]]:
    """git lock files in the project's repository that no running git can own, older than ``older_than`` s at
    ``now`` (a wall-clock time): (path, age). Empty when a git is running there, or processes cannot be seen."""
    from agentd.workspaces import gitlocks

    spaces = Workspaces(config.root, config.workspaces, config.state_dir)
    common = spaces.common_dir()
    old = [lock for lock in gitlocks.find(common, {}) if now - lock.changed_ns / 1e9 > older_than]
    if not old:
        return []
    roots = [str(config.root), *(str(info.path) for info in spaces.worktrees())]
    procs = gitlocks.look(roots, [lock.path for lock in old], ())
    if not procs.seen or procs.gits or procs.hidden:
        return []
    return [(Path(lock.path), now - lock.changed_ns / 1e9) for lock in old if lock.path not in procs.holders]
