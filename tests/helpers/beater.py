"""A task command for fencing tests: it and a grandchild that escapes into a session of its own each append a beat
to LOG every 100 ms, so that when each run lived is read from the times the processes wrote themselves.

Usage: beater.py LOG [--seconds S] [--seconds-token N:S ...]

Lines (JSON, appended with O_APPEND): ``{"token", "who": "command"|"grandchild", "pid", "t"}``; the command writes
``"event": "end"`` when it exits by itself (it runs S seconds, the grandchild for as long as the command does and
10 s more, so that only a kill of the whole tree stops it in time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def beat(log: str, record: dict[str, object]) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps({**record, "t": time.time()}) + "\n").encode())
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--seconds-token", action="append", default=[])
    parser.add_argument("--who", default="command")
    args = parser.parse_args()
    token = int(os.environ.get("AGENTD_LEASE_TOKEN", "0"))
    seconds = args.seconds
    for item in args.seconds_token:
        number, value = item.split(":")
        if int(number) == token:
            seconds = float(value)
    base = {"token": token, "who": args.who, "pid": os.getpid()}
    if args.who == "command":  # a grandchild that leaves the process group and the session (setsid)
        subprocess.Popen(
            [sys.executable, __file__, args.log, "--seconds", str(seconds + 10), "--who", "grandchild"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        beat(args.log, base)
        time.sleep(0.1)
    if args.who == "command":
        beat(args.log, {**base, "event": "end"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
