"""The torture test's task command: records each execution, runs a short random time, sometimes fails.

Usage: work.py HISTORY SEED FAIL_RATE MAX_SLEEP

Appends one fsynced JSON line per event to HISTORY (start, end, overlap). Holds a non-blocking flock on
``HISTORY.guard/<task>`` for its whole life: if another execution of the same task is alive, the flock fails and an
``overlap`` event is recorded. SIGTERM (agentd's first step when it stops a group) records the end, then exits.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import sys
import time


def append(path: str, record: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    history, seed, fail_rate, max_sleep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    task = os.environ["AGENTD_TASK_ID"]
    token = int(os.environ["AGENTD_LEASE_TOKEN"])
    base = {"task": task, "role": os.environ["AGENTD_ROLE"], "token": token, "pid": os.getpid()}
    guard = os.open(os.path.join(history + ".guard", task), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        append(history, {**base, "event": "overlap", "t": time.time()})

    def on_term(_signum: int, _frame: object) -> None:
        append(history, {**base, "event": "end", "t": time.time(), "exit": 143})
        os._exit(143)

    append(history, {**base, "event": "start", "t": time.time()})
    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random(f"{seed}:{task}:{token}")
    time.sleep(rng.uniform(0, max_sleep))
    code = 1 if rng.random() < fail_rate else 0
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on the end is recorded by this line
    append(history, {**base, "event": "end", "t": time.time(), "exit": code})
    return code


if __name__ == "__main__":
    sys.exit(main())
