"""CPU per queue transaction of the file store on a big queue, this tree against earlier commits.

One pass is what a daemon's pass does to the queue: a ``read()`` and a ``FileStore.transaction`` that completes the
previous task (``done``) and claims the next one (``in_progress`` with a lease), on a queue of FINAL done tasks of
~600 bytes (10,000: a 6 MB file) and the ready ones. The CPU is the thread's (``time.thread_time``), measured in a
child process per run (a ``--baseline`` commit's runs import that commit's ``src/``), runs interleaved, medians.
``--outside K``: another store saves the file (one done task's notes) before every K-th pass.

    .venv/bin/python scripts/bench_queue_tx.py --baseline main --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench, bench_peers
from agentd import config as config_mod
from agentd.store.file.queuefile import QueueStore
from agentd.store.file.store import FileStore

passes, outside, final = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cleanup = bench.Cleanup()
try:
    filler = [bench.realistic_task(n, "done", prefix="F") for n in range(final)]
    base = cleanup.folder("queue-tx")
    root = bench_peers.agentd_project(cleanup, base, "q", [*filler, *bench_peers.ready_tasks(passes + 1)], 4)
    config = config_mod.load(root=root, environ={})
    store = FileStore(config)
    other = QueueStore(config.queue_path, workflow=config.workflow)
    store.read()
    other.read()
    lease = {"owner": "bench", "role": "builder", "host": "h", "pid": 1, "acquired": "2026-01-01T00:00:00Z", "ttl": 60}

    def change(txn, n):
        previous = txn.task(f"T{n - 1:04d}") if n else None
        if previous is not None:
            previous.update(status="done", lease=None)
        txn.task(f"T{n:04d}").update(status="in_progress", lease={**lease, "token": n + 1})

    used = 0.0
    for n in range(passes):
        if outside and n % outside == 0:
            other.edit(lambda d, n=n: d.task(f"F{n % final:05d}").update(notes=f"saved by a person ({n})"))
        start = time.thread_time()
        store.read().tasks
        store.transaction(lambda txn, n=n: change(txn, n))
        used += time.thread_time() - start
    print(used / passes * 1000)
finally:
    cleanup.close()
"""


def run(src: Path, passes: int, outside: int, final: int, tmp: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "TMPDIR": tmp}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "scripts"), str(passes), str(outside), str(final)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="append", default=[], metavar="REF", help="also run this git commit")
    parser.add_argument("--repeat", type=int, default=3, metavar="N")
    parser.add_argument("--passes", type=int, default=100, metavar="N")
    parser.add_argument("--final", type=int, default=10_000, metavar="N", help="done tasks before the ready ones")
    parser.add_argument("--outside", type=int, default=0, metavar="K", help="an outside save before every K-th pass")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentd-queue-tx-") as tmp:
        trees = {"this tree": ROOT / "src"}
        for ref in args.baseline:
            folder = Path(tmp) / f"baseline-{len(trees)}"
            folder.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src", "schemas"], capture_output=True)
            subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
            trees[f"at {ref}"] = folder / "src"
        found: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.repeat):
            for name, src in trees.items():
                found[name].append(run(src, args.passes, args.outside, args.final, tmp))
        load = os.getloadavg()[0]
    print(
        f"CPU per pass (read + claim/complete transaction), {args.final:,} final tasks, outside every "
        f"{args.outside or '-'}, {args.repeat} runs, load {load:.1f} at the end:"
    )
    for name, values in found.items():
        print(f"  {name}: {statistics.median(values):.1f} ms (runs: {', '.join(f'{v:.1f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
