"""Crash points for fault-injection tests, off unless ``AGENTD_CRASH_AT`` is set.

``AGENTD_CRASH_AT=queue.before-rename`` makes the process ``os._exit(86)`` the first time it reaches that point;
``name:kill`` SIGKILLs itself instead, ``name:stop`` SIGSTOPs itself (a hang: it goes on when someone sends SIGCONT);
``name@3`` waits for the third time. Points are listed in ``POINTS`` (and ``STORE_POINTS``).

``AGENTD_FAULT_CLOCK_SKEW=SECONDS`` shifts the daemon's wall clock (a host or container whose date is wrong); its
monotonic and boot clocks are the kernel's, as they would be.
"""

from __future__ import annotations

import os
from collections.abc import Callable

POINTS = (
    "queue.after-temp-write",  # temp file written and fsynced, nothing renamed
    "queue.before-rename",  # hand-edit check passed, about to rename over the queue
    "queue.after-link",  # a big queue's old version given a second (temporary) name, the new one not yet renamed
    "queue.spare-kept",  # a daemon's queue version given a second name to be written again, the new one not yet renamed
    "queue.spare-written",  # the version kept at the last write written again and fsynced, not yet renamed
    "queue.after-rename",  # queue replaced, folder not yet fsynced
    "daemon.after-register",  # a daemon's PID file written (`agentd status` sees it run), its loop not yet begun
    "tokens.after-write",  # the fencing-token high-water mark raised, no lease file yet (claim)
    "lease.after-create",  # lease file created and locked, queue not yet written (claim)
    "lease.spare-linked",  # a released lease file reused: linked to the new lease's name, its spare name still there
    "claim.after-queue-write",  # claim written to the queue, task not yet started
    "task.after-start",  # task command started
    "heartbeat.mid-write",  # a lease file rewritten in place, not yet truncated to its new length
    "complete.before-queue-write",  # task finished, outcome not yet recorded
    "complete.after-queue-write",  # outcome recorded, lease file not yet removed
    "complete.before-claim",  # in one pass's transaction: ended runs recorded, the slots they freed not yet claimed
    "complete.after-starts",  # a pass's ended runs recorded and its claims started, their lease files not yet removed
    "recover.after-break",  # a stale lease file removed by a peer, its task not yet put back in the queue
    "archive.after-append",  # tasks appended to the archive and fsynced, the queue not yet written without them
    "automation.after-fire",  # a firing's tasks added to the queue, the automation memory not yet written
    "workspace.after-add",  # a task's worktree added by git, its setup not run, not yet marked ready
    "workspace.after-setup",  # setup ran in a new worktree, not yet marked ready
    "merge.before-base-move",  # the merge commit made in the integration worktree, base not yet moved
    "merge.after-base-move",  # base moved to the merge, the task's outcome not yet recorded
)
# Points of a store's own, reached only by transactions that change project state (tested by tests/contract/).
STORE_POINTS = (
    "state.before-rename",  # project state written to a temporary file in a transaction, not yet renamed
)

# Points of the supervisor zygote and the supervisors (run/_shim.py, stdlib only: it reads AGENTD_CRASH_AT itself;
# exit, kill and stop, no count).
SUPERVISOR_POINTS = (
    "zygote.after-fork",  # a request's spare supervisors forked, their pids and channels not yet sent back
    "supervisor.after-fds",  # a spare handed a task's descriptors (and its spec), nothing started yet
    "supervisor.after-report",  # the command's end reported to the daemon, the supervisor not yet exited
)

CRASH_EXIT_CODE = 86
_hits: dict[str, int] = {}
_hooks: dict[str, Callable[[], None]] = {}


def on(name: str, hook: Callable[[], None] | None) -> None:
    """Run ``hook`` (in-process tests) each time ``name`` is reached; None removes it."""
    if name not in POINTS and name not in STORE_POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    if hook is None:
        _hooks.pop(name, None)
    else:
        _hooks[name] = hook


def _parse(spec: str) -> tuple[str, str, int]:
    action = "exit"
    count = 1
    if ":" in spec:
        spec, action = spec.split(":", 1)
    if "@" in spec:
        spec, number = spec.split("@", 1)
        count = int(number)
    return spec, action, count


def point(name: str) -> None:
    """Crash here if the environment asks for it (or run a test's hook)."""
    hook = _hooks.get(name)
    if hook is not None:
        hook()
    spec = os.environ.get("AGENTD_CRASH_AT")
    if not spec:
        return
    target, action, count = _parse(spec)
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] < count:
        return
    import signal  # (here: the module builds its enums at import, which no call that does not crash needs)

    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    os._exit(CRASH_EXIT_CODE)


def clock_skew() -> float:
    """Seconds to shift the daemon's wall clock by (``AGENTD_FAULT_CLOCK_SKEW``; 0 unless a test sets it)."""
    raw = os.environ.get("AGENTD_FAULT_CLOCK_SKEW", "").strip()
    if not raw:
        return 0.0
    try:
        skew = float(raw)
    except ValueError:
        skew = float("nan")
    if skew != skew or abs(skew) == float("inf"):
        raise ValueError(f"AGENTD_FAULT_CLOCK_SKEW={raw!r} is not a number of seconds")
    return skew
