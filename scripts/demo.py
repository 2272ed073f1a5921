#!/usr/bin/env python3
"""`make run`: the bundled example sprint, end to end, in a scratch copy of examples/sprint/.

Starts the five role daemons in the background (`agentd start`), shows the sprint moving live (tasks per status and
what each role is doing) until every task is finished, stops the daemons (they drain) and prints a summary.
Ctrl-C stops the daemons cleanly.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from agentd import config as config_mod
from agentd.store.file.leases import LeaseDir

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "examples" / "sprint"
FINISHED = {"done", "planning_complete", "cancelled"}


def snapshot(root: Path, leases: LeaseDir) -> tuple[list[dict[str, Any]], dict[str, str]]:
    with open(root / "SPRINT_QUEUE.json", encoding="utf-8") as handle:
        tasks = list(json.load(handle)["tasks"])
    doing: dict[str, str] = {}
    for task_id, seen in sorted(leases.observe_all().items()):
        if seen.role:
            doing[seen.role] = (doing.get(seen.role, "") + f" {task_id}").strip()
    return tasks, doing


def view(tasks: list[dict[str, Any]], doing: dict[str, str], roles: list[str], elapsed: float) -> Group:
    counts = collections.Counter(str(t["status"]) for t in tasks)
    statuses = Table(title=f"sprint after {elapsed:.1f} s", show_edge=False)
    statuses.add_column("status")
    statuses.add_column("tasks", justify="right")
    for status, count in sorted(counts.items()):
        statuses.add_row(status, str(count))
    work = Table(show_edge=False)
    work.add_column("role")
    work.add_column("working on")
    for role in roles:
        work.add_row(role, doing.get(role, "-"))
    return Group(statuses, work)


def plain(tasks: list[dict[str, Any]], doing: dict[str, str]) -> str:
    counts = collections.Counter(str(t["status"]) for t in tasks)
    busy = "  ".join(f"{role}:{ids}" for role, ids in sorted(doing.items()))
    states = "  ".join(f"{s}:{n}" for s, n in sorted(counts.items()))
    return states + (f"  | {busy}" if busy else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="agentd-demo-"))
    root = scratch / "sprint"
    shutil.copytree(EXAMPLE, root, symlinks=False)
    agentd = [sys.executable, "-m", "agentd", "--root", str(root)]
    console = Console()
    console.print(f"agentd demo in {root}")
    subprocess.run([*agentd, "queue", "list"], check=True)
    config = config_mod.load(root=root, environ={})
    roles = list(config.roles)
    started = time.monotonic()
    if subprocess.run([*agentd, "start"], check=False).returncode != 0:
        subprocess.run([*agentd, "stop"], check=False)
        return 1
    leases = LeaseDir(config.leases_dir, config.root)
    interrupted = False
    finished = False
    try:
        if console.is_terminal:
            with Live(console=console, refresh_per_second=8) as live:
                while time.monotonic() - started < args.timeout and not finished:
                    tasks, doing = snapshot(root, leases)
                    live.update(view(tasks, doing, roles, time.monotonic() - started))
                    finished = all(str(t["status"]) in FINISHED for t in tasks)
                    time.sleep(0.125)
        else:
            last = ""
            while time.monotonic() - started < args.timeout and not finished:
                tasks, doing = snapshot(root, leases)
                line = plain(tasks, doing)
                if line != last:
                    print(f"{time.monotonic() - started:5.1f}s  {line}", flush=True)
                    last = line
                finished = all(str(t["status"]) in FINISHED for t in tasks)
                time.sleep(0.1)
    except KeyboardInterrupt:
        interrupted = True
        console.print("\nstopping the daemons (they drain their running tasks)...")
    finally:
        subprocess.run([*agentd, "stop"], check=False)
    wall = time.monotonic() - started
    tasks, _ = snapshot(root, leases)
    runs = sum(1 for _ in (root / ".agentd" / "logs" / "tasks").glob("*/*.log"))
    done = sum(1 for t in tasks if t["status"] in FINISHED)
    console.print(f"\n{done}/{len(tasks)} tasks finished, {runs} task runs (attempts), {wall:.1f} s wall time")
    subprocess.run([*agentd, "queue", "list"], check=False)
    if not finished:
        console.print(f"[bold red]the sprint did not finish[/]; logs are in {root / '.agentd' / 'logs'}")
    if args.keep or interrupted or not finished:
        console.print(f"project kept in {root}")
    else:
        shutil.rmtree(scratch)
    return 0 if finished else 1


if __name__ == "__main__":
    sys.exit(main())
