"""A task command for tests: records each execution (append-only JSON lines, fsynced) and proves exclusivity.

Usage: record.py LOG [--sleep S] [--sleep-token N:S ...] [--exit CODE] [--exit-token N:CODE ...] [--result JSON]

It takes a non-blocking flock on ``LOG.<task>.run`` for its whole life: if another execution of the same task is
alive, the flock fails and it records an ``overlap`` event — direct evidence of a task running twice at once.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time


def append(log: str, record: dict[str, object]) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--sleep-token", action="append", default=[])
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--exit-token", action="append", default=[])
    parser.add_argument("--result")
    args = parser.parse_args()
    task = os.environ["AGENTD_TASK_ID"]
    token = int(os.environ["AGENTD_LEASE_TOKEN"])
    base = {"task": task, "role": os.environ["AGENTD_ROLE"], "token": token, "pid": os.getpid()}
    guard = os.open(f"{args.log}.{task}.run", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        append(args.log, {**base, "event": "overlap", "t": time.time()})
    append(args.log, {**base, "event": "start", "t": time.time(), "attempt": int(os.environ["AGENTD_ATTEMPT"])})
    sleep = args.sleep
    for item in args.sleep_token:
        number, seconds = item.split(":")
        if int(number) == token:
            sleep = float(seconds)
    time.sleep(sleep)
    code = args.exit
    for item in args.exit_token:
        number, value = item.split(":")
        if int(number) == token:
            code = int(value)
    if args.result:
        with open(os.environ["AGENTD_RESULT"], "w") as handle:
            handle.write(args.result)
    append(args.log, {**base, "event": "end", "t": time.time(), "exit": code})
    return code


if __name__ == "__main__":
    sys.exit(main())
