"""Which lock files a killed git left in a repository agentd may remove: a pure rule over what the shell saw.

git makes ``NAME.lock`` with O_EXCL before it changes ``NAME`` (the index, HEAD, a ref, packed-refs) and removes it
when it is done, or when it dies of most signals. A git killed with SIGKILL leaves it behind, and every later git
that needs that file fails with "Unable to create '....lock': File exists" until someone removes it. agentd kills
git that way itself: a task's process group is SIGKILLed on cancel, on a timeout, when its daemon dies.

The file alone does not say whether its git is dead: a person's ``git commit`` holds ``index.lock`` for as long as
its editor is open. So a lock file is removed only when all of these hold:

1. **it is agentd's to clear**: it was made during agentd's own git work (under its git lock) that ended without
   being seen to end cleanly — a holder that died, a git it killed on a timeout, an error — or it belongs to the
   worktree of a task whose earlier run agentd ended, as that worktree is reused;
2. **nobody holds it open**: no process has the file open;
3. **no git is running there**: no git process (long-lived daemons such as ``fsmonitor--daemon`` aside) has its
   working folder in the repository or one of its worktrees, and every process that could be looked at was.

Anything else stays, with the reason it stays: agentd never removes what a person's git may still be using, and a
lock a person's crashed git left is theirs to remove (``agentd doctor`` names it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LockFile:
    """A ``*.lock`` file found in the repository's git folders."""

    path: str
    changed_ns: int  # its st_ctime_ns: when it was made or last written
    worktree: str | None = None  # the task worktree it belongs to (its admin folder or its branch), else None


@dataclass(frozen=True)
class Seen:
    """What the shell found, once, under agentd's git lock."""

    locks: Sequence[LockFile]
    since_ns: int | None  # when agentd git work that did not end cleanly began (None: all of it did)
    reused: frozenset[str] = frozenset()  # task worktrees being reused, no process in them
    holders: Mapping[str, str] | None = None  # lock path -> a process that has it open ("PID command")
    gits: Sequence[str] = ()  # live git processes in the repository ("PID command")
    hidden: int = 0  # processes that could not be looked at (another user's)


@dataclass(frozen=True)
class Verdict:
    """A lock file, and whether it goes (``why``: why it goes, or why it stays)."""

    lock: LockFile
    remove: bool
    why: str


def decide(seen: Seen) -> list[Verdict]:
    """The verdict on each lock file ``seen`` holds, in its order."""
    verdicts = []
    holders = seen.holders or {}
    for lock in seen.locks:
        ours = seen.since_ns is not None and lock.changed_ns >= seen.since_ns
        reused = lock.worktree is not None and lock.worktree in seen.reused
        if lock.path in holders:
            verdicts.append(Verdict(lock, False, f"process {holders[lock.path]} has it open"))
        elif not (ours or reused):
            verdicts.append(Verdict(lock, False, "agentd's git work did not make it: remove it if no git is running"))
        elif seen.gits:
            verdicts.append(Verdict(lock, False, f"git is running in the repository ({seen.gits[0]})"))
        elif seen.hidden:
            verdicts.append(Verdict(lock, False, f"{seen.hidden} process(es) of other users could not be looked at"))
        elif ours:
            verdicts.append(Verdict(lock, True, "left by agentd's git work that ended without cleaning up"))
        else:
            verdicts.append(Verdict(lock, True, f"left in the worktree of {lock.worktree} by a run that was ended"))
    return verdicts
