#!/usr/bin/env python3
"""The agentd daemon's own CPU per task (issue 18's per-task overhead), beside another commit's in the same run.

`bench_peers.py` times the daemon with every process it starts (wall, and the CPU of its whole tree). This script
runs the same drains (200 x `true` at 4-way, a 50-task chain at 1-way: `bench_peers.agentd_drain`) with the daemon
started through a small wrapper that writes its own `getrusage(RUSAGE_SELF)` (all its threads) when it exits, and the
same with an empty queue (start-up alone), repetitions interleaved with the --baseline commit's src/, medians:

    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/bench_daemon_cpu.py --repeat 3 --baseline main
    env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/bench_daemon_cpu.py --profile /tmp/daemon.prof

--profile FILE: also one 4-way run under `cProfile.Profile(time.thread_time)` (CPU time of the daemon's main thread,
not the wall time `python -m cProfile` counts, which on a shared machine is mostly waiting for a CPU); prints its
functions by cumulative CPU.
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # scripts/bench.py: clean-up, projects, daemons
import bench_peers  # the drains

TREE = Path(__file__).resolve().parents[1]
RUNS = {"4-way": (200, 4, False), "chain": (50, 1, True)}
WRAPPER = """  # (its settings come in BENCH_DAEMON_* variables: bench.start_daemon drops AGENTD_* ones)
import atexit, os, resource, runpy, sys
passes = [0]
def _report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_DAEMON_SELF_CPU"], "w") as out:
        out.write(f"{usage.ru_utime + usage.ru_stime} {passes[0]}\\n")
atexit.register(_report)
from agentd.run import daemon as _daemon  # count the passes that recorded or claimed (a transaction each)
_pass = _daemon.Daemon._pass
def _counted(self, report, done, *, look):
    _pass(self, report, done, look=look)
    passes[0] += bool(report.claimed or report.finished)
_daemon.Daemon._pass = _counted
profile = os.environ.get("BENCH_DAEMON_PROFILE")
sys.argv = ["agentd", *sys.argv[1:]]
if profile:
    import cProfile, time
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        runpy.run_module("agentd", run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(profile)
else:
    runpy.run_module("agentd", run_name="__main__", alter_sys=True)
"""


def baseline_src(base: Path, ref: str) -> Path:
    """A folder holding ``ref``'s src/ and schemas/ (git archive: the worktree is not touched)."""
    folder = base / f"baseline-{ref.replace('/', '-')}"
    folder.mkdir()
    command = ["git", "-C", str(TREE), "archive", ref, "src", "schemas"]
    archive = subprocess.run(command, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def drain(cleanup: bench.Cleanup, base: Path, run: str, tasks: bool, src: Path | None, out: Path) -> tuple[float, int]:
    """One drain; the daemon's own CPU seconds and its passes that recorded or claimed (from the wrapper's file)."""
    count, way, chain = RUNS[run]
    if src is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = str(src)
    try:
        bench_peers.agentd_drain(cleanup, base, count if tasks else 0, way, chain)
    finally:
        os.environ.pop("PYTHONPATH", None)
    cpu, passes = out.read_text().split()
    return float(cpu), int(passes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (medians reported)")
    parser.add_argument("--baseline", metavar="REF", help="also run this commit's src/ (e.g. main), interleaved")
    parser.add_argument("--profile", metavar="FILE", help="also profile one 4-way run's CPU time into FILE")
    args = parser.parse_args(argv)
    cleanup = bench.Cleanup()
    base = Path(tempfile.mkdtemp(prefix="agentd-daemon-cpu-"))
    wrapper = base / "wrapper.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    out = base / "self-cpu"
    os.environ["BENCH_DAEMON_SELF_CPU"] = str(out)
    bench.agentd_argv = lambda: [sys.executable, str(wrapper)]  # the drains start the daemon through the wrapper
    # This tree's src/ named, not left to the interpreter: the venv's editable install may be another worktree's.
    trees: dict[str, Path | None] = {"this tree": TREE / "src"}
    if args.baseline:
        trees[args.baseline] = baseline_src(base, args.baseline)
    cpu: dict[tuple[str, str, bool], list[float]] = {}
    passes: dict[tuple[str, str], list[int]] = {}
    try:
        print(f"load {os.getloadavg()[0]:.2f} at start", file=sys.stderr)
        for _ in range(args.repeat):
            for run in RUNS:
                for name, src in trees.items():
                    for tasks in (True, False):
                        seconds, count = drain(cleanup, base, run, tasks, src, out)
                        cpu.setdefault((run, name, tasks), []).append(seconds)
                        if tasks:
                            passes.setdefault((run, name), []).append(count)
        print(
            "| run | agentd | daemon CPU, the run | daemon CPU, an empty queue | daemon CPU per task "
            "| passes per task |"
        )
        print("|---|---|---:|---:|---:|---:|")
        for run, (count, _, _) in RUNS.items():
            for name in trees:
                full = statistics.median(cpu[run, name, True])
                empty = statistics.median(cpu[run, name, False])
                per_task = (full - empty) / count * 1000
                per_pass = statistics.median(passes[run, name]) / count
                print(
                    f"| {run} | {name} | {full * 1000:,.0f} ms | {empty * 1000:,.0f} ms | {per_task:.2f} ms "
                    f"| {per_pass:.2f} |"
                )
        print(f"load {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
        if args.profile:
            os.environ["BENCH_DAEMON_PROFILE"] = str(Path(args.profile).resolve())
            try:
                drain(cleanup, base, "4-way", True, TREE / "src", out)
            finally:
                del os.environ["BENCH_DAEMON_PROFILE"]
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats("agentd/(run|store|core)", 40)
    finally:
        cleanup.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
