"""The torture test's task command: records each execution, runs a short random time, sometimes fails.

Usage: python -I -S work.py HISTORY SEED FAIL_RATE MAX_SLEEP [ESCAPE_RATE]

Appends one fsynced JSON line per event to HISTORY (start, end, overlap). Holds a non-blocking flock on
``HISTORY.guard/<task>`` for its whole life: if another execution of the same task is alive, the flock fails and an
``overlap`` event is recorded. SIGTERM (agentd's first step when it stops a group) records the end, then exits.

Some runs (ESCAPE_RATE of them) leave an escaped grandchild, as a dev server or a watcher does: a process in its own
session (``setsid``) that sleeps long, keeping every descriptor it inherited (the lease's and the guard lock). It is
recorded as ``escaped``; agentd must end it with its task, or the task's next run finds the guard held (an overlap),
and the verdict finds it alive.

It imports only built-in modules (no json, random or the signal wrapper): thousands of these run on 2 cores next to
the daemons under test, and every millisecond of start-up here is one the daemons do not get. Task ids are agentd's
validated ids and roles are plain words, so the JSON lines are written by hand.
"""

from __future__ import annotations

import _signal
import fcntl
import os
import sys
import time


def append(path: str, base: str, event: str, extra: str = "") -> None:
    line = f'{{{base}, "event": "{event}", "t": {time.time()!r}{extra}}}\n'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def uniform(key: str) -> tuple[float, float]:
    """Two numbers in [0, 1) from ``key`` (a reproducible stand-in for random.Random(key))."""
    state = 1469598103934665603
    for char in key:
        state = ((state ^ ord(char)) * 1099511628211) % (1 << 64)
    first = (state >> 11) / (1 << 53)
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return first, (state >> 11) / (1 << 53)


def escape(history: str, task: str, role: str, token: int) -> None:
    """Leave a grandchild in its own session that outlives this process unless agentd ends it with the task."""
    if os.fork() != 0:
        return
    try:
        _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)  # not the parent's handler: it records the parent's end
        os.setsid()
        with open("/proc/self/stat", "rb") as stat:
            since = int(stat.read().rsplit(b")", 1)[1].split()[19])
        base = f'"task": "{task}", "role": "{role}", "token": {token}, "pid": {os.getpid()}, "since": {since}'
        append(history, base, "escaped")
        time.sleep(120)
    finally:
        os._exit(0)


def main() -> int:
    history, seed, fail_rate, max_sleep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    escape_rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    task = os.environ["AGENTD_TASK_ID"]
    token = int(os.environ["AGENTD_LEASE_TOKEN"])
    with open("/proc/self/stat", "rb") as stat:  # its start time tells this process from a later one with its pid
        since = int(stat.read().rsplit(b")", 1)[1].split()[19])
    role = os.environ["AGENTD_ROLE"]
    base = f'"task": "{task}", "role": "{role}", "token": {token}, "pid": {os.getpid()}, "since": {since}'
    guard = os.open(os.path.join(history + ".guard", task), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        append(history, base, "overlap")

    def on_term(_signum: int, _frame: object) -> None:
        append(history, base, "end", ', "exit": 143')
        os._exit(143)

    append(history, base, "start")
    _signal.signal(_signal.SIGTERM, on_term)
    pause, fate = uniform(f"{seed}:{task}:{token}")
    if uniform(f"escape:{seed}:{task}:{token}")[0] < escape_rate:
        escape(history, task, role, token)
    time.sleep(pause * max_sleep)
    code = 1 if fate < fail_rate else 0
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # from here on the end is recorded by this line
    append(history, base, "end", f', "exit": {code}')
    return code


if __name__ == "__main__":
    sys.exit(main())
