#!/usr/bin/env python3
"""`make run`: the bundled example sprint, end to end, in a scratch copy of examples/sprint/.

Starts one daemon per role (real processes, --interval 60: queue changes wake them), shows the sprint moving until
every task is done, stops the daemons (SIGTERM: they drain), and prints a summary. Ctrl-C stops them cleanly too.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "examples" / "sprint"
ROLES = ("planner", "builder", "tester", "refiner", "integrator")
FINAL = {"done", "planning_complete", "cancelled", "blocked"}


def tasks(root: Path) -> list[dict[str, object]]:
    with open(root / "SPRINT_QUEUE.json", encoding="utf-8") as handle:
        return list(json.load(handle)["tasks"])


def summary(root: Path) -> str:
    counts = collections.Counter(str(t["status"]) for t in tasks(root))
    return "  ".join(f"{status}:{n}" for status, n in sorted(counts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=180, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="agentd-demo-"))
    root = scratch / "sprint"
    shutil.copytree(EXAMPLE, root, symlinks=False)
    agentd = [sys.executable, "-m", "agentd", "--root", str(root)]
    print(f"agentd demo in {root}")
    subprocess.run([*agentd, "queue", "validate"], check=True)
    subprocess.run([*agentd, "queue", "list"], check=True)
    logs = root / ".agentd" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    daemons = {
        role: subprocess.Popen(
            [*agentd, "--role", role, "--interval", "60"],
            stdout=subprocess.DEVNULL,
            stderr=open(logs / f"{role}.log", "ab"),  # noqa: SIM115 - the daemon owns it for its life
        )
        for role in ROLES
    }
    started = time.monotonic()
    interrupted = False
    try:
        last = ""
        while time.monotonic() - started < args.timeout:
            now = summary(root)
            if now != last:
                print(f"{time.monotonic() - started:5.1f}s  {now}", flush=True)
                last = now
            if all(str(t["status"]) in FINAL for t in tasks(root)):
                break
            dead = [role for role, proc in daemons.items() if proc.poll() is not None]
            if dead:
                print(f"daemon(s) exited early: {', '.join(dead)}; see {logs}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        print("\nstopping the daemons (they drain their running tasks)...")
    finally:
        for proc in daemons.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in daemons.values():
            proc.wait(timeout=30)
    final = tasks(root)
    attempts = sum(1 for _ in (root / ".agentd" / "logs" / "tasks").glob("*/*.log"))
    done = sum(1 for t in final if t["status"] in ("done", "planning_complete"))
    print(f"\n{done}/{len(final)} tasks finished, {attempts} task runs, {time.monotonic() - started:.1f} s wall time")
    subprocess.run([*agentd, "queue", "list"], check=False)
    print(f"logs: {logs}  (per task: {logs / 'tasks'})")
    if not args.keep and not interrupted and done == len(final):
        shutil.rmtree(scratch)
    return 0 if done == len(final) else 1


if __name__ == "__main__":
    sys.exit(main())
