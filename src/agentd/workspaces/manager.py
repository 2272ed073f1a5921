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

A git killed in the middle (agentd kills a task's whole process group on cancel, timeout or death) leaves its lock
files (``index.lock``, ``HEAD.lock``, a ref's), and every later git that needs them fails until they go. agentd's git
work marks its time under the git lock (``.agentd/workspaces/git.busy``, removed when it ends cleanly): the next
holder that finds the mark removes the lock files made since then that no running git can own
(:mod:`agentd.core.gitlocks`), and so does a run that reuses a task's worktree for the locks in it. A worktree a
killed ``git worktree add`` left locked ("initializing") is removed and made again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentd import faults
from agentd.core.gitlocks import Verdict
from agentd.errors import AgentdError
from agentd.store.file.sidelock import LockTimedOut, SidecarLock
from agentd.workspaces import gitlocks
from agentd.workspaces.git import Git, GitError
from agentd.workspaces.settings import WorkspaceSettings

INTEGRATION = ".integration"
INITIALIZING = "initializing"  # the lock reason of a worktree `git worktree add` is making (C locale)


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


def _locked_worktrees(git: Git) -> dict[Path, str]:
    """Registered worktrees that are locked: path -> the lock's reason ("" when none was given)."""
    found: dict[Path, str] = {}
    path: Path | None = None
    for line in git.out("worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :]).resolve()
        elif path is not None and (line == "locked" or line.startswith("locked ")):
            found[path] = line[len("locked ") :]
    return found


class Workspaces:
    """The worktrees of one project."""

    def __init__(self, root: Path, settings: WorkspaceSettings, state_dir: Path, *, lock_timeout: float = 300.0):
        self.root = Path(root).resolve()
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.git = Git(self.root)
        self._lock = SidecarLock(self.state_dir / "git.lock", lock_timeout)
        self._common: Path | None = None
        self._held = 0  # how deep this thread's hold of the git lock is (SidecarLock is re-entrant)
        self.cleared: list[str] = []  # lock files removed, one line each, for the caller to journal
        self._kept: list[Verdict] = []  # lock files agentd's unfinished git work left that stay, as judged at its start

    # -- helpers -------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lock every git operation of every daemon of this project takes, and mark the time of the git
        work done under it until it ends cleanly (see the module's note)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except LockTimedOut:
            raise WorkspaceError(None, f"the git lock {self._lock.path} stayed held too long") from None
        self._held += 1
        try:
            if self._held > 1:  # (nested in this thread's own git work: its mark covers this too)
                yield
                return
            killed = len(self.git.killed)
            marked = self._begin_git_work()
            yield
            if marked and len(self.git.killed) == killed:  # (a git killed on its timeout: the next holder looks)
                self._busy().unlink(missing_ok=True)
        finally:
            self._held -= 1
            self._lock.release()

    def _busy(self) -> Path:
        return self.state_dir / "workspaces" / "git.busy"

    def _begin_git_work(self) -> bool:
        """Mark the start of git work (False: an earlier mark stays, its time covering this work too). A mark found
        is git work that did not end cleanly: the lock files made since it are cleared first."""
        busy = self._busy()
        try:
            since: int | None = os.stat(busy).st_mtime_ns
        except FileNotFoundError:
            since = None
        self._kept = []
        if since is not None:
            kept = self._clear_locks(since)
            self._kept = [verdict for verdict in kept if verdict.lock.changed_ns >= since]
            if self._kept:
                return False  # some stay (a git is running): the next holder tries again
            busy.unlink()
        busy.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(busy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))  # (its mtime: now)
        return True

    def common_dir(self) -> Path:
        """The repository's git folder (``git rev-parse --git-common-dir``)."""
        if self._common is None:
            self._common = (self.root / self.git.out("rev-parse", "--git-common-dir")).resolve()
        return self._common

    def _clear_locks(self, since: int | None, reused: tuple[Path, ...] = ()) -> list[Verdict]:
        """Remove the lock files agentd's git work or a reused worktree's ended run left (see
        :mod:`agentd.core.gitlocks`); returns those that stay."""
        common = self.common_dir()
        registered = _worktrees(self.git)
        worktree_of = {f"refs/heads/{branch}": str(path) for path, (branch, _) in registered.items() if branch}
        with contextlib.suppress(OSError):
            for admin in os.listdir(common / "worktrees"):
                with contextlib.suppress(OSError):
                    gitdir = (common / "worktrees" / admin / "gitdir").read_text().strip()  # (maybe relative to it)
                    worktree_of[admin] = str((common / "worktrees" / admin / gitdir).parent.resolve())
        roots = [str(self.root), *(str(path) for path in registered)]
        done = gitlocks.clear(common, roots, since, worktree_of, [str(path) for path in reused])
        self.cleared += [f"removed the git lock file {verdict.lock.path}: {verdict.why}" for verdict in done.removed]
        return done.kept

    def _locks_note(self) -> str:
        """Why the lock files in the repository stay, for a note ("" when there are none): as judged when this git
        work began, or else now."""
        kept = self._kept or [verdict for verdict in self._clear_locks(None) if not verdict.remove]
        if not kept:
            return ""
        more = f" (and {len(kept) - 1} more lock file{'s' if len(kept) > 2 else ''})" if len(kept) > 1 else ""
        return f"; {kept[0].lock.path} stays{more}: {kept[0].why}"

    def _remove_worktree(self, path: Path, task_id: str | None) -> None:
        """``git worktree remove --force`` of one of agentd's worktrees; one a killed ``git worktree add`` left
        locked is removed too, one a person locked is not."""
        done = self.git.run("worktree", "remove", "--force", str(path), check=False)
        if done.returncode == 0:
            return
        reason = _locked_worktrees(self.git).get(path.resolve())
        if reason == INITIALIZING:
            self.git.run("worktree", "remove", "--force", "--force", str(path))
            return
        if reason is not None:
            raise WorkspaceError(
                task_id, f"{path} is locked ({reason or 'no reason given'}): `git worktree unlock {path}` lets it go"
            )
        raise GitError(("worktree", "remove", "--force", str(path)), self.root, done.returncode, done.stderr)

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
                if self._has_locks(path, branch):  # an agent's git killed with its run
                    self._clear_locks(None, (path,))
                return Workspace(task_id, branch, path, created=False)
            if here is not None:  # half-made (no marker) or on another branch: made again
                self._remove_worktree(path, task_id)
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

    def take_cleared(self) -> list[str]:
        """The lock files removed since the last call, one line each (for the journal)."""
        lines, self.cleared = self.cleared, []
        return lines

    def _has_locks(self, path: Path, branch: str) -> bool:
        """Whether the worktree's admin folder or its branch has a lock file (a few stats: every reuse looks)."""
        with contextlib.suppress(OSError):
            line = (path / ".git").read_text().strip()  # "gitdir: ADMIN" (absolute, or relative to the worktree)
            if line.startswith("gitdir: ") and any(name.endswith(".lock") for name in os.listdir(path / line[8:])):
                return True
        return (self.common_dir() / "refs" / "heads" / f"{branch}.lock").exists()

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
                self._remove_worktree(path, task_id)
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
            if done.returncode == 0:
                return None
            note = self._locks_note() if ".lock" in done.stderr else ""
            return f"{base} moved meanwhile: {done.stderr.strip()}{note}"
        done = self.git.at(holder).run("merge", "--ff-only", "--quiet", new, check=False)
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[0] if lines else f"exit code {done.returncode}"
        note = self._locks_note() if ".lock" in reason else ""
        return f"{base} is checked out in {holder}, and git would not fast-forward it there: {reason}{note}"

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
