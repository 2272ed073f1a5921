#!/usr/bin/env python3
"""`make bench`: measure agentd on this machine and write docs/benchmarks.md.

Every measurement runs real processes in its own temporary project folder (removed afterwards, also on Ctrl-C):

1. bare limit        stdlib json + fcntl.flock + fsync + os.replace: the fastest possible locked transaction
2. agentd tx         the same change through agentd.store.file.queuefile.QueueStore.transaction
3. throughput        tasks/s end to end, no-op commands, one builder daemon, WIP 8 (--drain --concurrency 8)
4. pickup latency    task added / dependency done -> the task's command starting, daemon at --interval 60
5. pipeline          one task through five roles (five daemons at --interval 60), added -> done
6. recovery          holder daemon SIGKILLed mid-task -> the task's command restarted by an idle peer
7. idle cost         CPU % and RSS of an idle daemon
8. scaling           transaction cost per MB of queue, from 10 to 10,000 tasks
9. heartbeat age     a running task's lease heartbeat as a peer sees it, daemon busy on a 20,000-task queue
10. big-queue pickup  task added by `agentd queue add` -> its command starting, at 1,000 / 5,000 / 20,000 tasks

Targets that are missed are reported plainly, with a cProfile of the slow path.

    .venv/bin/python scripts/bench.py --write docs/benchmarks.md     # the full profile (what `make bench` runs)
    .venv/bin/python scripts/bench.py --quick                         # a fast smoke run, printed to stdout
    .venv/bin/python scripts/bench.py --only bigpickup --update docs/benchmarks.md   # re-measure one section
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import fcntl
import hashlib
import itertools
import json
import math
import os
import platform
import pstats
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT / "src") not in sys.path:  # run from a checkout without an editable install
    sys.path.insert(1, str(PROJECT / "src"))

from agentd import __version__  # noqa: E402
from agentd import config as config_mod  # noqa: E402
from agentd.store.file.leases import LeaseDir  # noqa: E402
from agentd.store.file.queuefile import QueueStore  # noqa: E402

SIZES = (10, 100, 1_000, 10_000)
WIP = 8
QUEUE_NAME = "SPRINT_QUEUE.json"

# targets
THROUGHPUT_RATIO = 0.5  # x the bare transaction rate at 1,000 tasks
LATENCY_MEDIAN_MS = 100.0
BIG_PICKUP_SIZES = (1_000, 5_000, 20_000)
BIG_PICKUP_TARGET_MS = {5_000: 100.0, 20_000: 250.0}  # median pickup (none at 1,000: the 100-ms target above rules)
BIG_PICKUP_FIRST_AFTER = 3.0  # s after the daemon logged its start: the first add (the first pass may still run)
PIPELINE_S = 1.0
RECOVERY_S = 2.0
IDLE_CPU_PCT = 0.5
IDLE_RSS_MB = 40.0
HEARTBEAT_MARGIN_S = 1.0  # a peer may see a heartbeat at most `heartbeat` + this old
HEARTBEAT_S = 1.0  # the heartbeat interval of the heartbeat-age measurement
HEARTBEAT_QUEUE = 20_000
OUTSIDE_CPU_NOTE = 10.0  # % of the machine used by other processes during the run before the page warns
SCALING_ALLOWANCE = 1.15  # transaction time may grow up to 15 % more than the file before it counts as faster

PIPELINE = (  # role, claims, working, on_success: five roles chained so that one task visits every one of them
    ("planner", "needs_plan", "planning", "ready"),
    ("builder", "ready", "in_progress", "awaiting_test"),
    ("tester", "awaiting_test", "testing", "needs_adapt"),
    ("refiner", "needs_adapt", "adapting", "ready_for_integrator"),
    ("integrator", "ready_for_integrator", "integrating", "done"),
)
WORDS = ("importer", "parser", "scheduler", "exporter", "report", "cache", "index", "migration", "api", "docs")


def log(message: str) -> None:
    """Progress on stderr (the page goes to the file or stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- profiles ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    name: str
    sizes: tuple[int, ...]
    repeat: int  # repeats of the transaction-rate and throughput runs (the median is reported)
    min_time: float  # s per transaction-rate repeat (at least 3 transactions)
    latency_samples: int  # per kind (added, dependency done)
    pipeline_runs: int
    recovery_runs: int
    idle_seconds: float
    completions: tuple[tuple[int, int], ...]  # throughput: (queue size, ready tasks to complete; the rest are done)
    heartbeat_seconds: float = 60.0  # how long the heartbeat age is watched
    big_pickup_samples: int = 8  # adds per queue size in the big-queue pickup (the first 3 s after start)


FULL = Profile("full", SIZES, 3, 1.0, 40, 12, 6, 60.0, ((10, 10), (100, 100), (1_000, 400), (10_000, 40)))
QUICK = Profile(
    "quick",
    SIZES,
    1,
    0.2,
    8,
    3,
    2,
    10.0,
    ((10, 10), (100, 100), (1_000, 50)),
    heartbeat_seconds=15.0,
    big_pickup_samples=3,
)


# -- clean-up: every process and folder this script makes --------------------------------------------------------


class Cleanup:
    """Tracks daemons and temporary folders; ``close()`` kills what is left (by pid) and removes the folders."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.procs: list[subprocess.Popen[bytes]] = []
        self.folders: list[Path] = []

    def folder(self, prefix: str, base: Path | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"agentd-bench-{prefix}-", dir=base))
        self.folders.append(path)
        return path

    def leftovers(self) -> list[int]:
        """Processes whose working folder is inside one of our folders (daemons, shims, task commands)."""
        roots = [str(f.resolve()) for f in self.folders]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
                found.append(int(entry.name))
        return found

    def stop_procs(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.procs = [p for p in self.procs if p.poll() is None]
        deadline = time.monotonic() + 5
        while True:
            left = self.leftovers()
            if not left:
                return
            if time.monotonic() > deadline:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() > deadline + 5:
                    log(f"warning: processes still running in the bench folders: {left}")
                    return
            time.sleep(0.1)

    def close(self) -> None:
        self.stop_procs()
        for path in self.folders:
            if self.keep:
                log(f"kept {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)
        self.folders = []


# -- queues and projects ---------------------------------------------------------------------------------------------


def realistic_task(index: int, status: str = "ready", deps: Sequence[str] = (), prefix: str = "B") -> dict[str, Any]:
    """A task shaped like the real OODATCAA ones (15 fields, ~600 bytes indented)."""
    word = WORDS[index % len(WORDS)]
    return {
        "id": f"{prefix}{index:05d}",
        "title": f"Step {index}: {word} - implement, wire up and document the {word} changes",
        "type": "Build",
        "complexity": "SML"[index % 3],
        "status": status,
        "priority": index % 7 + 1,
        "agent": None,
        "lease": None,
        "dependencies": list(deps),
        "objective": "SPRINT-2025-002",
        "sprint": "2",
        "branch": f"feat/{prefix}{index:05d}-{word}",
        "estimated_time": f"{30 + index % 5 * 15} min",
        "created": "2025-10-04T19:30:00+02:00",
        "notes": f"Follow the plan in docs/plans/{word}.md; keep the public API stable; add tests for every "
        f"acceptance criterion and update the changelog (task {index}).",
    }


def make_queue(size: int, ready: int | None = None) -> dict[str, Any]:
    """``size`` tasks; the first ``ready`` are ready, the rest done."""
    ready = size if ready is None else ready
    return {
        "sprint": 2,
        "status": "in_progress",
        "sprint_id": "BENCH-001",
        "wip_limits": {"builder": WIP},
        "tasks": [realistic_task(i, "ready" if i < ready else "done") for i in range(size)],
        "metadata": {"generated_by": "scripts/bench.py"},
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(root: Path, roles: dict[str, dict[str, Any]], defaults: dict[str, Any] | None = None) -> None:
    lines = [f'queue = "{QUEUE_NAME}"', "roles_replace_defaults = true", "[defaults]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in (defaults or {}).items()]
    for name, spec in roles.items():
        lines.append(f"[roles.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in spec.items()]
    (root / "agentd.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def builder_role(command: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {"builder": {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "command": command}}


def project(cleanup: Cleanup, base: Path, name: str, doc: dict[str, Any], roles: dict[str, dict[str, Any]]) -> Path:
    root = cleanup.folder(name, base)
    write_config(root, roles, defaults={"interval": 60})
    write_json(root / QUEUE_NAME, doc)
    return root


def store_for(root: Path) -> QueueStore:
    config = config_mod.load(root=root, environ={})
    return QueueStore(config.queue_path, workflow=config.workflow, lock_timeout=config.lock_timeout)


def read_tasks(root: Path) -> dict[str, dict[str, Any]]:
    with open(root / QUEUE_NAME, encoding="utf-8") as handle:
        return {t["id"]: t for t in json.load(handle)["tasks"]}


# -- the CPU of a whole process tree -----------------------------------------------------------------------------------


class CpuGroup:
    """The CPU time of every process a command starts, its threads, grandchildren and re-parented descendants
    included: a cgroup of its own (as root, with cgroup v1's cpuacct or cgroup v2 mounted), which the started process
    joins before it execs (:meth:`enter`, a ``preexec_fn``). ``getrusage`` cannot say this for agentd: its zygote
    outlives the daemon by a moment and is never waited for, so the supervisors it reaps fall out of the daemon's
    children's figure. :func:`cpu_group` returns None where no cgroup can be made (not root, no cgroupfs)."""

    def __init__(self, path: Path, usage: Callable[[Path], float]) -> None:
        self.path = path
        self._usage = usage
        self._procs = str(path / "cgroup.procs")

    def enter(self) -> None:  # in the child, between fork and exec
        with open(self._procs, "w") as handle:
            handle.write(str(os.getpid()))

    def seconds(self, settle: float = 5.0) -> float:
        """The group's CPU once every process in it has exited (waiting up to *settle* s for stragglers)."""
        deadline = time.monotonic() + settle
        while Path(self._procs).read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._usage(self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            for pid in Path(self._procs).read_text().split():  # stragglers (none, normally) back to the root group
                Path(self.path.parent, "cgroup.procs").write_text(pid)
            os.rmdir(self.path)


def _v1_usage(path: Path) -> float:
    return int((path / "cpuacct.usage").read_text()) / 1e9  # ns


def _v2_usage(path: Path) -> float:
    for line in (path / "cpu.stat").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise OSError(f"{path}/cpu.stat has no usage_usec")


def cpu_group() -> CpuGroup | None:
    """A new, empty :class:`CpuGroup`, or None (not root, or no writable cgroup filesystem)."""
    if os.geteuid() != 0:
        return None
    name = f"agentd-bench-{os.getpid()}-{next(_GROUPS)}"
    for root, usage in ((Path("/sys/fs/cgroup/cpuacct"), _v1_usage), (Path("/sys/fs/cgroup"), _v2_usage)):
        if usage is _v2_usage and not (root / "cgroup.controllers").is_file():
            continue  # v1's root, not v2's
        if usage is _v1_usage and not (root / "cpuacct.usage").is_file():
            continue
        try:
            (root / name).mkdir()
        except OSError:
            continue
        group = CpuGroup(root / name, usage)
        try:
            group.seconds(settle=0)
        except OSError:
            group.remove()
            continue
        return group
    return None


_GROUPS = itertools.count()


# -- daemons -----------------------------------------------------------------------------------------------------------


def agentd_argv() -> list[str]:
    """The agentd console script of this interpreter's environment (else ``python -m agentd``)."""
    script = Path(sys.executable).with_name("agentd")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "agentd"]


def display_argv(argv: Sequence[str]) -> str:
    out = []
    for part in argv:
        with contextlib.suppress(ValueError):
            if os.path.isabs(part) and Path(part).is_relative_to(PROJECT):
                part = os.path.relpath(part, PROJECT)
        out.append(part)
    return shlex.join(out)


def start_daemon(
    cleanup: Cleanup,
    root: Path,
    role: str,
    *extra: str,
    profile_to: Path | None = None,
    group: CpuGroup | None = None,
) -> subprocess.Popen[bytes]:
    """A real daemon in its own session (Ctrl-C reaches this script only), stderr to a file in the project; in
    *group* (its CPU and its descendants') when given."""
    argv = agentd_argv()
    if profile_to is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "agentd"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    err = open(root / f"daemon-{role}-{len(cleanup.procs)}.err", "wb")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            [*argv, "--root", str(root), "--role", role, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=root,
            env=env,
            start_new_session=True,
            preexec_fn=group.enter if group is not None else None,  # one write in the child, no lock taken
        )
    finally:
        err.close()
    cleanup.procs.append(proc)
    return proc


def events(root: Path) -> Iterator[dict[str, Any]]:
    path = root / ".agentd" / "events.jsonl"
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def event_time(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(event["time"]).timestamp()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def wait_started(root: Path, proc: subprocess.Popen[bytes], settle: float = 0.3, timeout: float = 30) -> None:
    """Until the daemon logged daemon-started (then ``settle`` s for its first pass)."""

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} at start-up (see {root}/daemon-*.err)")
        return any(e.get("event") == "daemon-started" and e.get("pid") == proc.pid for e in events(root))

    wait_for(up, timeout, "the daemon to start", every=0.02)
    time.sleep(settle)


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def exec_times(root: Path, task_id: str) -> dict[int, float]:
    """token -> time the shim wrote its ``exec`` line (just before it starts the command), from the task logs."""
    found: dict[int, float] = {}
    folder = root / ".agentd" / "logs" / "tasks" / task_id
    with contextlib.suppress(FileNotFoundError):
        for path in folder.glob("*.log"):
            with contextlib.suppress(OSError):
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.split(" ", 3)
                    if len(parts) >= 3 and parts[0] == "agentd:" and parts[2] == "exec":
                        found[int(path.stem)] = dt.datetime.fromisoformat(parts[1]).timestamp()
                        break
    return found


# -- statistics ----------------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def p99(values: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (with fewer than 100 samples: the largest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def timed_rate(step: Callable[[int], None], min_time: float, min_count: int = 3) -> float:
    """Transactions per second: ``step(i)`` repeated for at least ``min_time`` s and ``min_count`` times."""
    count = 0
    start = time.perf_counter()
    while True:
        step(count)
        count += 1
        elapsed = time.perf_counter() - start
        if count >= min_count and elapsed >= min_time:
            return count / elapsed


# -- 1. bare limit ---------------------------------------------------------------------------------------------------


def toggle(task: dict[str, Any]) -> None:
    task["status"] = "awaiting_test" if task["status"] == "ready" else "ready"


def bare_transaction(path: Path, index: int) -> None:
    """The minimal locked transaction: flock, read, parse, change one field, dump, fsync, rename, unlock."""
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(path, "rb") as handle:
            doc = json.loads(handle.read())
        tasks = doc["tasks"]
        toggle(tasks[index % len(tasks)])
        payload = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    finally:
        os.close(lock)  # releases the flock


def interleaved(steps: dict[int, Callable[[int], None]], repeat: int, min_time: float) -> dict[int, float]:
    """Median rate per size; the sizes take turns within each repeat, so a burst of outside load hits them alike."""
    runs: dict[int, list[float]] = {size: [] for size in steps}
    for step in steps.values():
        step(0)  # warm-up (files cached, schemas compiled)
    for _ in range(repeat):
        for size, step in steps.items():
            runs[size].append(timed_rate(lambda i, s=step: s(i + 1), min_time))
    return {size: median(values) for size, values in runs.items()}


def bare_limit(sizes: Sequence[int], repeat: int, min_time: float, base: Path | None = None) -> dict[int, float]:
    """Median transactions/s of :func:`bare_transaction` per queue size."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-bare-", dir=base) as folder:
        steps: dict[int, Callable[[int], None]] = {}
        for size in sizes:
            path = Path(folder) / f"q{size}.json"
            write_json(path, make_queue(size))
            steps[size] = lambda index, path=path: bare_transaction(path, index)
        return interleaved(steps, repeat, min_time)


# -- 2. agentd transaction -------------------------------------------------------------------------------------------


def agentd_transaction(
    sizes: Sequence[int], repeat: int, min_time: float, base: Path | None = None
) -> dict[int, float]:
    """Median transactions/s of QueueStore.transaction changing one task's status, per queue size."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-tx-", dir=base) as folder:
        steps: dict[int, Callable[[int], None]] = {}
        for size in sizes:
            root = Path(folder) / f"p{size}"
            root.mkdir()
            write_config(root, builder_role(["true"]))
            write_json(root / QUEUE_NAME, make_queue(size))
            store = store_for(root)

            def step(index: int, store: QueueStore = store) -> None:
                store.transaction(lambda doc: toggle(doc["tasks"][index % len(doc["tasks"])]))

            steps[size] = step
        return interleaved(steps, repeat, min_time)


def profile_transaction(size: int, count: int, base: Path) -> str:
    """cProfile of ``count`` QueueStore transactions on a queue of ``size`` tasks."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-prof-", dir=base) as folder:
        root = Path(folder)
        write_config(root, builder_role(["true"]))
        write_json(root / QUEUE_NAME, make_queue(size))
        store = store_for(root)
        store.transaction(lambda doc: toggle(doc["tasks"][0]))
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(count):
            store.transaction(lambda doc, i=i: toggle(doc["tasks"][(i + 1) % size]))
        profiler.disable()
        return top_entries(pstats.Stats(profiler))


KEY_FUNCTIONS = {  # label -> (file suffix, function name)
    "`QueueStore._validate`: schema + cross-task checks of every read": ("agentd/store/file/queuefile.py", "_validate"),
    "`QueueStore._check_new`: checks of what will be written": ("agentd/store/file/queuefile.py", "_check_new"),
    "`jsonedit.apply`: the format-preserving edit": ("agentd/store/file/jsonedit.py", "apply"),
    "`QueueStore._write`: temp, fsync, compare, rename, folder fsync": ("agentd/store/file/queuefile.py", "_write"),
    "`validate.conflict_markers`: regex over the whole text": ("agentd/core/validate.py", "conflict_markers"),
    "`model.views`: typed Task views of every task": ("agentd/core/model.py", "views"),
    "`runner.launch`: starting a shim": ("agentd/run/runner.py", "launch"),
    "`json` decoding (stdlib)": ("json/decoder.py", "raw_decode"),
}
WRAPPERS = ("click/", "<frozen runpy>", "<string>", "<built-in method builtins.exec>", "agentd/__main__", "agentd/cli/")


def cache_probe(size: int, base: Path) -> str:
    """Whether a read right after agentd's own write validates the whole queue again (markdown)."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-cache-", dir=base) as folder:
        root = Path(folder)
        write_config(root, builder_role(["true"]))
        write_json(root / QUEUE_NAME, make_queue(size))
        store = store_for(root)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("first `read()` (nothing validated yet)", store.read),
            ("`read()` again, same bytes", store.read),
            ("`transaction()` changing one status", lambda: store.transaction(lambda doc: toggle(doc["tasks"][1]))),
            ("`transaction()` again at once", lambda: store.transaction(lambda doc: toggle(doc["tasks"][2]))),
            ("`read()` right after that write", store.read),
            ("`read()` again, same bytes", store.read),
        ]
        took = []
        for _label, action in steps:
            start = time.perf_counter()
            action()
            took.append(1000 * (time.perf_counter() - start))
    first, cached, after_write = took[0], took[1], took[4]
    revalidates = after_write - cached > 0.5 * (first - cached)
    verdict = (
        "a read right after agentd's own write costs about as much as the first read: agentd validates what it"
        " has just written all over again"
        if revalidates
        else "a read right after agentd's own write costs about as much as a cached read: what agentd writes is"
        " not validated again"
    )
    rows = ["| step | ms |", "|---|---:|"]
    rows += [f"| {label} | {value:.1f} |" for (label, _), value in zip(steps, took, strict=True)]
    return (
        "`QueueStore` skips validation when it reads bytes it has validated before. Here "
        + verdict
        + f" ({after_write:.1f} ms, against {first:.1f} ms for the first read and {cached:.1f} ms for a cached"
        " one).\n\n" + "\n".join(rows)
    )


def top_entries(stats: pstats.Stats, limit: int = 15) -> str:
    """Own time by package, then the functions with the most own and the most cumulative time (markdown)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max([sum(entry[2] for entry in raw.values()), *(entry[3] for entry in raw.values())]) or 1e-9
    rows = []
    groups: dict[str, float] = {}
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        where = short_location(filename, line, name)
        rows.append((tottime, cumtime, calls, where))
        group = package_of(filename, name)
        groups[group] = groups.get(group, 0.0) + tottime
    own = sorted(rows, key=lambda r: r[0], reverse=True)[:limit]
    cumulative = [r for r in sorted(rows, key=lambda r: r[1], reverse=True) if not r[3].startswith(WRAPPERS)][:limit]
    out = [f"Profiled time: {total:.2f} s.", "", "Where agentd's own steps stand (cumulative, callees included):", ""]
    out += ["| cumulative s | cumulative % | calls | step |", "|---:|---:|---:|---|"]
    steps = []
    for label, (path, func) in KEY_FUNCTIONS.items():
        found = [v for (f, _line, n), v in raw.items() if n == func and f.replace(os.sep, "/").endswith(path)]
        if found:
            cum, calls = sum(v[3] for v in found), sum(v[1] for v in found)
            steps.append((cum, label))
            out.append(f"| {cum:.3f} | {100 * cum / total:.1f} | {calls} | {label} |")
    if steps:
        cum, label = max(steps)
        out[0] += f" **The largest step: {label.split(':')[0]}, {100 * cum / total:.0f} % of it.**"
    out += ["", "Own time by package or module:", ""]
    out += ["| own s | own % | where |", "|---:|---:|---|"]
    out += [f"| {t:.3f} | {100 * t / total:.1f} | {g} |" for g, t in sorted(groups.items(), key=lambda i: -i[1])[:10]]
    out += ["", "Most own time:", ""]
    out += ["| own s | own % | cumulative s | calls | function |", "|---:|---:|---:|---:|---|"]
    out += [f"| {t:.3f} | {100 * t / total:.1f} | {c:.3f} | {n} | `{f}` |" for t, c, n, f in own]
    out += ["", "Most cumulative time (command-line wrappers left out):", ""]
    out += ["| cumulative s | cumulative % | own s | calls | function |", "|---:|---:|---:|---:|---|"]
    out += [f"| {c:.3f} | {100 * c / total:.1f} | {t:.3f} | {n} | `{f}` |" for t, c, n, f in cumulative]
    return "\n".join(out)


def package_of(filename: str, name: str) -> str:
    """``jsonschema``, ``agentd/store/file/queuefile.py``, ``stdlib json``, or a C function's name."""
    if filename == "~":
        return name.replace("<built-in method ", "C: ").replace("<method ", "C: ").rstrip(">")
    parts = Path(filename).parts
    if "site-packages" in parts:
        index = len(parts) - 1 - parts[::-1].index("site-packages")
        return parts[index + 1].removesuffix(".py") if index + 1 < len(parts) else filename
    if "agentd" in parts:
        index = len(parts) - 1 - parts[::-1].index("agentd")
        return "/".join(parts[index:])
    if filename.startswith("<attrs generated"):
        return "jsonschema (attrs-generated validator methods)"
    if filename.startswith("<"):
        return filename
    folder = Path(filename).parent.name
    return f"stdlib {folder if folder and not folder.startswith('python3') else Path(filename).stem}"


def short_location(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a C function: "<built-in method ...>"
    path = Path(filename)
    for marker in ("agentd", "site-packages"):
        if marker in path.parts:
            index = len(path.parts) - 1 - path.parts[::-1].index(marker)
            rel = "/".join(path.parts[index + (1 if marker == "site-packages" else 0) :])
            return f"{rel}:{line}({name})"
    return f"{path.name}:{line}({name})"


# -- 3. throughput ---------------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    size: int
    completions: int
    walls: list[float] = field(default_factory=list)
    rate: float = math.nan  # tasks/s after start-up is subtracted


def run_drain(cleanup: Cleanup, root: Path, profile_to: Path | None = None, timeout: float = 900) -> float:
    """Wall time of one ``--drain`` builder daemon from start to exit."""
    start = time.perf_counter()
    proc = start_daemon(
        cleanup, root, "builder", "--drain", "--concurrency", str(WIP), "--interval", "60", profile_to=profile_to
    )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the drain did not finish in {timeout:g} s") from None
    wall = time.perf_counter() - start
    cleanup.procs.remove(proc)
    if code != 0:
        raise RuntimeError(f"agentd --drain exited with {code} (see {root}/daemon-*.err)")
    return wall


def startup_cost(cleanup: Cleanup, base: Path, repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        root = project(cleanup, base, "startup", {"wip_limits": {"builder": WIP}, "tasks": []}, builder_role(["true"]))
        walls.append(run_drain(cleanup, root))
        remove(cleanup, root)
    return walls


def remove(cleanup: Cleanup, root: Path) -> None:
    if not cleanup.keep:
        shutil.rmtree(root, ignore_errors=True)
        cleanup.folders.remove(root)


def throughput(cleanup: Cleanup, base: Path, size: int, ready: int, repeat: int, startup: float) -> Throughput:
    result = Throughput(size, ready)
    for _ in range(repeat):
        root = project(cleanup, base, f"tput{size}", make_queue(size, ready), builder_role(["true"]))
        result.walls.append(run_drain(cleanup, root))
        statuses = [t["status"] for t in read_tasks(root).values()]
        moved = statuses.count("awaiting_test")
        if moved != ready:
            raise RuntimeError(f"throughput at {size}: {moved} of {ready} tasks reached awaiting_test")
        remove(cleanup, root)
    result.rate = ready / max(1e-9, median(result.walls) - startup)
    return result


def profile_throughput(cleanup: Cleanup, base: Path, size: int, ready: int) -> str:
    root = project(cleanup, base, f"prof{size}", make_queue(size, ready), builder_role(["true"]))
    out = root / "daemon.prof"
    run_drain(cleanup, root, profile_to=out)
    text = top_entries(pstats.Stats(str(out)))
    remove(cleanup, root)
    return text


# -- 4. pickup latency -----------------------------------------------------------------------------------------------


@dataclass
class Latency:
    added: list[float] = field(default_factory=list)  # s, to the shim's exec line
    added_cmd: list[float] = field(default_factory=list)  # s, to the time the command itself recorded
    dependency: list[float] = field(default_factory=list)
    dependency_cmd: list[float] = field(default_factory=list)


def command_times(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(encoding="utf-8").splitlines():
            task_id, _, stamp = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[task_id] = float(stamp)
    return out


def wait_exec(root: Path, task_id: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> float:
    """The time the shim wrote the exec line of the task's first run."""

    def seen() -> float | None:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} (see {root}/daemon-*.err)")
        times = exec_times(root, task_id)
        return min(times.values()) if times else None

    value: float = wait_for(seen, timeout, f"{task_id} to start", every=0.01)
    return value


def wait_status(root: Path, task_id: str, statuses: set[str], timeout: float = 30) -> None:
    def reached() -> bool:
        with contextlib.suppress(ValueError, KeyError, FileNotFoundError):
            return read_tasks(root)[task_id]["status"] in statuses
        return False

    wait_for(reached, timeout, f"{task_id} to reach {sorted(statuses)}", every=0.02)


def dead_webhook(cleanup: Cleanup, root: Path) -> socket.socket:
    """A hook on every event POSTing to an endpoint that accepts connections and never answers, and the automation
    process that delivers it (each delivery hangs for its timeout, retried): hooks must never delay a claim."""
    endpoint = socket.socket()
    endpoint.bind(("127.0.0.1", 0))
    endpoint.listen(1024)  # never accepted: every POST waits for its timeout
    with open(root / "agentd.toml", "a", encoding="utf-8") as handle:
        handle.write(
            f'\n[[hooks]]\nname = "dead"\non = ["*"]\nwebhook = "http://127.0.0.1:{endpoint.getsockname()[1]}/"\n'
            "timeout = 10\nretries = 5\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    proc = subprocess.Popen(
        [*agentd_argv(), "--root", str(root), "automation"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
        env=env,
        start_new_session=True,
    )
    cleanup.procs.append(proc)
    wait_for(lambda: any(e.get("event") == "automation-active" for e in events(root)), 60, "automation to be active")
    return endpoint


def pickup_latency(
    cleanup: Cleanup, base: Path, samples: int, profile_to: Path | None = None, *, with_dead_webhook: bool = False
) -> Latency:
    """A builder daemon at --interval 60 on an empty queue; tasks added one at a time, then dependencies finished.
    ``with_dead_webhook``: with automation running a hook on every event to an endpoint that never answers."""
    root = cleanup.folder("latency-dead-webhook" if with_dead_webhook else "latency", base)
    stamps = root / "started.txt"
    command = ["sh", "-c", f"echo {{task_id}} $(date +%s.%N) >> {shlex.quote(str(stamps))}"]
    write_config(root, builder_role(command), defaults={"interval": 60})
    write_json(root / QUEUE_NAME, {"wip_limits": {"builder": WIP}, "tasks": []})
    store = store_for(root)
    endpoint = dead_webhook(cleanup, root) if with_dead_webhook else None
    proc = start_daemon(cleanup, root, "builder", "--interval", "60", profile_to=profile_to)
    rng = random.Random(5)
    added: dict[str, float] = {}
    unblocked: dict[str, float] = {}
    result = Latency()
    try:
        wait_started(root, proc, settle=0.5)
        for i in range(samples):
            task_id = f"L{i:05d}"
            store.transaction(lambda doc, i=i: doc["tasks"].append(realistic_task(i, prefix="L")))
            added[task_id] = time.time()
            result.added.append(wait_exec(root, task_id, proc) - added[task_id])
            wait_status(root, task_id, {"awaiting_test"})
            time.sleep(0.1 + rng.random() * 0.1)
        for i in range(samples):
            dep, task_id = f"D{i:05d}", f"X{i:05d}"

            def add_pair(doc: dict[str, Any], i: int = i) -> None:
                doc["tasks"].append(realistic_task(i, "awaiting_test", prefix="D"))  # not the builder's: waits
                doc["tasks"].append(realistic_task(i, "blocked", deps=[f"D{i:05d}"], prefix="X"))

            store.transaction(add_pair)
            time.sleep(0.15 + rng.random() * 0.1)  # the daemon has seen the pair and gone back to sleep

            def finish(doc: dict[str, Any], dep: str = dep) -> None:
                next(t for t in doc["tasks"] if t["id"] == dep)["status"] = "done"

            store.transaction(finish)
            unblocked[task_id] = time.time()
            result.dependency.append(wait_exec(root, task_id, proc) - unblocked[task_id])
            wait_status(root, task_id, {"awaiting_test"})
            time.sleep(0.1 + rng.random() * 0.1)
        recorded = wait_for(
            lambda: (r := command_times(stamps)) and len(r) >= 2 * samples and r, 10, "the commands' own records"
        )
        result.added_cmd = [recorded[t] - t0 for t, t0 in added.items() if t in recorded]
        result.dependency_cmd = [recorded[t] - t0 for t, t0 in unblocked.items() if t in recorded]
    finally:
        stop_daemon(proc)
        cleanup.procs.remove(proc)
        if endpoint is not None:
            endpoint.close()
    return result


# -- 10. big-queue pickup --------------------------------------------------------------------------------------------


@dataclass
class BigPickup:
    size: int
    file_bytes: int
    first: float  # s, the add made BIG_PICKUP_FIRST_AFTER s after the daemon started
    steady: list[float] = field(default_factory=list)  # s, the later adds
    add_cost: list[float] = field(default_factory=list)  # s, each `agentd queue add` process from start to exit
    cpu: list[float] = field(default_factory=list)  # s of the daemon's CPU from each add to its task's exec line

    @property
    def all(self) -> list[float]:
        return [self.first, *self.steady]


def _identity(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        info = path.stat()
        return (info.st_ino, info.st_mtime_ns)
    return None


def add_and_time(root: Path, task_id: str) -> tuple[float, float]:
    """Run a real ``agentd queue add`` and return (when the queue file was replaced, how long the process took).

    The file's identity is polled every 2 ms while the process runs: the first change is its rename (the daemon is
    idle, nothing else writes), so the clock starts when the task is in the file, not when the process exits."""
    queue = root / QUEUE_NAME
    before = _identity(queue)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    started = time.time()
    proc = subprocess.Popen(
        [*agentd_argv(), "--root", str(root), "queue", "add", task_id, "--title", f"big-queue pickup {task_id}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=root,
        env=env,
    )
    replaced: float | None = None
    while True:
        if replaced is None and _identity(queue) != before:
            replaced = time.time()
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    ended = time.time()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"agentd queue add {task_id} exited with {proc.returncode}: {err.decode()[-500:]}")
    return (replaced if replaced is not None else ended), ended - started


def wait_finished(root: Path, task_id: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the journal says the task's run finished (cheaper than reading a 12-MB queue again and again)."""

    def done() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode} (see {root}/daemon-*.err)")
        return any(e.get("event") == "finished" and e.get("task") == task_id for e in events(root))

    wait_for(done, timeout, f"{task_id} to finish", every=0.02)


def big_pickup(cleanup: Cleanup, base: Path, size: int, samples: int) -> BigPickup:
    """A builder daemon at --interval 60 on ``size`` done tasks; ready tasks added one at a time by `queue add`."""
    root = project(cleanup, base, f"bigpickup{size}", make_queue(size, ready=0), builder_role(["true"]))
    proc = start_daemon(cleanup, root, "builder", "--interval", "60")
    rng = random.Random(size)
    try:
        wait_started(root, proc, settle=0.0, timeout=120)
        time.sleep(BIG_PICKUP_FIRST_AFTER)
        result: BigPickup | None = None
        for i in range(samples):
            task_id = f"N{i:05d}"
            ticks = cpu_ticks(proc.pid)
            added, took = add_and_time(root, task_id)
            latency = wait_exec(root, task_id, proc, timeout=300) - added
            cpu = (cpu_ticks(proc.pid) - ticks) / os.sysconf("SC_CLK_TCK")
            if result is None:
                result = BigPickup(size, (root / QUEUE_NAME).stat().st_size, latency)
            else:
                result.steady.append(latency)
            result.add_cost.append(took)
            result.cpu.append(cpu)
            wait_finished(root, task_id, proc)
            time.sleep(0.2 + rng.random() * 0.3)
        assert result is not None
        return result
    finally:
        stop_daemon(proc)
        cleanup.procs.remove(proc)
        remove(cleanup, root)


# -- 5. pipeline -----------------------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    totals: list[float] = field(default_factory=list)  # s, added -> the integrator's "finished" (queue says done)
    stages: dict[str, list[float]] = field(default_factory=dict)  # role -> s from the previous stage's end to its own


def pipeline(cleanup: Cleanup, base: Path, runs: int) -> Pipeline:
    root = cleanup.folder("pipeline", base)
    roles = {
        name: {"claims": claims, "working": working, "on_success": success, "command": ["true"]}
        for name, claims, working, success in PIPELINE
    }
    write_config(root, roles, defaults={"interval": 60})
    write_json(root / QUEUE_NAME, {"wip_limits": {name: 1 for name in roles}, "tasks": []})
    store = store_for(root)
    procs = [start_daemon(cleanup, root, name, "--interval", "60") for name in roles]
    result = Pipeline(stages={name: [] for name in roles})
    try:
        for proc in procs:
            wait_started(root, proc, settle=0.0)
        time.sleep(0.5)
        for i in range(runs):
            task_id = f"P{i:05d}"
            store.transaction(lambda doc, i=i: doc["tasks"].append(realistic_task(i, "needs_plan", prefix="P")))
            added = time.time()
            wait_status(root, task_id, {"done"}, timeout=60)
            finished = {
                e["role"]: event_time(e)
                for e in wait_for(
                    lambda t=task_id: (
                        [e for e in events(root) if e.get("event") == "finished" and e.get("task") == t]
                        if sum(1 for e in events(root) if e.get("event") == "finished" and e.get("task") == t) >= 5
                        else None
                    ),
                    10,
                    f"{task_id}'s finished events",
                )
            }
            previous = added
            for name, *_ in PIPELINE:
                result.stages[name].append(finished[name] - previous)
                previous = finished[name]
            result.totals.append(finished["integrator"] - added)
            time.sleep(0.3 + random.random() * 0.1)
    finally:
        for proc in procs:
            stop_daemon(proc)
            cleanup.procs.remove(proc)
    return result


# -- 6. recovery -----------------------------------------------------------------------------------------------------


def recovery(cleanup: Cleanup, base: Path, runs: int) -> list[float]:
    """Seconds from SIGKILL of the holder to the task's command starting under the idle peer, one project per run."""
    times = []
    for run in range(runs):
        root = cleanup.folder(f"recovery{run}", base)
        write_config(root, builder_role(["sleep", "60"]), defaults={"interval": 60, "grace": 1, "kill_after": 1})
        write_json(root / QUEUE_NAME, {"wip_limits": {"builder": WIP}, "tasks": []})
        store = store_for(root)
        first = start_daemon(cleanup, root, "builder", "--interval", "60")
        second = None
        try:
            wait_started(root, first, settle=0.2)
            task_id = f"R{run:05d}"
            store.transaction(lambda doc, run=run: doc["tasks"].append(realistic_task(run, prefix="R")))
            wait_exec(root, task_id, first)
            (token_one,) = exec_times(root, task_id)
            second = start_daemon(cleanup, root, "builder", "--instance", "b2", "--interval", "60")
            wait_started(root, second, settle=0.5)
            killed = time.time()
            first.kill()
            first.wait()

            def restarted(root: Path = root, task_id: str = task_id, token_one: int = token_one) -> float | None:
                later = {tok: t for tok, t in exec_times(root, task_id).items() if tok != token_one}
                return min(later.values()) if later else None

            times.append(wait_for(restarted, 30, f"{task_id} to restart") - killed)
        finally:
            for proc in (first, second):
                if proc is not None:
                    stop_daemon(proc)
                    cleanup.procs.remove(proc)
            cleanup.stop_procs()
        remove(cleanup, root)
    return times


# -- 9. heartbeat age ------------------------------------------------------------------------------------------------


@dataclass
class HeartbeatAge:
    samples: list[float]  # the age of the running tasks' heartbeats at each look, s
    seconds: float  # how long they were watched
    writes: int  # outside transactions on the queue meanwhile (each wakes the daemon to look again)
    tasks: int


def heartbeat_age(cleanup: Cleanup, base: Path, seconds: float) -> HeartbeatAge:
    """A builder daemon runs 3 tasks (`sleep 600`, heartbeat 1 s) in a 20,000-task queue while another process
    rewrites the queue in a loop (every write wakes the daemon to look at the queue again); a peer reads the lease
    files every 50 ms and records each heartbeat's age on the boot clock, as recovery judges it."""
    root = cleanup.folder("heartbeat", base)
    roles = builder_role(["sleep", "600"])
    write_config(root, roles, defaults={"interval": 60, "heartbeat": HEARTBEAT_S, "lease_ttl": 30, "grace": 1})
    doc = make_queue(HEARTBEAT_QUEUE, ready=3)
    doc["wip_limits"] = {"builder": 3}
    write_json(root / QUEUE_NAME, doc)
    store = store_for(root)
    daemon = start_daemon(cleanup, root, "builder", "--interval", "60")
    folder = LeaseDir(root / ".leases", root)
    writes = 0
    samples: list[float] = []
    try:
        wait_for(lambda: len(list(folder.task_ids())) == 3, 120, "the three tasks to be claimed", every=0.1)
        stop = time.monotonic() + seconds
        writer_done = False

        def write_loop() -> None:
            nonlocal writes
            done_ids = [t["id"] for t in doc["tasks"] if t["status"] == "done"]
            while not writer_done:
                target = random.choice(done_ids)
                store.transaction(
                    lambda d, target=target, n=writes: next(t for t in d["tasks"] if t["id"] == target).update(
                        notes=f"touched {n}"
                    )
                )
                writes += 1

        writer = threading.Thread(target=write_loop, daemon=True)
        writer.start()
        while time.monotonic() < stop:
            for task_id in list(folder.task_ids()):
                seen = folder.observe(task_id)
                if seen is not None and seen.beat_age is not None:
                    samples.append(seen.beat_age)
                elif seen is not None and seen.heartbeat_at is not None:  # a lease without a boot-clock stamp
                    samples.append((dt.datetime.now(dt.UTC) - seen.heartbeat_at).total_seconds())
            time.sleep(0.05)
        writer_done = True
        writer.join(timeout=120)
    finally:
        stop_daemon(daemon)
        cleanup.procs.remove(daemon)
    remove(cleanup, root)
    return HeartbeatAge(samples, seconds, writes, HEARTBEAT_QUEUE)


# -- 7. idle cost ----------------------------------------------------------------------------------------------------


@dataclass
class Idle:
    seconds: float
    cpu_pct: float
    rss_mb: float
    children: int


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def idle_cost(cleanup: Cleanup, base: Path, seconds: float) -> Idle:
    root = cleanup.folder("idle", base)
    write_config(root, builder_role(["true"]), defaults={"interval": 60})
    write_json(root / QUEUE_NAME, {"wip_limits": {"builder": WIP}, "tasks": []})
    proc = start_daemon(cleanup, root, "builder", "--interval", "60")
    try:
        wait_started(root, proc, settle=1.0)
        pids = [proc.pid, *children_of(proc.pid)]
        ticks = {pid: cpu_ticks(pid) for pid in pids}
        start = time.monotonic()
        peak = 0
        while time.monotonic() - start < seconds:
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - start))))
            for pid in children_of(proc.pid):
                if pid not in ticks:
                    ticks[pid] = 0
            peak = max(peak, sum(rss_kb(pid) for pid in ticks if Path(f"/proc/{pid}").exists()))
        wall = time.monotonic() - start
        used = sum(cpu_ticks(pid) - t0 for pid, t0 in ticks.items() if Path(f"/proc/{pid}").exists())
        hz = os.sysconf("SC_CLK_TCK")
        return Idle(wall, 100.0 * used / hz / wall, peak / 1024, len(ticks) - 1)
    finally:
        stop_daemon(proc)
        cleanup.procs.remove(proc)


# -- the machine -----------------------------------------------------------------------------------------------------


def machine(temp: Path) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
    return {
        "CPU": cpu,
        "cores": f"{os.cpu_count()} ({usable} usable by this process)",
        "RAM": ram,
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "temporary folders": f"{temp} ({filesystem(temp)})",
        "agentd": f"{__version__} (commit {commit}, as checked out, local changes included)",
    }


def filesystem(path: Path) -> str:
    best, kind = "", "unknown filesystem"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if (
                len(parts) > 2
                and str(path.resolve()).startswith(parts[1].rstrip("/") + "/")
                and len(parts[1]) > len(best)
            ):
                best, kind = parts[1], parts[2]
    return kind


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, total) clock ticks of the whole machine from /proc/stat, and this process tree's own ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    times = os.times()
    own = round((times.user + times.system + times.children_user + times.children_system) * os.sysconf("SC_CLK_TCK"))
    return busy, busy + idle + iowait, own


def source_digest() -> str:
    """A digest of agentd's source and schemas, to tell whether they changed while the benchmark ran."""
    digest = hashlib.sha256()
    files = sorted([*(PROJECT / "src" / "agentd").rglob("*.py"), *(PROJECT / "schemas").glob("*.json")])
    for path in files:
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


# -- the page --------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    profile: Profile
    command: str
    machine: dict[str, str]
    sizes: dict[int, int] = field(default_factory=dict)  # tasks -> file bytes
    bare: dict[int, float] = field(default_factory=dict)
    agentd: dict[int, float] = field(default_factory=dict)
    startup: list[float] = field(default_factory=list)
    throughput: dict[int, Throughput] = field(default_factory=dict)
    latency: Latency | None = None
    big_pickup: dict[int, BigPickup] = field(default_factory=dict)
    command_big: str = ""
    latency_dead_webhook: Latency | None = None  # the same, with a hook on every event to an endpoint that hangs
    pipeline: Pipeline | None = None
    recovery: list[float] = field(default_factory=list)
    idle: Idle | None = None
    heartbeat: HeartbeatAge | None = None
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (title, markdown)
    elapsed: float = 0.0
    source: tuple[str, str] = ("", "")  # digest of agentd's source at the start and at the end
    outside_cpu: float = math.nan  # % of the machine's CPU used by other processes during the run


def num(value: float, spec: str) -> str:
    """``value`` formatted, or a dash when it was not measured."""
    return "—" if math.isnan(value) else format(value, spec)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def checks(res: Results) -> dict[str, bool]:
    out: dict[str, bool] = {}
    if 1_000 in res.throughput and 1_000 in res.bare:
        out["throughput"] = res.throughput[1_000].rate >= THROUGHPUT_RATIO * res.bare[1_000]
    if res.latency is not None:
        out["latency"] = max(median(res.latency.added), median(res.latency.dependency)) <= LATENCY_MEDIAN_MS / 1000
    for size, target in BIG_PICKUP_TARGET_MS.items():
        if size in res.big_pickup:
            out[f"big-queue pickup at {size:,}"] = median(res.big_pickup[size].all) <= target / 1000
    if res.pipeline is not None:
        out["pipeline"] = median(res.pipeline.totals) <= PIPELINE_S
    if res.recovery:
        out["recovery"] = median(res.recovery) <= RECOVERY_S and max(res.recovery) <= RECOVERY_S
    if res.idle is not None:
        out["idle"] = res.idle.cpu_pct < IDLE_CPU_PCT and res.idle.rss_mb < IDLE_RSS_MB
    if res.heartbeat is not None and res.heartbeat.samples:
        out["heartbeat"] = max(res.heartbeat.samples) < HEARTBEAT_S + HEARTBEAT_MARGIN_S
    scaling = scaling_rows(res)
    if scaling:
        out["scaling"] = not any(row["faster"] for row in scaling)
    return out


def scaling_rows(res: Results) -> list[dict[str, Any]]:
    """Per step between sizes: how much the agentd transaction cost grew against the file size."""
    sizes = [s for s in sorted(res.agentd) if s in res.sizes]
    rows = []
    for small, big in itertools.pairwise(sizes):
        time_factor = res.agentd[small] / res.agentd[big]
        size_factor = res.sizes[big] / res.sizes[small]
        bare = res.bare[small] / res.bare[big] if small in res.bare and big in res.bare else math.nan
        rows.append(
            {
                "from": small,
                "to": big,
                "time": time_factor,
                "size": size_factor,
                "bare": bare,
                "faster": time_factor > max(size_factor, 0 if math.isnan(bare) else bare) * SCALING_ALLOWANCE,
            }
        )
    return rows


def partial_note(res: Results) -> str:
    partial = [t for t in sorted(res.throughput.values(), key=lambda t: t.size) if t.completions < t.size]
    if not partial:
        return ""
    which = " and ".join(f"the {t.size:,}-task queue on {t.completions:,}" for t in partial)
    return (
        f" To keep the run short, {which} completions are measured: only that many tasks are ready and the rest are"
        " done, so the file is as big as the full queue and every transaction pays for all of it."
    )


BIG_BEGIN = "<!-- section 10: big-queue pickup (scripts/bench.py --only bigpickup --update FILE re-measures it) -->"
BIG_END = "<!-- end of section 10 -->"
PEERS_BEGIN = "<!-- issue 18: scripts/bench_peers.py --update FILE writes this section -->"
PEERS_END = "<!-- end of the issue 18 section -->"
PG_BEGIN = "<!-- issue 13: scripts/bench_pg.py --update FILE writes this section -->"
PG_END = "<!-- end of the issue 13 section -->"


def kept_sections(page: Path) -> str:
    """The sections scripts/bench_peers.py and scripts/bench_pg.py --update put on an existing page (kept when this
    script rewrites it)."""
    text = page.read_text(encoding="utf-8") if page.exists() else ""
    kept = ""
    for begin, end in ((PEERS_BEGIN, PEERS_END), (PG_BEGIN, PG_END)):
        if begin in text and end in text:
            kept += "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return kept


def big_pickup_section(res: Results) -> list[str]:
    """Section 10, between markers (``--update`` replaces just this part of an existing page)."""
    lines = [
        BIG_BEGIN,
        "## 10. Pickup on big queues",
        "",
        "A builder daemon at `--interval 60` on a queue of N done tasks (the realistic ~600-byte tasks above), and",
        f"ready tasks added one at a time by a real `agentd queue add` process: the first {BIG_PICKUP_FIRST_AFTER:g} s",
        "after the daemon logged its start (its first look at the whole queue may still be running), the others",
        "0.2–0.5 s after the previous task's run finished. The clock starts when the queue file is replaced (its",
        "inode polled every 2 ms while `queue add` runs) and stops at the shim's `exec` line, as in section 4.",
        "`queue add` is the add process from start to exit (its own read of the queue included).",
        "",
        f"Command: `{res.command_big or res.command}`",
        "",
        f"Measured {dt.date.today().isoformat()}; other processes used {num(res.outside_cpu, '.0f')} % of the machine's"
        f" CPU meanwhile (load average at the end: {res.machine.get('load average at the end', '—')}). Pickup is"
        " CPU-bound at these sizes, so a busy machine inflates it.",
        "",
        "The daemon's CPU is what it spent from the add to the exec line (its look and its claim; its own clock ticks,",
        "10 ms each, from /proc): a busy machine inflates it less than the wall times (shared cores still do).",
        "",
        "| tasks | file | samples | first add | median | min | max | daemon CPU | `queue add` | target | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for size, big in sorted(res.big_pickup.items()):
        target = BIG_PICKUP_TARGET_MS.get(size)
        lines.append(
            f"| {size:,} | {mb(big.file_bytes)} | {len(big.all)} | {ms(big.first)} | {ms(median(big.all))} |"
            f" {ms(min(big.all))} | {ms(max(big.all))} | {ms(median(big.cpu))} | {ms(median(big.add_cost))} |"
            f" {f'median ≤ {target:.0f} ms' if target else '—'} |"
            f" {verdict(median(big.all) <= target / 1000) if target else '—'} |"
        )
    lines += ["", BIG_END]
    return lines


def update_page(page: Path, res: Results) -> None:
    """Replace section 10 of an existing page (or add it before the profiles) and keep the rest as it is."""
    text = page.read_text(encoding="utf-8")
    section = "\n".join(big_pickup_section(res))
    if BIG_BEGIN in text and BIG_END in text:
        head, rest = text.split(BIG_BEGIN, 1)
        text = head + section + rest.split(BIG_END, 1)[1]
    elif "\n## Profiles\n" in text:
        head, rest = text.split("\n## Profiles\n", 1)
        text = head + "\n" + section + "\n\n## Profiles\n" + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    page.write_text(text, encoding="utf-8")


def render(res: Results) -> str:
    p = res.profile
    ok = checks(res)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by scripts/bench.py: do not edit by hand, run `make bench` again. -->",
        "",
        "What agentd costs on one machine: the limit of a locked JSON rewrite, agentd's own transaction, end-to-end",
        "throughput, pickup latency, a five-role pipeline, crash recovery and the cost of an idle daemon. Every figure",
        "comes from real processes in temporary project folders; rates are medians over repeated runs.",
        "",
        "Command (from the project folder):",
        "",
        "```sh",
        res.command,
        "```",
        "",
        f"Profile **{p.name}**: {p.repeat} repeat(s) per rate (median reported), ≥ {p.min_time:g} s per"
        f" transaction-rate repeat, {p.latency_samples} latency samples per trigger, {p.pipeline_runs} pipeline runs,"
        f" {p.recovery_runs} recovery runs, {p.idle_seconds:g} s idle. The whole run took {res.elapsed / 60:.1f} min.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in res.machine.items()],
        "",
        "Other work may share this machine; figures are medians to damp that, and a re-run on a quiet machine is the",
        "reference.",
        "",
        "## Summary",
        "",
        *(
            [
                f"**Warning: agentd's source changed while this ran (digest {res.source[0]} at the start,"
                f" {res.source[1]} at the end), so these figures mix two versions of the code. Run it again.**",
                "",
            ]
            if res.source[0] != res.source[1]
            else []
        ),
        *(
            [
                f"**Note: other processes used {res.outside_cpu:.0f} % of this machine's CPU during the run; the"
                " latency and throughput figures suffer most. A run on a quiet machine is the reference.**",
                "",
            ]
            if res.outside_cpu > OUTSIDE_CPU_NOTE
            else []
        ),
        "| measurement | result | target | verdict |",
        "|---|---|---|---|",
    ]
    if 1_000 in res.agentd and 1_000 in res.bare:
        a, b = res.agentd[1_000], res.bare[1_000]
        lines.append(
            f"| agentd transaction at 1,000 tasks | {a:.1f} tx/s, {1000 / a:.0f} ms each ="
            f" {b / a:.1f} × the bare time | none (it bounds the throughput) | — |"
        )
    if "throughput" in ok:
        t, b = res.throughput[1_000], res.bare[1_000]
        lines.append(
            f"| throughput at 1,000 tasks | {t.rate:.1f} tasks/s = {t.rate / b:.2f} × bare ({b:.0f} tx/s) |"
            f" ≥ {THROUGHPUT_RATIO} × bare | {verdict(ok['throughput'])} |"
        )
    if res.latency is not None:
        lat = res.latency
        lines.append(
            f"| pickup latency, task added | median {ms(median(lat.added))}, p99 {ms(p99(lat.added))} |"
            f" median ≤ {LATENCY_MEDIAN_MS:.0f} ms | {verdict(median(lat.added) <= LATENCY_MEDIAN_MS / 1000)} |"
        )
        lines.append(
            f"| pickup latency, dependency done | median {ms(median(lat.dependency))}, p99 {ms(p99(lat.dependency))} |"
            f" median ≤ {LATENCY_MEDIAN_MS:.0f} ms | {verdict(median(lat.dependency) <= LATENCY_MEDIAN_MS / 1000)} |"
        )
    for size, target in BIG_PICKUP_TARGET_MS.items():
        if size in res.big_pickup:
            big = res.big_pickup[size]
            lines.append(
                f"| pickup at {size:,} tasks (`queue add`, `--interval 60`) | median {ms(median(big.all))},"
                f" max {ms(max(big.all))} | median ≤ {target:.0f} ms |"
                f" {verdict(median(big.all) <= target / 1000)} |"
            )
    if res.pipeline is not None:
        tot = res.pipeline.totals
        lines.append(
            f"| pipeline, five roles | median {ms(median(tot))}, max {ms(max(tot))} | ≤ {PIPELINE_S:g} s |"
            f" {verdict(ok['pipeline'])} |"
        )
    if res.recovery:
        lines.append(
            f"| recovery after SIGKILL | median {ms(median(res.recovery))}, max {ms(max(res.recovery))} |"
            f" ≤ {RECOVERY_S:g} s | {verdict(ok['recovery'])} |"
        )
    if res.idle is not None:
        lines.append(
            f"| idle daemon | {res.idle.cpu_pct:.2f} % CPU, {res.idle.rss_mb:.1f} MB RSS |"
            f" < {IDLE_CPU_PCT} % CPU, < {IDLE_RSS_MB:.0f} MB | {verdict(ok['idle'])} |"
        )
    if "heartbeat" in ok and res.heartbeat is not None:
        hb = res.heartbeat
        lines.append(
            f"| heartbeat age seen by a peer, daemon busy on {hb.tasks:,} tasks | max {ms(max(hb.samples))},"
            f" p99 {ms(p99(hb.samples))} | < heartbeat ({HEARTBEAT_S:g} s) + {HEARTBEAT_MARGIN_S:g} s |"
            f" {verdict(ok['heartbeat'])} |"
        )
    if "scaling" in ok:
        lines.append(
            f"| scaling of the transaction cost, {min(res.agentd):,} → {max(res.agentd):,} tasks |"
            f" {'grows faster than' if not ok['scaling'] else 'grows no faster than'} the file size |"
            f" no faster than the file | {verdict(ok['scaling'])} |"
        )
    missed = [name for name, good in ok.items() if not good]
    lines += [""]
    if missed:
        lines += [f"**Missed targets: {', '.join(missed)}.** Where the time goes is in [Profiles](#profiles)."]
    else:
        lines += ["Every target is met."]

    # 1 + 2
    lines += [
        "",
        "## 1. Bare limit and 2. agentd transaction",
        "",
        "**Bare limit:** the least a safe rewrite of the queue can cost, stdlib only: `flock` a sidecar lock, read and",
        "`json.loads` the file, change one task's status, `json.dumps(indent=2)`, write a temporary file, `fsync` it,",
        "`os.replace` it over the queue, unlock. **agentd:** the same one-field change through",
        "`QueueStore.transaction`, which adds schema and cross-task validation of what it reads, a",
        "check of what it will write, a format-preserving edit instead of a full dump, a check that nobody edited",
        "the file meanwhile, and an `fsync` of the folder after the rename. Tasks have 15 fields like the real",
        "OODATCAA queues (~600 bytes each, indented).",
        "",
        "| tasks | file | bare tx/s | bare ms/tx | agentd tx/s | agentd ms/tx | agentd ÷ bare time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sorted({*res.bare, *res.agentd}):
        b, a = res.bare.get(size, math.nan), res.agentd.get(size, math.nan)
        lines.append(
            f"| {size:,} | {mb(res.sizes[size])} | {num(b, ',.0f')} | {num(1000 / b, '.2f')} | {num(a, ',.1f')} |"
            f" {num(1000 / a, '.2f')} | {num(b / a, '.1f')} × |"
        )

    # 3
    if res.throughput:
        start = median(res.startup)
        lines += [
            "",
            "## 3. Throughput",
            "",
            f"One builder daemon, `agentd --root DIR --role builder --drain --concurrency {WIP} --interval 60`, WIP"
            f" {WIP} (also `wip_limits` in the queue), every task's command `true`; each task goes ready → in_progress"
            " → awaiting_test (a claim and a completion). The time is from starting the daemon to its exit, minus its"
            f" start-up, measured separately with an empty queue: median **{ms(start)}** over {len(res.startup)} runs"
            f" ({', '.join(ms(s) for s in res.startup)}).{partial_note(res)} Targets apply at 1,000 tasks only; the"
            " other sizes are for comparison.",
            "",
            "| tasks | completions | wall (median) | minus start-up | tasks/s | bare tx/s | ratio to bare | target |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for size, t in sorted(res.throughput.items()):
            wall = median(t.walls)
            target = (
                f"≥ {THROUGHPUT_RATIO} × bare: {verdict(ok['throughput'])}"
                if size == 1_000 and "throughput" in ok
                else ""
            )
            b = res.bare.get(size, math.nan)
            short = " †" if wall - start < start else ""
            lines.append(
                f"| {size:,} | {t.completions:,} | {wall:.2f} s | {wall - start:.2f} s{short} | {t.rate:.1f}{short} |"
                f" {b:,.0f} | {t.rate / b:.3f} | {target} |"
            )
        if any(median(t.walls) - start < start for t in res.throughput.values()):
            lines += [
                "",
                "† The work took less time than the daemon's start-up, so subtracting the start-up dominates the"
                ' figure: read it as "start-up bound", not as a rate.',
            ]
        lines += [
            "",
            "Walls of every run: "
            + "; ".join(
                f"{s:,}: " + ", ".join(f"{w:.2f} s" for w in t.walls) for s, t in sorted(res.throughput.items())
            )
            + ".",
        ]

    # 4
    if res.latency is not None:
        lat = res.latency
        lines += [
            "",
            "## 4. Pickup latency",
            "",
            "A builder daemon at `--interval 60` on a queue that starts empty. **Task added:** the script appends a",
            "ready task with `QueueStore.transaction`; **dependency done:** a blocked task waits on one in",
            "`awaiting_test` (which no daemon claims here), and the script sets that one to `done`. The clock starts",
            "when the script's transaction has returned and stops at the `exec` line the shim writes to",
            "`.agentd/logs/tasks/<id>/<token>.log` just before it starts the command (ms resolution; the most",
            "faithful agentd-side moment: `last_run.started_at` is taken before the shim is even launched). The",
            "command, `sh -c 'echo ID $(date +%s.%N) >> FILE'`, also records when it ran: that column adds the",
            "command's own start-up (sh + date). The interval poll (60 s) plays no part: file events wake the daemon.",
            "",
            "| trigger | samples | median | p99 | max | median, command's own clock | target | verdict |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        rows = [("task added", lat.added, lat.added_cmd), ("dependency done", lat.dependency, lat.dependency_cmd)]
        if res.latency_dead_webhook is not None:
            dead = res.latency_dead_webhook
            rows.append(("task added, a dead webhook on every event", dead.added, dead.added_cmd))
        for name, values, own in rows:
            lines.append(
                f"| {name} | {len(values)} | {ms(median(values))} | {ms(p99(values))} | {ms(max(values))} |"
                f" {ms(median(own))} | median ≤ {LATENCY_MEDIAN_MS:.0f} ms |"
                f" {verdict(median(values) <= LATENCY_MEDIAN_MS / 1000)} |"
            )
        lines += [
            "",
            "p99 is nearest-rank: with fewer than 100 samples it is the largest sample. The last row runs",
            '`agentd automation` beside the builder with a `[[hooks]]` webhook on every event (`on = ["*"]`) to an',
            "endpoint that accepts connections and never answers: hooks run in the automation process, so claims",
            "are not delayed.",
        ]

    # 5
    if res.pipeline is not None:
        pl = res.pipeline
        chain = " → ".join(f"{claims} ({name})" for name, claims, *_ in PIPELINE) + " → done"
        lines += [
            "",
            "## 5. Pipeline",
            "",
            "Five daemons, one per role, all at `--interval 60` and kept running between runs; every command is",
            "`true`. The five roles are chained so that one task visits each of them once (the default tester and",
            "planner lead elsewhere; only their `on_success` differs):",
            "",
            f"{chain}.",
            "",
            "The clock runs from the script's transaction adding the task (at `needs_plan`) to the",
            "integrator's `finished` event (written after the queue says `done`).",
            "",
            "| runs | median | max | target | verdict |",
            "|---:|---:|---:|---|---|",
            f"| {len(pl.totals)} | {ms(median(pl.totals))} | {ms(max(pl.totals))} | ≤ {PIPELINE_S:g} s |"
            f" {verdict(ok['pipeline'])} |",
            "",
            "Per hop (median, from the previous role's `finished` event, or the add, to this role's `finished`):",
            "",
            "| " + " | ".join(pl.stages) + " |",
            "|" + "---:|" * len(pl.stages),
            "| " + " | ".join(ms(median(v)) for v in pl.stages.values()) + " |",
        ]

    # 6
    if res.recovery:
        lines += [
            "",
            "## 6. Recovery",
            "",
            "A builder daemon runs a task whose command is `sleep 60`; a second builder (`--instance b2`) is idle;",
            "both at `--interval 60`. The script SIGKILLs the first and times until the task's command starts again",
            "under the second (the `exec` line of the new token's log). One fresh project per run.",
            "",
            "| runs | median | max | every run | target | verdict |",
            "|---:|---:|---:|---|---|---|",
            f"| {len(res.recovery)} | {ms(median(res.recovery))} | {ms(max(res.recovery))} |"
            f" {', '.join(ms(r) for r in res.recovery)} | ≤ {RECOVERY_S:g} s (median and max) |"
            f" {verdict(ok['recovery'])} |",
        ]

    # 9 (before 7 on the page: it belongs with recovery)
    if res.heartbeat is not None and res.heartbeat.samples:
        hb = res.heartbeat
        lines += [
            "",
            "## 6b. Heartbeat age under queue work",
            "",
            f"A builder daemon runs 3 tasks (`sleep 600`, `heartbeat = {HEARTBEAT_S:g}`) in a {hb.tasks:,}-task queue"
            f" while another process rewrites the queue in a loop ({hb.writes} transactions in {hb.seconds:.0f} s),",
            "each write waking the daemon to look at the queue again. A peer reads the lease files every 50 ms and",
            "records each heartbeat's age on the boot clock, as recovery judges it. Heartbeats are renewed by a thread",
            "of their own, so they must never wait behind a look at the queue.",
            "",
            "| looks | median | p99 | max | target | verdict |",
            "|---:|---:|---:|---:|---|---|",
            f"| {len(hb.samples)} | {ms(median(hb.samples))} | {ms(p99(hb.samples))} | {ms(max(hb.samples))} |"
            f" < {HEARTBEAT_S + HEARTBEAT_MARGIN_S:g} s | {verdict(ok['heartbeat'])} |",
        ]

    # 7
    if res.idle is not None:
        idle = res.idle
        lines += [
            "",
            "## 7. Idle cost",
            "",
            f"One builder daemon at `--interval 60` on an empty queue, watched for {idle.seconds:.0f} s after",
            "start-up: CPU from `utime + stime` in `/proc/<pid>/stat`, memory from `VmRSS` in `/proc/<pid>/status`",
            f"(the peak of 1-s samples), children included ({idle.children} found). One clock tick is"
            f" {1000 / os.sysconf('SC_CLK_TCK'):g} ms, so the CPU figure resolves"
            f" {100 / os.sysconf('SC_CLK_TCK') / idle.seconds:.3f} %.",
            "",
            "| CPU | RSS | target | verdict |",
            "|---:|---:|---|---|",
            f"| {idle.cpu_pct:.3f} % | {idle.rss_mb:.1f} MB | < {IDLE_CPU_PCT} % CPU, < {IDLE_RSS_MB:.0f} MB |"
            f" {verdict(ok['idle'])} |",
        ]

    # 8
    if res.agentd:
        lines += [
            "",
            "## 8. Scaling",
            "",
            "Cost per transaction divided by the file size: a cost that only grows with the bytes it reads and writes",
            "keeps ms/MB flat or falling (fixed costs spread over more bytes); a rising ms/MB means it grows faster",
            "than the file. The claim cost end to end is the throughput run's time per task (a claim and a completion,",
            "batched up to 8 per transaction).",
            "",
            "| tasks | file | agentd ms/tx | agentd ms/MB | bare ms/tx | bare ms/MB | end-to-end ms/task"
            " | ms/task per MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in sorted(res.agentd):
            megs = res.sizes[size] / 1e6
            a, b = 1000 / res.agentd[size], 1000 / res.bare.get(size, math.nan)
            t = res.throughput.get(size)
            per_task = 1000 / t.rate if t else math.nan
            lines.append(
                f"| {size:,} | {mb(res.sizes[size])} | {a:.2f} | {a / megs:,.1f} | {num(b, '.2f')} |"
                f" {num(b / megs, ',.1f')} | {num(per_task, '.1f')} | {num(per_task / megs, ',.1f')} |"
            )
        lines += [
            "",
            "Growth per step. The bare rewrite's work is strictly proportional to the bytes, so its growth shows"
            " what a bigger file alone costs on this machine (caches, allocator, garbage collector), which can be"
            " more than the file's growth. agentd's cost counts as growing faster than the file when it grows more"
            f" than {SCALING_ALLOWANCE:g} × the larger of the two (the margin absorbs noise on a shared machine;"
            " anything quadratic would still stand out by far).",
            "",
            "| step | file grew | agentd transaction time grew | bare transaction time grew | faster than the file? |",
            "|---|---:|---:|---:|---|",
        ]
        for row in scaling_rows(res):
            lines.append(
                f"| {row['from']:,} → {row['to']:,} tasks | {row['size']:.1f} × | {row['time']:.1f} × |"
                f" {num(row['bare'], '.1f')} × | {'**yes**' if row['faster'] else 'no'} |"
            )
        if "scaling" in ok:
            lines += [
                "",
                "The transaction cost grows faster than the file size: **MISS**."
                if not ok["scaling"]
                else "The transaction cost grows no faster than the file size (PASS).",
            ]

    if res.big_pickup:
        lines += ["", *big_pickup_section(res)]

    if res.profiles:
        lines += ["", "## Profiles", "", "cProfile (stdlib) of the slow paths behind the missed targets."]
        for title, text in res.profiles:
            lines += ["", f"### {title}", "", text]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, cleanup: Cleanup) -> Results:
    profile = QUICK if args.quick else FULL
    if args.repeat:
        profile = Profile(**{**profile.__dict__, "repeat": args.repeat})
    base = cleanup.folder("run", Path(args.tmpdir) if args.tmpdir else None)
    command = display_argv([sys.executable, *sys.argv])
    res = Results(profile, command, machine(base))
    first = source_digest()
    cpu_start = cpu_jiffies()
    res.machine["agentd source digest"] = f"{first} (sha256 of src/agentd and schemas/)"
    started = time.monotonic()
    only = set(
        args.only or ["bare", "tx", "throughput", "latency", "pipeline", "recovery", "heartbeat", "idle", "bigpickup"]
    )
    for size in profile.sizes:
        res.sizes[size] = len((json.dumps(make_queue(size), indent=2, ensure_ascii=False) + "\n").encode())
    if "bare" in only or "throughput" in only:
        log(f"1. bare limit at {', '.join(map(str, profile.sizes))} tasks")
        res.bare = bare_limit(profile.sizes, profile.repeat, profile.min_time, base)
        log("   " + ", ".join(f"{s}: {r:,.0f} tx/s" for s, r in res.bare.items()))
    if "tx" in only:
        log("2. agentd transaction")
        res.agentd = agentd_transaction(profile.sizes, profile.repeat, profile.min_time, base)
        log("   " + ", ".join(f"{s}: {r:,.1f} tx/s" for s, r in res.agentd.items()))
    if "throughput" in only:
        log("3. throughput: daemon start-up with an empty queue")
        res.startup = startup_cost(cleanup, base, max(3, profile.repeat))
        log(f"   start-up {median(res.startup):.3f} s")
        for size, ready in profile.completions:
            res.throughput[size] = throughput(cleanup, base, size, ready, profile.repeat, median(res.startup))
            log(f"   {size}: {res.throughput[size].rate:.1f} tasks/s (walls {res.throughput[size].walls})")
    if "latency" in only:
        log(f"4. pickup latency, {profile.latency_samples} samples per trigger")
        res.latency = pickup_latency(cleanup, base, profile.latency_samples)
        log(
            f"   added {median(res.latency.added) * 1000:.0f} ms,"
            f" dependency {median(res.latency.dependency) * 1000:.0f} ms"
        )
        log("   again, with automation delivering every event to a webhook that never answers")
        res.latency_dead_webhook = pickup_latency(cleanup, base, profile.latency_samples, with_dead_webhook=True)
        log(f"   added {median(res.latency_dead_webhook.added) * 1000:.0f} ms")
    if "bigpickup" in only:
        for size in BIG_PICKUP_SIZES:
            log(f"10. big-queue pickup at {size:,} tasks, {profile.big_pickup_samples} adds")
            res.big_pickup[size] = big_pickup(cleanup, base, size, profile.big_pickup_samples)
            big = res.big_pickup[size]
            first, mid, top = (round(v * 1000) for v in (big.first, median(big.all), max(big.all)))
            log(f"   first {first} ms, median {mid} ms, max {top} ms")
        res.command_big = command
    if "pipeline" in only:
        log(f"5. pipeline, {profile.pipeline_runs} runs")
        res.pipeline = pipeline(cleanup, base, profile.pipeline_runs)
        log(f"   median {median(res.pipeline.totals):.3f} s")
    if "recovery" in only:
        log(f"6. recovery, {profile.recovery_runs} runs")
        res.recovery = recovery(cleanup, base, profile.recovery_runs)
        log(f"   median {median(res.recovery):.3f} s, max {max(res.recovery):.3f} s")
    if "heartbeat" in only:
        log(f"9. heartbeat age on a {HEARTBEAT_QUEUE:,}-task queue over {profile.heartbeat_seconds:g} s")
        res.heartbeat = heartbeat_age(cleanup, base, profile.heartbeat_seconds)
        hb = res.heartbeat.samples
        log(f"   {len(hb)} looks, max {max(hb, default=math.nan):.3f} s, {res.heartbeat.writes} outside writes")
    if "idle" in only:
        log(f"7. idle cost over {profile.idle_seconds:g} s")
        res.idle = idle_cost(cleanup, base, profile.idle_seconds)
        log(f"   {res.idle.cpu_pct:.3f} % CPU, {res.idle.rss_mb:.1f} MB")
    if not args.no_profile:
        add_profiles(res, cleanup, base)
    res.elapsed = time.monotonic() - started
    res.source = (first, source_digest())
    busy, total, own = (end - start for end, start in zip(cpu_jiffies(), cpu_start, strict=True))
    res.outside_cpu = 100.0 * max(0, busy - own) / max(1, total)
    res.machine["load average at the end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res.machine["CPU used by other processes during the run"] = f"{res.outside_cpu:.1f} % of the machine"
    if res.source[0] != res.source[1]:
        log("warning: agentd's source changed during the run; the figures mix two versions")
    return res


def add_profiles(res: Results, cleanup: Cleanup, base: Path) -> None:
    ok = checks(res)
    size = 1_000 if 1_000 in res.sizes else max(res.sizes)
    if not ok.get("throughput", True) or not ok.get("scaling", True):
        log(f"profiling QueueStore.transaction at {size} tasks")
        res.profiles.append(
            (
                f"QueueStore.transaction, {size:,} tasks, 20 transactions (in-process)",
                profile_transaction(size, 20, base),
            )
        )
    if not ok.get("scaling", True) and 10_000 in res.sizes:
        log("profiling QueueStore.transaction at 10000 tasks")
        res.profiles.append(
            ("QueueStore.transaction, 10,000 tasks, 3 transactions (in-process)", profile_transaction(10_000, 3, base))
        )
    if not ok.get("throughput", True):
        res.profiles.append(
            (
                f"QueueStore's validation cache, {size:,} tasks (one run, no profiler)",
                cache_probe(size, base),
            )
        )
        log(f"profiling the daemon draining {size} tasks")
        res.profiles.append(
            (
                f"The builder daemon completing 100 tasks of {size:,} (`python -m cProfile -m agentd ... --drain`,"
                " main thread only: task-exit reader threads and the file watcher are not in it)",
                profile_throughput(cleanup, base, size, 100),
            )
        )
    if not (ok.get("latency", True) and ok.get("pipeline", True) and ok.get("recovery", True)):
        log("profiling the daemon during pickup-latency samples")
        out = base / "latency.prof"
        pickup_latency(cleanup, base, 10, profile_to=out)
        res.profiles.append(
            ("The builder daemon during 20 pickups (`--interval 60`, main thread)", top_entries(pstats.Stats(str(out))))
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", metavar="FILE", help="write the page here (default: print it)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke profile (fewer repeats and samples)")
    parser.add_argument("--repeat", type=int, metavar="N", help="repeats per rate measurement (median reported)")
    parser.add_argument(
        "--only",
        action="append",
        choices=["bare", "tx", "throughput", "latency", "pipeline", "recovery", "heartbeat", "idle", "bigpickup"],
        help="run only this part (repeatable; for development)",
    )
    parser.add_argument(
        "--update",
        metavar="FILE",
        help="replace only section 10 (big-queue pickup) of this existing page (with --only bigpickup)",
    )
    parser.add_argument("--no-profile", action="store_true", help="do not profile missed targets")
    parser.add_argument("--tmpdir", metavar="DIR", help="where the temporary projects go (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects (for debugging)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cleanup = Cleanup(keep=args.keep)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        res = run(args, cleanup)
    except KeyboardInterrupt:
        log("interrupted: stopping the daemons and removing the temporary folders")
        return 130
    finally:
        cleanup.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.update:
        update_page(Path(args.update), res)
        log(f"updated section 10 of {args.update}")
        return 0
    page = render(res)
    if args.write:
        page += kept_sections(Path(args.write))
        Path(args.write).write_text(page, encoding="utf-8")
        log(f"wrote {args.write} ({res.elapsed / 60:.1f} min)")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
