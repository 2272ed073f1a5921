#!/usr/bin/env python3
"""Starting a task's supervisor alone (issue 18): N sequential `true` tasks through `agentd.run.runner.launch` with a
zygote of their own, no daemon and no queue; wall time per task and the CPU per task of the zygote, the supervisors
and the commands (`RUSAGE_CHILDREN` of a child process that runs the loop), beside a --baseline commit's src/,
repetitions interleaved, medians:

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/bench_launch.py --repeat 3 --baseline main
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_daemon_cpu  # baseline_src

TREE = Path(__file__).resolve().parents[1]
LOOP = """
import json, resource, sys, tempfile, time
from pathlib import Path
from agentd.run.runner import LaunchSpec, launch
from agentd.run.zygote import Zygote
count, folder = int(sys.argv[1]), Path(tempfile.mkdtemp(dir=sys.argv[2]))
zygote = Zygote()
launch(LaunchSpec(["true"], folder, {}, folder / "warm.log", None), zygote=zygote).wait()  # the zygote started
start = time.perf_counter()
for n in range(count):
    launch(LaunchSpec(["true"], folder, {}, folder / f"{n}.log", None), zygote=zygote).wait()
wall = time.perf_counter() - start
zygote.close()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall / count, "cpu": (usage.ru_utime + usage.ru_stime) / count}))
"""


def one(src: Path, count: int, base: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", LOOP, str(count), str(base)], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--count", type=int, default=200, help="tasks per repetition")
    parser.add_argument("--baseline", metavar="REF", help="also run this commit's src/ (e.g. main), interleaved")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="agentd-bench-launch-"))
    trees = {"this tree": TREE / "src"}
    if args.baseline:
        trees[args.baseline] = bench_daemon_cpu.baseline_src(base, args.baseline)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    print(f"load {os.getloadavg()[0]:.2f} at start", file=sys.stderr)
    try:
        for _ in range(args.repeat):
            for name, src in trees.items():
                runs[name].append(one(src, args.count, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"load {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
    print("| tree | wall per task | CPU per task (zygote, supervisors, commands) |")
    print("|---|---:|---:|")
    for name, results in runs.items():
        wall = statistics.median(r["wall"] for r in results) * 1000
        cpu = statistics.median(r["cpu"] for r in results) * 1000
        print(f"| {name} | {wall:.2f} ms | {cpu:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
