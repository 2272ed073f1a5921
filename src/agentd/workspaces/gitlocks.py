"""The shell around :mod:`agentd.core.gitlocks`: finds git's lock files, looks at the processes, removes what the
rule lets go.

Where lock files are looked for (``git rev-parse --git-common-dir``): its top level (``index.lock``, ``HEAD.lock``,
``ORIG_HEAD.lock``, ``packed-refs.lock``, ``config.lock``), ``refs/`` and below, each worktree's admin folder
``worktrees/NAME/``, and ``objects/`` (``maintenance.lock``: while it stays, git's automatic maintenance is skipped
without a word), ``objects/info`` and ``objects/pack``: what git's commands agentd runs, and an agent's ``git
commit``, lock. The loose objects' 256 folders are not walked (git makes no lock files there).

Processes are looked at through ``/proc`` (Linux): a git process is one whose ``comm`` starts with ``git``; its
working folder is ``/proc/PID/cwd``. This process is left out, and so are zombies (they hold nothing); the other
processes of its process group (a run's supervisor) do not make a worktree busy, though a git among them (one the
agent left running) counts. Without ``/proc`` no process can be looked at, and nothing is removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentd.core.gitlocks import LockFile, Seen, Verdict, decide

PROC = "/proc"
DAEMONS = ("fsmonitor--daemon", "credential-cache--daemon")  # long-lived, in the repository, holding no lock


def find(common: Path, worktree_of: Mapping[str, str]) -> list[LockFile]:
    """The lock files under the git folder ``common``; ``worktree_of`` maps an admin folder's name and a branch's
    ref name (``refs/heads/...``) to the task worktree they belong to."""
    found: list[LockFile] = []

    def add(path: str, worktree: str | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            found.append(LockFile(path, os.lstat(path).st_ctime_ns, worktree))

    def listed(folder: Path) -> list[str]:
        try:
            return sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".lock"))
        except (FileNotFoundError, NotADirectoryError):
            return []

    for name in listed(common):
        add(str(common / name), None)
    for folder, dirs, files in os.walk(common / "refs"):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".lock"):
                path = os.path.join(folder, name)
                ref = os.path.relpath(path, common)[: -len(".lock")].replace(os.sep, "/")
                add(path, worktree_of.get(ref))
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for admin in sorted(os.listdir(common / "worktrees")):
            for name in listed(common / "worktrees" / admin):
                add(str(common / "worktrees" / admin / name), worktree_of.get(admin))
    for sub in ("objects", "objects/info", "objects/pack"):
        for name in listed(common / sub):
            add(str(common / sub / name), None)
    return found


@dataclass
class Processes:
    """What ``/proc`` shows about the processes that matter here."""

    gits: list[str] = field(default_factory=list)  # live git processes working in the repository
    hidden: int = 0  # git processes whose working folder could not be read
    holders: dict[str, str] = field(default_factory=dict)  # lock path -> a process holding it open
    occupied: set[str] = field(default_factory=set)  # the given worktrees some process works in
    seen: bool = True  # False: no /proc


def _inside(path: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def look(roots: Iterable[str], locks: Iterable[str], worktrees: Iterable[str]) -> Processes:
    """One pass over ``/proc``: git processes whose working folder is under one of ``roots``, processes holding one
    of ``locks`` open, and which of ``worktrees`` some process (any) works in."""
    roots = [os.path.realpath(root) for root in roots]
    worktrees = [os.path.realpath(path) for path in worktrees]
    wanted = {os.path.realpath(path): path for path in locks}
    found = Processes()
    if not os.path.isdir(f"{PROC}/self"):
        found.seen = False
        return found
    me = os.getpid()
    group = os.getpgrp()
    for name in os.listdir(PROC):
        if not name.isdigit() or int(name) == me:
            continue
        base = f"{PROC}/{name}"
        try:
            with open(f"{base}/stat", "rb") as handle:
                stat = handle.read()
            with open(f"{base}/comm", "rb") as handle:
                comm = handle.read().decode("utf-8", "replace").strip()
        except OSError:
            continue  # gone
        fields = stat[stat.rfind(b")") + 2 :].split()
        if not fields or fields[0] == b"Z":
            continue  # a zombie: it holds nothing
        ours = len(fields) > 2 and int(fields[2]) == group  # of this run (its supervisor works where it does)
        is_git = comm.startswith("git")
        if is_git:
            with contextlib.suppress(OSError):
                with open(f"{base}/cmdline", "rb") as handle:
                    argv = handle.read().split(b"\0")
                if any(arg.decode("utf-8", "replace") in DAEMONS for arg in argv[1:3]):
                    is_git = False
        try:
            cwd = os.readlink(f"{base}/cwd")
        except PermissionError:
            found.hidden += is_git
            cwd = None
        except OSError:
            continue
        label = f"{name} {comm}"
        if cwd is not None:
            if is_git and _inside(cwd, roots):
                found.gits.append(label)
            occupied = None if ours else _inside(cwd, worktrees)
            if occupied is not None:
                found.occupied.add(occupied)
        if wanted:
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"{base}/fd"):
                    with contextlib.suppress(OSError):
                        target = os.readlink(f"{base}/fd/{fd}")
                        if target in wanted:
                            found.holders.setdefault(wanted[target], label)
    return found


@dataclass(frozen=True)
class Cleared:
    """What one clearing did: the lock files removed and those left, each with its verdict."""

    removed: list[Verdict]
    kept: list[Verdict]


def clear(
    common: Path,
    roots: Iterable[str],
    since_ns: int | None,
    worktree_of: Mapping[str, str],
    reused: Iterable[str] = (),
) -> Cleared:
    """Remove the lock files the rule lets go (see :mod:`agentd.core.gitlocks`); the caller holds agentd's git lock.

    ``roots``: the repository's checkout and its worktrees; ``since_ns``: when agentd git work that did not end
    cleanly began; ``reused``: task worktrees being reused (their locks go if no process works in them)."""
    locks = find(common, worktree_of)
    reused = [os.path.realpath(path) for path in reused]
    locks = [
        LockFile(lock.path, lock.changed_ns, os.path.realpath(lock.worktree) if lock.worktree else None)
        for lock in locks
    ]
    candidates = [
        lock
        for lock in locks
        if (since_ns is not None and lock.changed_ns >= since_ns) or (lock.worktree in reused and lock.worktree)
    ]
    if not candidates:
        return Cleared([], decide(Seen(locks, since_ns)))
    procs = look(roots, [lock.path for lock in candidates], reused)
    if not procs.seen:
        return Cleared([], [Verdict(lock, False, "no /proc to see whether git is running") for lock in locks])
    idle = frozenset(path for path in reused if path not in procs.occupied)
    verdicts = decide(Seen(locks, since_ns, idle, procs.holders, procs.gits, procs.hidden))
    removed, kept = [], []
    for verdict in verdicts:
        if verdict.remove and _unlink_if_same(verdict.lock):
            removed.append(verdict)
        elif not verdict.remove:
            kept.append(verdict)
    return Cleared(removed, kept)


def _unlink_if_same(lock: LockFile) -> bool:
    """Remove the lock file if it is still the one judged (a git that finished and a new one that made the file
    again between the look and now: that one is left alone)."""
    try:
        if os.lstat(lock.path).st_ctime_ns != lock.changed_ns:
            return False
        os.unlink(lock.path)
    except FileNotFoundError:
        return False
    return True
