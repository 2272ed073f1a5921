"""A task command that behaves like an agent CLI, for tests: asks questions, resumes sessions, pauses on a usage
limit, reports what it cost. Each execution appends one JSON line to LOG (fsynced) with its argv and environment.

Usage: agent.py LOG [--ask TEXT] [--resumed SESSION ANSWER] [--exit-first CODE] [--pause-first UNTIL]
                    [--cost USD] [--claude-json USD] [--sleep S]
"""

from __future__ import annotations

import argparse
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


def first_time(log: str, task: str) -> bool:
    """True on a task's first execution (a marker file beside the log remembers it)."""
    try:
        os.close(os.open(f"{log}.{task}.seen", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def result(payload: dict[str, object]) -> None:
    with open(os.environ["AGENTD_RESULT"], "w") as handle:
        json.dump(payload, handle)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--ask", default="")
    parser.add_argument("--resumed", nargs=2, metavar=("SESSION", "ANSWER"))
    parser.add_argument("--exit-first", type=int)
    parser.add_argument("--pause-first")
    parser.add_argument("--cost", type=float)
    parser.add_argument("--claude-json", type=float)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    task = os.environ["AGENTD_TASK_ID"]
    env = {key: value for key, value in os.environ.items() if key.startswith("AGENTD_")}
    first = first_time(args.log, task)
    append(args.log, {"task": task, "argv": sys.argv[1:], "env": env, "first": first, "t": time.time()})
    time.sleep(args.sleep)
    if args.claude_json is not None:
        print("thinking...")
        print(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "session_id": f"s-{task}",
                    "total_cost_usd": args.claude_json,
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                    "result": "done",
                }
            )
        )
    if args.ask and "AGENTD_ANSWER" not in os.environ:
        result({"question": args.ask, "session": f"s-{task}", "note": "needs a decision"})
        return 0
    if args.exit_first is not None and first:
        return args.exit_first
    if args.pause_first is not None and first:
        result({"pause": {"until": args.pause_first, "reason": "usage limit"}})
        return 1
    if args.cost is not None:
        result({"usage": {"cost_usd": args.cost, "input_tokens": 1000, "output_tokens": 200}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
