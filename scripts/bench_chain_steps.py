#!/usr/bin/env python3
"""Where a chain task's wall time goes (issue 18): the steps between one task's end and the next one's, from the
timestamps agentd writes anyway (millisecond resolution), medians over a 50-task chain of `true` at WIP 1:

    exited -> finished    the supervisor logged the command's end ... the daemon journaled the run finished (its
                          report on the status pipe, the daemon's wake-up, the pass's transaction with its fsyncs)
    finished -> claimed   journaling the end, releasing its lease ... the successor's claim journaled
    claimed -> started    starting the successor: its command line, a supervisor forked by the zygote, the lease
                          rewritten with the supervisor's pgid
    started -> exec       the supervisor reading its spec, opening the log, resolving the command
    exec -> exited        posix_spawn, the command (`true`), its reaping, the supervisor's look for leftovers

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/bench_chain_steps.py --repeat 3 [--baseline main]

The first two come from the journal (`.agentd/events.jsonl`), the supervisor's from the task logs (`agentd: TIME
exec ...`, `agentd: TIME exited ...`). On a shared machine these move with the load: compare the lines of one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # scripts/bench.py: clean-up, projects, daemons
import bench_daemon_cpu  # baseline_src
import bench_peers  # the projects of the drains

STEPS = ("exited -> finished", "finished -> claimed", "claimed -> started", "started -> exec", "exec -> exited")
LOG_LINE = re.compile(r"agentd: (\S+) (exec|exited)\b")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def steps(root: Path) -> list[list[float]]:
    """Per consecutive pair of tasks, the seconds of each step of STEPS."""
    journal: dict[tuple[str, str], float] = {}
    with open(root / ".agentd" / "events.jsonl", encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            if event.get("task"):
                journal.setdefault((event["task"], event["event"]), _at(event["time"]))
    supervisor: dict[tuple[str, str], float] = {}
    for log in (root / ".agentd" / "logs" / "tasks").glob("*/*.log"):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            found = LOG_LINE.match(line)
            if found:
                supervisor[(log.parent.name, found.group(2))] = _at(found.group(1))
    ids = sorted({task_id for task_id, _ in supervisor})
    rows = []
    for before, after in itertools.pairwise(ids):
        try:
            marks = (
                supervisor[(before, "exited")],
                journal[(before, "finished")],
                journal[(after, "claimed")],
                journal[(after, "started")],
                supervisor[(after, "exec")],
                supervisor[(after, "exited")],
            )
        except KeyError:
            continue
        rows.append([later - earlier for earlier, later in itertools.pairwise(marks)])
    return rows


def chain(cleanup: bench.Cleanup, base: Path, src: Path | None) -> list[list[float]]:
    """One 50-task chain drained by a daemon of this tree (or of ``src``); its steps."""
    root = bench_peers.agentd_project(cleanup, base, "steps", bench_peers.ready_tasks(50, chain=True), 1)
    if src is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = str(src)
    try:
        proc = bench.start_daemon(cleanup, root, "builder", "--drain", "--concurrency", "1")
        code = proc.wait()
    finally:
        os.environ.pop("PYTHONPATH", None)
    cleanup.procs.remove(proc)
    if code != 0:
        raise RuntimeError(f"agentd --drain exited with {code} (see {root})")
    return steps(root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (medians over all of them)")
    parser.add_argument("--baseline", metavar="REF", help="also run this commit's src/ (e.g. main), interleaved")
    args = parser.parse_args(argv)
    cleanup = bench.Cleanup()
    base = Path(tempfile.mkdtemp(prefix="agentd-chain-steps-"))
    # This tree's src/ named, not left to the interpreter: the venv's editable install may be another worktree's.
    trees: dict[str, Path | None] = {"this tree": bench_daemon_cpu.TREE / "src"}
    if args.baseline:
        trees[args.baseline] = bench_daemon_cpu.baseline_src(base, args.baseline)
    rows: dict[str, list[list[float]]] = {name: [] for name in trees}
    try:
        print(f"load {os.getloadavg()[0]:.2f} at start", file=sys.stderr)
        for _ in range(args.repeat):
            for name, src in trees.items():
                rows[name] += chain(cleanup, base, src)
        print(f"load {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
    finally:
        cleanup.close()
        shutil.rmtree(base, ignore_errors=True)
    print("| step (medians, ms) | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for index, step in enumerate((*STEPS, "the whole cycle")):
        cells = []
        for name in trees:
            values = [sum(row) if index == len(STEPS) else row[index] for row in rows[name]]
            cells.append(f"{statistics.median(values) * 1000:.1f}" if values else "-")
        print(f"| {step} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
