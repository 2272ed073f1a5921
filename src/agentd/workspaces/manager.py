"""Worktrees on disk: made for a task, reused while it lives, merged back, removed, and repaired after a crash.

Every git operation of every daemon takes one lock (``.agentd/git.lock``), so worktrees are never made or merged
concurrently. A worktree counts as ready only once ``git worktree add`` and the ``setup`` command have both finished
(a marker in ``.agentd/workspaces/``): one left half-made by a daemon killed in the middle is removed and made again
on the next claim, and :meth:`Workspaces.repair` prunes what git lost track of and aborts a merge left half-done in
the integration worktree.

Merging happens in an integration worktree of agentd's own (detached, reset before each merge), never in the user's
checkout. The base branch is then moved with a compare-and-swap ``update-ref``; when the base branch is checked out
somewhere (often the project root), that checkout is fast-forwarded instead (``merge --ff-only``), which git refuses
if uncommitted changes there are in the way — then nothing moves and the merge is tried again later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentd import faults
from agentd.errors import AgentdError
from agentd.store.file.sidelock import LockTimedOut, SidecarLock
from agentd.workspaces.git import Git, GitError
from agentd.workspaces.settings import WorkspaceSettings

INTEGRATION = ".integration"


class WorkspaceError(AgentdError, RuntimeError):
    """A task's workspace cannot be made, merged or removed: ``workspace of TASK: reason``."""

    def __init__(self, task_id: str | None, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"workspace of {task_id}: {reason}" if task_id else f"workspaces: {reason}")


@dataclass(frozen=True)
class Workspace:
    """A task's worktree."""

    task_id: str
    branch: str
    path: Path
    created: bool  # made now (False: reused)


@dataclass(frozen=True)
class MergeResult:
    """How merging a task's branch into the base went."""

    merged: bool
    conflicts: tuple[str, ...] = ()  # paths in conflict (the task goes to on_conflict)
    commit: str | None = None  # the base's new tip
    note: str = ""
    retry: bool = False  # nothing wrong with the task: try again later (the base's checkout was in the way)


@dataclass(frozen=True)
class WorktreeInfo:
    """One worktree as ``git worktree list`` and the disk show it."""

    path: Path
    branch: str | None
    head: str | None
    task_id: str | None
    ready: bool
    exists: bool


def _worktrees(git: Git) -> dict[Path, tuple[str | None, str | None]]:
    """Registered worktrees: path -> (branch, head)."""
    found: dict[Path, tuple[str | None, str | None]] = {}
    path: Path | None = None
    branch = head = None
    for line in [*git.out("worktree", "list", "--porcelain").splitlines(), ""]:
        if line.startswith("worktree "):
            path, branch, head = Path(line[len("worktree ") :]), None, None
        elif line.startswith("HEAD "):
            head = line[5:]
        elif line.startswith("branch refs/heads/"):
            branch = line[len("branch refs/heads/") :]
        elif not line and path is not None:
            found[path.resolve()] = (branch, head)
            path = None
    return found


class Workspaces:
    """The worktrees of one project."""

    def __init__(self, root: Path, settings: WorkspaceSettings, state_dir: Path, *, lock_timeout: float = 300.0):
        self.root = Path(root).resolve()
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.git = Git(self.root)
        self._lock = SidecarLock(self.state_dir / "git.lock", lock_timeout)

    # -- helpers -------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock every git operation of every daemon of this project takes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except LockTimedOut:
            raise WorkspaceError(None, f"the git lock {self._lock.path} stayed held too long") from None
        try:
            yield
        finally:
            self._lock.release()

    def path_of(self, task_id: str) -> Path:
        return self.root / self.settings.path_for(task_id)

    def _marker(self, task_id: str) -> Path:
        return self.state_dir / "workspaces" / f"{task_id}.ready"

    def _integration(self) -> Path:
        return self.state_dir / "worktrees" / INTEGRATION

    def _clear_half_made(self, path: Path, task_id: str | None) -> None:
        """Remove a folder at a worktree path that git does not know: only if it is what a killed ``git worktree
        add`` leaves (empty, or a ``.git`` file and a partial checkout), never a folder of someone's files."""
        if not path.exists():
            return
        git_file = path / ".git"
        if any(path.iterdir()) and not git_file.is_file():
            raise WorkspaceError(task_id, f"{path} exists and is not a worktree agentd made; move it away")
        shutil.rmtree(path)

    # -- a task's worktree ---------------------------------------------------------------------------------------------

    def ensure(self, task_id: str) -> Workspace:
        """The task's worktree: reused when it is ready, else (re)made from its branch, or a new branch from base."""
        try:
            branch = self.settings.branch_for(task_id)
        except ValueError as exc:
            raise WorkspaceError(task_id, str(exc)) from None
        path = self.path_of(task_id)
        marker = self._marker(task_id)
        with self.locked():
            self.git.run("worktree", "prune")
            registered = _worktrees(self.git)
            here = registered.get(path.resolve()) if path.exists() else None
            if here is not None and here[0] == branch and marker.exists():
                return Workspace(task_id, branch, path, created=False)
            if here is not None:  # half-made (no marker) or on another branch: made again
                self.git.run("worktree", "remove", "--force", str(path))
            else:
                self._clear_half_made(path, task_id)
            try:
                if self.git.rev(f"refs/heads/{branch}"):
                    self.git.run("worktree", "add", str(path), branch)
                else:
                    base = self.settings.base
                    if not self.git.rev(f"refs/heads/{base}"):
                        raise WorkspaceError(task_id, f"the base branch {base!r} does not exist in {self.root}")
                    self.git.run("worktree", "add", "-b", branch, str(path), base)
            except GitError as exc:
                raise WorkspaceError(task_id, str(exc)) from None
            faults.point("workspace.after-add")
        return Workspace(task_id, branch, path, created=True)

    def mark_ready(self, task_id: str) -> None:
        """Record that the task's worktree is made and set up (after ``setup`` ran in it)."""
        marker = self._marker(task_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("ready\n")

    def remove(self, task_id: str, *, delete_branch: bool | None = None) -> bool:
        """Remove the task's worktree (and its branch when asked); False when there was none."""
        path = self.path_of(task_id)
        with self.locked():
            self.git.run("worktree", "prune")
            registered = path.exists() and path.resolve() in _worktrees(self.git)
            if registered:
                self.git.run("worktree", "remove", "--force", str(path))
            else:
                self._clear_half_made(path, task_id)
            self._marker(task_id).unlink(missing_ok=True)
            delete = self.settings.delete_branch if delete_branch is None else delete_branch
            branch = self.settings.branch_for(task_id)
            if delete and self.git.rev(f"refs/heads/{branch}"):
                self.git.run("branch", "-D", branch)
        return registered

    # -- merging back --------------------------------------------------------------------------------------------------

    def merge(self, task_id: str, strategy: str = "merge", message: str | None = None) -> MergeResult:
        """Merge the task's branch into base (``ff``, ``merge`` or ``rebase``) in the integration worktree."""
        branch = self.settings.branch_for(task_id)
        base = self.settings.base
        with self.locked():
            base_tip = self.git.rev(f"refs/heads/{base}")
            tip = self.git.rev(f"refs/heads/{branch}")
            if base_tip is None or tip is None:
                missing = base if base_tip is None else branch
                raise WorkspaceError(task_id, f"branch {missing!r} does not exist")
            if self.git.ok("merge-base", "--is-ancestor", tip, base_tip):
                return MergeResult(True, commit=base_tip, note=f"{branch} is already in {base}")
            integration = self._ready_integration(base_tip)
            work = self.git.at(integration)
            if strategy == "ff":
                if not work.ok("merge", "--ff-only", tip):
                    return MergeResult(False, note=f"{branch} is not a fast-forward of {base} (base has moved on)")
            elif strategy == "merge":
                text = message or f"Merge {branch} (task {task_id})"
                if not work.ok("merge", "--no-ff", "-m", text, tip):
                    return self._abort(work, "merge")
            elif strategy == "rebase":
                work.run("checkout", "--detach", "--force", tip)
                if not work.ok("rebase", base_tip):
                    return self._abort(work, "rebase")
            else:
                raise WorkspaceError(task_id, f"unknown merge strategy {strategy!r} (ff, merge or rebase)")
            new = work.rev("HEAD")
            assert new is not None
            faults.point("merge.before-base-move")
            moved = self._move_base(base, base_tip, new)
            if moved is not None:
                return MergeResult(False, note=moved, retry=True)
            if strategy == "rebase":
                self._follow(branch, tip, new)
            faults.point("merge.after-base-move")
            return MergeResult(True, commit=new, note=f"merged {branch} into {base} ({strategy})")

    def _follow(self, branch: str, old: str, new: str) -> None:
        """Point the task's branch at its rebased commits. Where it is checked out (the task's worktree) the checkout
        moves with it (``reset --keep``: its files and index follow, uncommitted changes kept or nothing done)."""
        holder = next((path for path, (name, _) in _worktrees(self.git).items() if name == branch), None)
        with contextlib.suppress(GitError):
            if holder is None:
                self.git.run("update-ref", f"refs/heads/{branch}", new, old)
            elif self.git.at(holder).rev("HEAD") == old:
                self.git.at(holder).run("reset", "--keep", "--quiet", new)

    def _ready_integration(self, base_tip: str) -> Path:
        """agentd's own detached worktree at the base's tip, clean, with no merge or rebase left in it."""
        path = self._integration()
        registered = _worktrees(self.git)
        if not path.exists() or path.resolve() not in registered:
            if path.exists():
                shutil.rmtree(path)
            self.git.run("worktree", "prune")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.git.run("worktree", "add", "--detach", str(path), base_tip)
        work = self.git.at(path)
        self._abort_leftovers(work)
        work.run("checkout", "--detach", "--force", base_tip)
        work.run("reset", "--hard", base_tip)
        work.run("clean", "-ffdx")
        return path

    @staticmethod
    def _abort_leftovers(work: Git) -> list[str]:
        """Abort a merge or rebase a killed daemon left in a worktree; returns what was aborted."""
        done = []
        if os.path.exists(work.out("rev-parse", "--git-path", "MERGE_HEAD")):
            work.run("merge", "--abort", check=False)
            done.append("merge")
        for folder in ("rebase-merge", "rebase-apply"):
            if os.path.isdir(work.out("rev-parse", "--git-path", folder)):
                work.run("rebase", "--abort", check=False)
                done.append("rebase")
                break
        return done

    @staticmethod
    def _abort(work: Git, what: str) -> MergeResult:
        conflicts = tuple(sorted(set(work.out("diff", "--name-only", "--diff-filter=U").splitlines())))
        work.run(what, "--abort", check=False)
        return MergeResult(False, conflicts=conflicts, note=f"{what} conflict in {', '.join(conflicts) or '?'}")

    def _move_base(self, base: str, old: str, new: str) -> str | None:
        """Point base at ``new`` (it was ``old``); a checkout of base is fast-forwarded. None, or why it could not."""
        holder = next((path for path, (branch, _) in _worktrees(self.git).items() if branch == base), None)
        if holder is None:
            done = self.git.run("update-ref", f"refs/heads/{base}", new, old, check=False)
            return None if done.returncode == 0 else f"{base} moved meanwhile: {done.stderr.strip()}"
        done = self.git.at(holder).run("merge", "--ff-only", "--quiet", new, check=False)
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit code {done.returncode}"
        return f"{base} is checked out in {holder}, and git would not fast-forward it there: {reason}"

    # -- looking and repairing -----------------------------------------------------------------------------------------

    def worktrees(self) -> list[WorktreeInfo]:
        """agentd's worktrees (the integration one left out), with the task each belongs to."""
        prefix, _, suffix = self.settings.path.partition("{task_id}")
        found = []
        integration = self._integration().resolve()
        for path, (branch, head) in sorted(_worktrees(self.git).items()):
            if path == integration:
                continue
            try:
                relative = path.relative_to(self.root).as_posix()
            except ValueError:
                continue
            if not (relative.startswith(prefix) and relative.endswith(suffix)):
                continue
            task_id = relative[len(prefix) : len(relative) - len(suffix) if suffix else None]
            found.append(WorktreeInfo(path, branch, head, task_id, self._marker(task_id).exists(), path.exists()))
        return found

    def repair(self) -> list[str]:
        """What a crash may leave: worktrees git lost track of (pruned), a merge or rebase left in the integration
        worktree (aborted). Returns what was done, one line each."""
        done = []
        with self.locked():
            before = set(_worktrees(self.git))
            self.git.run("worktree", "prune")
            pruned = before - set(_worktrees(self.git))
            done += [f"pruned the lost worktree {path}" for path in sorted(pruned)]
            integration = self._integration()
            if integration.exists() and integration.resolve() in _worktrees(self.git):
                aborted = self._abort_leftovers(self.git.at(integration))
                done += [f"aborted a {what} left half-done in {integration}" for what in aborted]
        return done
