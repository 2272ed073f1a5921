"""A task command for worktree tests: edits a file where it runs, commits it, and records where that was.

Usage: git_agent.py LOG [--file NAME] [--line TEXT] [--wait-for N] [--hold FILE] [--exit CODE] [--fail-first]

It appends ``TEXT`` (default: "TASK ROLE TOKEN") to ``NAME`` in its working folder and commits it there, then writes
one JSON line to ``LOG``: task, role, token, cwd, the AGENTD_WORKSPACE and AGENTD_BRANCH it was given, git's branch
and head. ``--wait-for N`` first waits (with a deadline) until N runs have started, to prove they run at once.
``--fail-first`` exits 1 the first time it runs for a task in this role (a tester finding a bug), 0 after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def append(log: str, record: dict[str, object]) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def lines(log: str) -> list[dict[str, object]]:
    try:
        with open(log) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--file", default="app.txt")
    parser.add_argument("--line")
    parser.add_argument("--wait-for", type=int, default=0)
    parser.add_argument("--exit", type=int, default=0)
    parser.add_argument("--fail-first", action="store_true")
    parser.add_argument("--no-commit", action="store_true")
    parser.add_argument("--hold", help="wait (with a deadline) until this file exists")
    args = parser.parse_args()
    task, role, token = os.environ["AGENTD_TASK_ID"], os.environ["AGENTD_ROLE"], os.environ["AGENTD_LEASE_TOKEN"]
    base = {"task": task, "role": role, "token": int(token), "cwd": os.getcwd()}
    append(args.log, {"event": "start", **base})
    deadline = time.monotonic() + 60
    while args.wait_for and len([r for r in lines(args.log) if r["event"] == "start"]) < args.wait_for:
        if time.monotonic() > deadline:
            print("git_agent: the other runs never started", file=sys.stderr)
            return 3
        time.sleep(0.05)
    while args.hold and not os.path.exists(args.hold) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not args.no_commit:
        with open(args.file, "a") as handle:
            handle.write((args.line or f"{task} {role} {token}") + "\n")
        git("add", args.file)
        git("commit", "-qm", f"{task}: {role} run {token}")
    code = args.exit
    if args.fail_first:
        earlier = [r for r in lines(args.log) if r["event"] == "end" and r["task"] == task and r["role"] == role]
        code = 0 if earlier else 1
    append(
        args.log,
        {
            "event": "end",
            **base,
            "workspace": os.environ.get("AGENTD_WORKSPACE"),
            "branch_env": os.environ.get("AGENTD_BRANCH"),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "head": git("rev-parse", "HEAD"),
            "code": code,
        },
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
