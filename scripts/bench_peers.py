#!/usr/bin/env python3
"""`make bench` (peers): agentd side by side with task-spooler (tsp), nq and huey on SQLite, and the bare limit.

Every figure of a table is measured in the same run, repetitions interleaved (agentd, peer, peer, bare, agentd, ...),
medians reported, each with its ratio to the best peer and to the bare limit:

    cli        start-up of agentd's light commands on a 20-task queue, and one enqueue (`tsp true`, `nq true`),
               against `python -I -S -c pass`
    parallel   200 x `true`, 4 at a time, the queue written up front
    chain      50 x `true` one after another (agentd: a dependency chain)
    big        200 x `true` after 10,000 done tasks in the file, with another process saving the file every
               second, and with one of the done tasks' titles outside ASCII (as real queues' are), against the same
               200 alone
    idle       RSS of an idle agentd daemon, tsp's server, huey's consumer
    profile    cProfile of the agentd daemon over the `parallel` run

    .venv/bin/python scripts/bench_peers.py --write docs/benchmarks-peers.md    # what `make bench` runs
    .venv/bin/python scripts/bench_peers.py --only cli,chain --repeat 3         # some sections, printed
    .venv/bin/python scripts/bench_peers.py --only cli,big,idle --update docs/benchmarks.md   # issue 18's section
    .venv/bin/python scripts/bench_peers.py --only parallel,chain --baseline main    # this tree beside main's

A peer that is not installed is named as missing, and its columns left empty. As root the script installs them when
missing (`apt-get install -y task-spooler nq`, `pip install huey`), unless --no-install.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # scripts/bench.py: clean-up, projects, daemons, the profile's table

SECTIONS = ("cli", "parallel", "chain", "big", "idle", "profile")
PY = sys.executable
CLEAN_EACH = [False]  # --clean-each: remove each run's folder right after it (the method of rounds 1-9)
# s before the first run (--settle): ext4 without a journal steps over the inodes freed in the last 60 s (360 s while
# their table block is not written back: RECENTCY_MIN and RECENTCY_DIRTY in fs/ext4/ialloc.c)
SETTLE_S = [60.0]


def discard(folder: Path, cleanup: bench.Cleanup | None = None) -> None:
    """A finished run's folder: left where it is, and removed with every other at the end of the benchmark, unless
    --clean-each. On ext4 without a journal (this VM's root file system) creating a file scans past every inode
    freed in the last 60 s in its group, 360 s while that inode's table block is not yet written back
    (``find_inode_bit`` -> ``recently_deleted``, fs/ext4/ialloc.c): each removal of a run's
    folder (hundreds of files) taxed the runs after it, each per file it creates -- agentd, which makes ~4 files a
    task to tsp's and nq's 1, most (docs/benchmarks.md, round 10). For the same reason the benchmark waits SETTLE_S
    before its first run: what ran before it (a test suite's clean-up) would tax the first section."""
    if not CLEAN_EACH[0]:
        return
    if cleanup is not None:
        bench.remove(cleanup, folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)


# <linux/fs.h>: a directory's flags, and the one that has ext4 spread its subdirectories over the block groups
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread(folder: Path) -> str | None:
    """Mark ``folder`` as the top of a hierarchy (``chattr +T``, ext2/3/4's ``TOPDIR`` flag), so that the file system
    puts each folder made in it, and what that folder holds, in a block group of its own choosing (its Orlov
    allocator: one with free inodes and blocks above the average and few folders), as it does the folders at its
    root, instead of beside ``folder``. None when set, else why not.

    Each run then makes its files in a group where nothing was removed in the last minutes. On ext4 without a journal
    (this VM's root file system), creating a file scans past every inode of its group freed in the last 60 s, 360 s
    while that inode's table block is not yet written back (``find_inode_bit`` -> ``recently_deleted``,
    fs/ext4/ialloc.c): right after a few thousand files were removed in ``/tmp``, a ``mkdir`` in a new folder there took
    400 µs against 20 µs in a quiet group, and 200 × ``true`` at 4-way, which makes two files a task in agentd (a
    task's log folder and its log) and none in tsp, 488 against 445 ms (medians of 10 interleaved drains, 9 of 10
    faster in a group of its own). The runners compared share the conditions either way: their folders are all made
    in ``folder``."""
    import fcntl
    import struct

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        # (an int, as the kernel reads and writes it, whatever the request number says)
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("i", 0)))[0]
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL))
    except OSError as exc:  # (a file system without these flags: ENOTTY, EOPNOTSUPP, ...)
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
    return None


def have(tool: str) -> bool:
    if tool == "huey":
        try:
            import huey  # noqa: F401
        except ImportError:
            return False
        return True
    return shutil.which(tool) is not None


def install_missing(notes: list[str]) -> None:
    """As root: apt-get task-spooler and nq, pip huey, when missing (said in the notes either way)."""
    missing_apt = [pkg for tool, pkg in (("tsp", "task-spooler"), ("nq", "nq")) if not have(tool)]
    if missing_apt and os.geteuid() == 0 and shutil.which("apt-get"):
        done = subprocess.run(["apt-get", "install", "-y", *missing_apt], capture_output=True, check=False)
        notes.append(f"installed {' '.join(missing_apt)} (apt-get: exit {done.returncode})")
    if not have("huey") and os.geteuid() == 0:
        done = subprocess.run([PY, "-m", "pip", "install", "-q", "huey"], capture_output=True, check=False)
        notes.append(f"installed huey (pip: exit {done.returncode})")
    for tool in ("tsp", "nq", "huey"):
        if not have(tool):
            notes.append(f"{tool} is not installed (and could not be: not root, or no network): its figures are empty")


BASELINE: dict[str, Path] = {}  # --baseline REF: {REF: a folder holding that commit's src/}, run beside this tree's
LAST_CPU = [0.0]  # the CPU time (user + system) of the last process `timed` ran, s
CPU_BY_GROUP = (
    "measured in a run of its own with a cgroup around the daemon: every process it starts, the zygote, each task's "
    "supervisor and the command included (its timed run, like the peers', has none: joining a cgroup costs ~17 ms)"
)
CPU_BY_RUSAGE = (
    "measured with `getrusage` (no cgroup could be made: not root, or no cgroup filesystem): the daemon and the "
    "children it waited for — its zygote, which outlives it by a moment, and the supervisors the zygote reaps are "
    "missing, about half of the whole"
)
CPU_METHOD = [CPU_BY_RUSAGE]


def timed(argv: Sequence[str], **kw: object) -> float:
    """Wall time of one run of ARGV; its CPU time (user + system, its own children included) goes to LAST_CPU."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # (reaped here: Popen must not wait for it again)
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start


def interleave(steps: dict[str, Callable[[int], float]], repeat: int) -> dict[str, float]:
    """Median of each step's figure, the steps run in turn ``repeat`` times (one warm-up round not counted), in the
    given order and the reverse by turns: no step always runs right after the same other one, nor always first or
    last of a round (a drain leaves the file system and the caches in a state the next one pays or gains from; in
    one order, round 23 measured this tree's 4-way drain 5-7 % behind the baseline's, which ran after it, where
    alternated runs found it 3 % ahead)."""
    found: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(repeat + 1):
        order = list(steps.items())
        for name, step in order if rep % 2 == 0 else order[::-1]:
            value = step(rep)
            if rep:
                found[name].append(value)
    return {name: bench.median(values) for name, values in found.items()}


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "—"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def ratio(value: float, other: float) -> str:
    if value != value or other != other or other == 0:
        return "—"
    return f"{value / other:.2f} ×"


# -- the targets -----------------------------------------------------------------------------------------------

# What each section measured of issue 18's targets: (the target, the measured value, the limit, whether it is a floor,
# the unit), judged and listed at the top of the page (see verdict_lines).
VERDICTS: list[tuple[str, float, float, bool, str]] = []


def judge(what: str, value: float, limit: float, *, floor: bool = True, unit: str = "×") -> None:
    """Record a target of issue 18 (``floor``: the value must be at least ``limit``; else at most)."""
    VERDICTS.append((what, value, limit, floor, unit))


def verdict_lines(verdicts: Sequence[tuple[str, float, float, bool, str]]) -> list[str]:
    """The table of the targets measured, each judged on its unrounded value (a ratio of 0.497 shows as 0.497, and
    fails, where the sections' tables round it to 0.50)."""
    if not verdicts:
        return []
    out = [
        "## The targets of issue 18",
        "",
        "Each judged on the value measured in this run, unrounded (the tables below round to two decimals).",
        "",
        "| target | measured | limit | met? |",
        "|---|---:|---:|---|",
    ]
    missed = 0
    for what, value, limit, floor, unit in verdicts:
        if value != value:  # nan: a peer missing, or nothing measured
            out.append(f"| {what} | — | {'≥' if floor else '≤'} {limit:g} {unit} | not measured |")
            continue
        met = value >= limit if floor else value <= limit
        missed += not met
        shown = f"{value:.3f} {unit}" if unit == "×" else f"{value:.1f} {unit}"
        out.append(f"| {what} | {shown} | {'≥' if floor else '≤'} {limit:g} {unit} | {'yes' if met else 'NO'} |")
    out += ["", "Every target measured is met." if not missed else f"{missed} target(s) missed.", ""]
    return out


# -- projects ----------------------------------------------------------------------------------------------------------


def agentd_project(cleanup: bench.Cleanup, base: Path, name: str, tasks: list[dict[str, object]], wip: int) -> Path:
    role = {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}}
    return bench.project(cleanup, base, name, {"wip_limits": {"builder": wip}, "tasks": tasks}, role)


def ready_tasks(count: int, chain: bool = False) -> list[dict[str, object]]:
    tasks = []
    for index in range(count):
        deps = [f"T{index - 1:04d}"] if chain and index else []
        tasks.append({"id": f"T{index:04d}", "title": "true", "type": "Build", "status": "ready", "dependencies": deps})
    return tasks


def baseline_drain(
    cleanup: bench.Cleanup,
    base: Path,
    count: int,
    way: int,
    chain: bool,
    ref: str,
    final: int = 0,
    outside: float = 0.0,
    title: str = "",
) -> float:
    """agentd_drain with the daemon importing agentd from the --baseline commit's src/ (PYTHONPATH) instead."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(BASELINE[ref] / "src")
    try:
        return agentd_drain(cleanup, base, count, way, chain, final=final, outside=outside, title=title)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def agentd_drain(
    cleanup: bench.Cleanup,
    base: Path,
    count: int,
    way: int,
    chain: bool,
    profile: Path | None = None,
    final: int = 0,
    outside: float = 0.0,
    title: str = "",
) -> float:
    """Wall time of `agentd --role builder --drain --concurrency WAY` over COUNT tasks written up front (after FINAL
    done tasks, ~600 bytes each, TITLE added to the first one's title; with OUTSIDE > 0, another process saves the
    queue every OUTSIDE seconds).

    Its CPU goes to LAST_CPU from a second, untimed run in a cgroup, as the peers' (see :func:`_peer_cpu`): joining a
    cgroup costs the process that joins it about 17 ms on the 2-core machine (the kernel's migration waits for an RCU
    grace period), which the timed run would count as agentd's start (the peers' timed runs have no cgroup either).
    Where no cgroup can be made, the timed run's getrusage."""
    wall, usage = _drain_once(cleanup, base, count, way, chain, None, profile, final, outside, title)
    group = bench.cpu_group() if profile is None else None  # the CPU of the daemon and every process it starts
    CPU_METHOD[0] = CPU_BY_GROUP if group is not None else CPU_BY_RUSAGE
    if group is None:
        LAST_CPU[0] = usage
        return wall
    try:
        _drain_once(cleanup, base, count, way, chain, group, None, final, outside, title)
    finally:
        LAST_CPU[0] = group.seconds()
        group.remove()
    return wall


def _drain_once(
    cleanup: bench.Cleanup,
    base: Path,
    count: int,
    way: int,
    chain: bool,
    group: bench.CpuGroup | None,
    profile: Path | None,
    final: int,
    outside: float,
    title: str = "",
) -> tuple[float, float]:
    """One drain (see :func:`agentd_drain`), its daemon in *group* when given: its wall time, and its getrusage CPU."""
    filler = [bench.realistic_task(index, "done", prefix="F") for index in range(final)]
    if filler and title:
        filler[0]["title"] += title
    root = agentd_project(cleanup, base, "peers", [*filler, *ready_tasks(count, chain)], way)
    writer_done = threading.Event()

    def write_loop() -> None:  # a person saving the file: one final task's notes changed, under the queue lock
        store = bench.store_for(root)
        touched = 0
        while not writer_done.wait(outside):
            target = f"F{touched % final:05d}"
            store.transaction(
                lambda d, target=target, n=touched: next(t for t in d["tasks"] if t["id"] == target).update(
                    notes=f"saved by a person ({n})"
                )
            )
            touched += 1

    writer = threading.Thread(target=write_loop, daemon=True) if outside > 0 and final else None
    start = time.perf_counter()
    proc = bench.start_daemon(
        cleanup, root, "builder", "--drain", "--concurrency", str(way), profile_to=profile, group=group
    )
    if writer is not None:
        writer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    finally:
        writer_done.set()
        if writer is not None:
            writer.join(timeout=120)
    wall = time.perf_counter() - start
    cleanup.procs.remove(proc)
    if code != 0:
        raise RuntimeError(f"agentd --drain exited with {code} (see {root})")
    moved = sum(1 for t in bench.read_tasks(root).values() if t["status"] == "done")
    if moved != count + final:
        raise RuntimeError(f"agentd: {moved - final} of {count} tasks done")
    if profile is None:
        discard(root, cleanup)
    return wall, usage.ru_utime + usage.ru_stime


# -- peers -------------------------------------------------------------------------------------------------------------


def tsp_run(base: Path, count: int, way: int) -> float:
    """`tsp -S WAY`, COUNT × `tsp -n true`, then a last job needing every slot (so it runs after all), waited for.
    Its CPU (the clients, tsp's server, the jobs) goes to LAST_CPU from a second, untimed run in a cgroup (nan
    when none can be made): see :func:`_peer_cpu`."""

    def once(group: bench.CpuGroup | None) -> float:
        folder = Path(tempfile.mkdtemp(prefix="tsp-", dir=base))
        env = {**os.environ, "TS_SOCKET": str(folder / "socket"), "TMPDIR": str(folder), "TS_MAXFINISHED": "100000"}
        enter = {"preexec_fn": group.enter} if group is not None else {}
        subprocess.run(["tsp", "-S", str(way)], env=env, check=True, **enter)  # (starts tsp's server)
        try:
            start = time.perf_counter()
            for _ in range(count):
                subprocess.run(["tsp", "-n", "true"], env=env, stdout=subprocess.DEVNULL, check=True, **enter)
            subprocess.run(["tsp", "-n", "-N", str(way), "true"], env=env, stdout=subprocess.DEVNULL, check=True)
            subprocess.run(["tsp", "-w"], env=env, check=False)  # the last added job: it waits for the others
            return time.perf_counter() - start
        finally:
            subprocess.run(["tsp", "-K"], env=env, check=False, stderr=subprocess.DEVNULL)
            discard(folder)

    wall = once(None)
    _peer_cpu(once)
    return wall


def nq_run(base: Path, count: int, way: int) -> float:
    """COUNT × `nq true` spread over WAY queue folders (nq runs one folder's jobs one after another), then `nq -w`.
    Its CPU (the `nq` calls, the jobs) goes to LAST_CPU from a second, untimed run in a cgroup (nan when none can
    be made): see :func:`_peer_cpu`."""

    def once(group: bench.CpuGroup | None) -> float:
        folders = [Path(tempfile.mkdtemp(prefix="nq-", dir=base)) for _ in range(way)]
        enter = {"preexec_fn": group.enter} if group is not None else {}
        try:
            start = time.perf_counter()
            for index in range(count):
                env = {**os.environ, "NQDIR": str(folders[index % way])}
                subprocess.run(["nq", "-q", "true"], env=env, check=True, **enter)
            for folder in folders:
                subprocess.run(["nq", "-w"], env={**os.environ, "NQDIR": str(folder)}, check=False)
            return time.perf_counter() - start
        finally:
            for folder in folders:
                discard(folder)

    wall = once(None)
    _peer_cpu(once)
    return wall


def _peer_cpu(run: Callable[[bench.CpuGroup | None], float]) -> None:
    """A peer's CPU, measured in a run of its own: its clients must join the cgroup between fork and exec (a
    ``preexec_fn``), which makes subprocess fork this whole benchmark process for each of them instead of using
    posix_spawn -- several ms a client, and the peer's rate then measured that, not the peer (the timed run has
    no cgroup). agentd's CPU run is one of its own too (see :func:`agentd_drain`)."""
    group = bench.cpu_group()
    if group is None:
        LAST_CPU[0] = math.nan
        return
    try:
        run(group)
    finally:
        LAST_CPU[0] = group.seconds()
        group.remove()


HUEY_TASKS = """
import subprocess
from huey import SqliteHuey
huey = SqliteHuey(filename={db!r}, results=False)
@huey.task()
def run(argv, mark):
    subprocess.run(argv, check=False)
    with open(mark, "a") as handle:
        handle.write("x")
"""


def huey_run(base: Path, count: int, way: int, idle: list[float] | None = None) -> float:
    """COUNT tasks enqueued to SqliteHuey up front, then `huey_consumer -w WAY -k process` until all ran."""
    folder = Path(tempfile.mkdtemp(prefix="huey-", dir=base))
    (folder / "peertasks.py").write_text(HUEY_TASKS.format(db=str(folder / "huey.db")))
    mark = folder / "done"
    mark.touch()
    env = {**os.environ, "PYTHONPATH": str(folder)}
    enqueue = f"import peertasks\nfor _ in range({count}): peertasks.run(['true'], {str(mark)!r})"
    subprocess.run([PY, "-c", enqueue], env=env, cwd=folder, check=True)
    start = time.perf_counter()
    consumer = subprocess.Popen(
        [PY, "-m", "huey.bin.huey_consumer", "peertasks.huey", "-w", str(way), "-k", "process", "-q"],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        bench.wait_for(lambda: mark.stat().st_size >= count, 600, "huey to run every task", every=0.005)
        wall = time.perf_counter() - start
        if idle is not None:
            time.sleep(2)
            idle.append(sum(bench.rss_kb(p) for p in [consumer.pid, *bench.children_of(consumer.pid)]) / 1024)
        return wall
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(consumer.pid, 9)
        consumer.wait(timeout=30)
        discard(folder)


def bare_run(count: int, way: int) -> float:
    """posix_spawn `true` from Python, WAY at a time: the limit of starting processes."""
    true = shutil.which("true") or "/bin/true"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    running = 0
    for _ in range(count):
        if running == way:
            os.wait()
            running -= 1
        os.posix_spawn(true, [true], os.environ)
        running += 1
    while running:
        os.wait()
        running -= 1
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall


# -- sections ----------------------------------------------------------------------------------------------------------


LIGHT_COMMANDS = (  # the five: each ≤ 5 × `python -I -S -c pass`
    "agentd --version",
    "agentd queue add",
    "agentd queue set-status",
    "agentd queue list",
    "agentd status",
)


def section_cli(cleanup: bench.Cleanup, base: Path, repeat: int) -> list[str]:
    root = agentd_project(cleanup, base, "cli", ready_tasks(20), 4)
    agentd = bench.agentd_argv()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("AGENTD_")}
    nq_dir = Path(tempfile.mkdtemp(prefix="nq-", dir=base))
    tsp_dir = Path(tempfile.mkdtemp(prefix="tsp-", dir=base))
    tsp_env = {**env, "TS_SOCKET": str(tsp_dir / "socket"), "TMPDIR": str(tsp_dir), "TS_MAXFINISHED": "100000"}
    steps: dict[str, Callable[[int], float]] = {
        "python -I -S -c pass": lambda _: timed([PY, "-I", "-S", "-c", "pass"]),
        "agentd --version": lambda _: timed([*agentd, "--version"], env=env),
        "agentd queue add": lambda i: timed([*agentd, "queue", "add", f"N{i:04d}", "--title", "t"], cwd=root, env=env),
        "agentd queue set-status": lambda _: timed(
            [*agentd, "queue", "set-status", "T0001", "blocked", "--force"], cwd=root, env=env
        ),
        "agentd queue list": lambda _: timed([*agentd, "queue", "list"], cwd=root, env=env),
        "agentd status": lambda _: timed([*agentd, "status"], cwd=root, env=env),
    }
    if have("tsp"):
        steps["tsp true (enqueue)"] = lambda _: timed(["tsp", "-n", "true"], env=tsp_env)
    if have("nq"):
        steps["nq true (enqueue)"] = lambda _: timed(["nq", "-q", "true"], env={**env, "NQDIR": str(nq_dir)})
    cpu: dict[str, list[float]] = {name: [] for name in steps}

    def with_cpu(name: str, step: Callable[[int], float]) -> Callable[[int], float]:
        def measured(rep: int) -> float:
            wall = step(rep)
            if rep:  # (not the warm-up round)
                cpu[name].append(LAST_CPU[0])
            return wall

        return measured

    try:
        found = interleave({name: with_cpu(name, step) for name, step in steps.items()}, repeat)
    finally:
        if have("tsp"):
            subprocess.run(["tsp", "-K"], env=tsp_env, check=False, stderr=subprocess.DEVNULL)
    cpu_found = {name: bench.median(values) for name, values in cpu.items()}
    bare, bare_cpu = found["python -I -S -c pass"], cpu_found["python -I -S -c pass"]
    peers = [found[k] for k in found if k.endswith("(enqueue)")]
    best = min(peers) if peers else float("nan")
    out = [
        "## CLI start-up and one enqueue",
        "",
        f"A 20-task queue; {repeat} interleaved repetitions, medians (the pycs written by a warm-up round).",
        "The target: each light command ≤ 5 × `python -I -S -c pass`. CPU time (user + system of the process) is",
        "the steadier figure on a shared machine: wall time there is mostly waiting for a CPU.",
        "",
        "| command | median wall | × `python -I -S -c pass` | median CPU | × its CPU | × best peer enqueue (wall) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in LIGHT_COMMANDS:
        judge(f"`{name}` ≤ 5 × `python -I -S -c pass` (wall)", found[name] / bare, 5.0, floor=False)
    for name, value in found.items():
        used = cpu_found[name]
        out.append(
            f"| `{name}` | {fmt(value * 1000, 'ms')} | {ratio(value, bare)} | {fmt(used * 1000, 'ms')} | "
            f"{ratio(used, bare_cpu)} | {ratio(value, best)} |"
        )
    return [*out, ""]


def section_runs(cleanup: bench.Cleanup, base: Path, repeat: int, count: int, way: int, chain: bool) -> list[str]:
    cpu: dict[str, list[float]] = {"agentd": [], "agentd start-up (empty queue)": [], "bare posix_spawn": []}
    for ref in BASELINE:
        cpu[f"agentd at {ref}"] = []
        cpu[f"agentd at {ref} start-up (empty queue)"] = []

    def with_cpu(name: str, step: Callable[[int], float]) -> Callable[[int], float]:
        def measured(rep: int) -> float:
            value = step(rep)
            if rep:
                cpu[name].append(LAST_CPU[0])
            return value

        return measured

    steps: dict[str, Callable[[int], float]] = {
        "agentd": with_cpu("agentd", lambda _: count / agentd_drain(cleanup, base, count, way, chain)),
        "agentd start-up (empty queue)": with_cpu(
            "agentd start-up (empty queue)", lambda _: agentd_drain(cleanup, base, 0, way, chain)
        ),
    }
    for ref in BASELINE:
        steps[f"agentd at {ref}"] = with_cpu(
            f"agentd at {ref}", lambda _, ref=ref: count / baseline_drain(cleanup, base, count, way, chain, ref)
        )
        steps[f"agentd at {ref} start-up (empty queue)"] = with_cpu(
            f"agentd at {ref} start-up (empty queue)",
            lambda _, ref=ref: baseline_drain(cleanup, base, 0, way, chain, ref),
        )
    if have("tsp"):
        cpu["tsp"] = []
        steps["tsp"] = with_cpu("tsp", lambda _: count / tsp_run(base, count, way))
    if have("nq"):
        cpu["nq"] = []
        steps["nq"] = with_cpu("nq", lambda _: count / nq_run(base, count, way))
    if have("huey"):
        steps["huey (SqliteHuey, process workers)"] = lambda _: count / huey_run(base, count, way)
    steps["bare posix_spawn"] = with_cpu("bare posix_spawn", lambda _: count / bare_run(count, way))
    found = interleave(steps, repeat)
    cpu_ms = {name: bench.median(values) * 1000 for name, values in cpu.items()}
    startup = found.pop("agentd start-up (empty queue)")
    agentd_rate = found["agentd"]
    # The same runs with agentd's own start-up (its first pass on the file) taken out, as bench.py's throughput does.
    found["agentd, start-up excluded"] = count / max(1e-9, count / agentd_rate - startup)
    for ref in BASELINE:
        base_startup = found.pop(f"agentd at {ref} start-up (empty queue)")
        found[f"agentd at {ref}, start-up excluded"] = count / max(
            1e-9, count / found[f"agentd at {ref}"] - base_startup
        )
    peers = [v for k, v in found.items() if k in ("tsp", "nq")]
    best = max(peers) if peers else float("nan")
    bare = found["bare posix_spawn"]
    nq_rate = found.get("nq", float("nan"))
    if chain:
        judge(f"{count}-task chain ≥ 0.25 × nq", agentd_rate / nq_rate, 0.25)
    else:
        judge(f"{count} × `true` at {way}-way ≥ 0.5 × the best of tsp / nq", agentd_rate / best, 0.5)
        judge(f"{count} × `true` at {way}-way ≥ 0.15 × bare posix_spawn", agentd_rate / bare, 0.15)
    what = (
        f"{count} × `true` one after another (agentd: a dependency chain)"
        if chain
        else (f"{count} × `true`, {way} at a time, the queue written up front")
    )
    out = [
        f"## {what}",
        "",
        f"{repeat} interleaved repetitions, medians; agentd's start-up alone (a drain of an empty queue): "
        f"{startup * 1000:.0f} ms. tsp runs {way} slot(s) and waits on a last job needing all of them; nq spreads "
        f"the jobs over {way} queue folder(s); huey ({way} worker(s)) is timed from its consumer's start.",
        "",
        "| runner | tasks/s | × best of tsp / nq | × bare spawn |"
        + (" × nq (the issue's peer for the chain) |" if chain else ""),
        "|---|---:|---:|---:|" + ("---:|" if chain else ""),
    ]
    mine = ("agentd", "agentd, start-up excluded")
    for name in (
        *mine,
        *(k for k in found if k.startswith("agentd") and k not in mine),
        *(k for k in found if not k.startswith("agentd")),
    ):
        row = f"| {name} | {fmt(found[name], '/s')} | {ratio(found[name], best)} | {ratio(found[name], bare)} |"
        out.append(row + (f" {ratio(found[name], nq_rate)} |" if chain else ""))
    out += [
        "",
        "CPU time (user + system, medians; less distorted by other work on the machine than wall time) of every "
        f"process of each runner — agentd's {CPU_METHOD[0]}; tsp's and nq's (with a cgroup, in a run of "
        "their own: the timed run has none) their clients, server and jobs:",
        "",
        "| runner | CPU, the run | CPU, a drain of an empty queue | CPU per task |",
        "|---|---:|---:|---:|",
    ]
    for name in ("agentd", *(f"agentd at {ref}" for ref in BASELINE)):
        run, empty = cpu_ms[name], cpu_ms[f"{name} start-up (empty queue)"]
        out.append(f"| {name} | {run:,.0f} ms | {empty:,.0f} ms | {(run - empty) / count:.1f} ms |")
    for name in ("tsp", "nq", "bare posix_spawn"):
        if name in cpu_ms and cpu_ms[name] == cpu_ms[name]:  # (nan: not measured)
            out.append(f"| {name} | {cpu_ms[name]:,.0f} ms | — | {cpu_ms[name] / count:.2f} ms |")
    return [*out, ""]


# Added to one final task's title in the last big-queue run: the characters the project's real queues hold (an arrow,
# an emoji, a check mark; ../shared/fixtures/oodatcaa). One of them makes the whole text one of 4-byte characters in
# Python (24 MB for a 6 MB file), which the daemon copies at every pass: the ASCII runs never show that cost.
REAL_TITLE = " \u2192 done \U0001f389 \u2705"


def section_big(cleanup: bench.Cleanup, base: Path, repeat: int, count: int, way: int, final: int) -> list[str]:
    """Throughput with FINAL done tasks in the file before the COUNT ready ones, against the same COUNT alone."""
    runs = 4  # (each daemon's: alone, after the final ones, with saves from outside, with a title outside ASCII)
    steps: dict[str, Callable[[int], float]] = {
        f"{count} tasks alone": lambda _: count / agentd_drain(cleanup, base, count, way, False),
        f"{count} tasks after {final:,} final ones": lambda _: (
            count / agentd_drain(cleanup, base, count, way, False, final=final)
        ),
        "the same, the file saved by another process every second": lambda _: (
            count / agentd_drain(cleanup, base, count, way, False, final=final, outside=1.0)
        ),
        "the same, one final task's title with `→ 🎉 ✅` (as the real queues')": lambda _: (
            count / agentd_drain(cleanup, base, count, way, False, final=final, title=REAL_TITLE)
        ),
    }
    for ref in BASELINE:  # the same three runs with the daemon of an earlier commit (its ratios to its own first run)
        steps |= {
            f"agentd at {ref}: {count} tasks alone": lambda _, ref=ref: (
                count / baseline_drain(cleanup, base, count, way, False, ref)
            ),
            f"agentd at {ref}: after {final:,} final ones": lambda _, ref=ref: (
                count / baseline_drain(cleanup, base, count, way, False, ref, final=final)
            ),
            f"agentd at {ref}: the same, saved every second": lambda _, ref=ref: (
                count / baseline_drain(cleanup, base, count, way, False, ref, final=final, outside=1.0)
            ),
            f"agentd at {ref}: the same, a title with `→ 🎉 ✅`": lambda _, ref=ref: (
                count / baseline_drain(cleanup, base, count, way, False, ref, final=final, title=REAL_TITLE)
            ),
        }
    cpu: dict[str, list[float]] = {name: [] for name in steps}

    def with_cpu(name: str, step: Callable[[int], float]) -> Callable[[int], float]:
        def measured(rep: int) -> float:
            value = step(rep)
            if rep:
                cpu[name].append(LAST_CPU[0] / count)
            return value

        return measured

    found = interleave({name: with_cpu(name, step) for name, step in steps.items()}, repeat)
    targets = ["", "≥ 0.5 ×", "≥ 0.3 ×", "≥ 0.5 ×"] * (1 + len(BASELINE))
    out = [
        "## Big queues",
        "",
        f"{count} × `true`, {way} at a time (`agentd --role builder --drain --concurrency {way}`), the queue "
        f"written up front; then the same {count} tasks after {final:,} done tasks of ~600 bytes each (a "
        f"{final * 600 / 1e6:.0f} MB file); then that again while another process changes one done task's notes "
        "every second under the queue lock (as a person saving the file would); then again with one of the final "
        "tasks' titles holding an arrow, an emoji and a check mark, as the project's real queues do (decoded, its "
        "whole text would take 4 bytes a character in Python; agentd reads its bytes, see the queue store's page). "
        f"{repeat} interleaved repetitions, medians, daemon start-up included. CPU per task: agentd's whole, "
        f"{CPU_METHOD[0]}.",
        "",
        f"| run | tasks/s | × {count} alone | target | CPU per task |",
        "|---|---:|---:|---|---:|",
    ]
    rates = list(found.values())
    judge(f"{count} tasks after {final:,} final ones ≥ 0.5 × the {count} alone", rates[1] / rates[0], 0.5)
    judge("the same with the file saved by another process every second ≥ 0.3 ×", rates[2] / rates[0], 0.3)
    judge("the same with a final task's title outside ASCII (`→ 🎉 ✅`) ≥ 0.5 ×", rates[3] / rates[0], 0.5)
    alone = 0.0
    for number, ((name, value), target) in enumerate(zip(found.items(), targets, strict=True)):
        alone = value if number % runs == 0 else alone  # (each daemon's big-queue runs against its own first run)
        used = bench.median(cpu[name]) * 1000
        out.append(f"| {name} | {fmt(value, '/s')} | {ratio(value, alone)} | {target} | {fmt(used, 'ms')} |")
    return [*out, ""]


def section_idle(cleanup: bench.Cleanup, base: Path) -> list[str]:
    rows = []
    root = agentd_project(cleanup, base, "idle", [], 4)
    proc = bench.start_daemon(cleanup, root, "builder", "--interval", "60")
    try:
        bench.wait_started(root, proc, settle=2.0)
        rows.append(("agentd daemon (idle, 2 s after start)", bench.rss_kb(proc.pid) / 1024))
    finally:
        bench.stop_daemon(proc)
        cleanup.procs.remove(proc)
    if have("tsp"):
        folder = Path(tempfile.mkdtemp(prefix="tsp-", dir=base))
        env = {**os.environ, "TS_SOCKET": str(folder / "socket"), "TMPDIR": str(folder)}
        subprocess.run(["tsp", "-S", "4"], env=env, check=True)
        subprocess.run(["tsp", "-n", "true"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(["tsp", "-w"], env=env, check=False)
        server = [p for p in _all_pids() if _environ_has(p, f"TS_SOCKET={folder / 'socket'}")]
        rows.append(("tsp server", sum(bench.rss_kb(p) for p in server) / 1024 if server else float("nan")))
        subprocess.run(["tsp", "-K"], env=env, check=False, stderr=subprocess.DEVNULL)
    if have("huey"):
        idle: list[float] = []
        huey_run(base, 1, 4, idle)
        rows.append(("huey consumer, 4 process workers (all processes)", idle[0]))
    judge("idle daemon RSS ≤ 25 MB", rows[0][1], 25.0, floor=False, unit="MB")
    out = ["## Idle memory", "", "RSS; the target for agentd: ≤ 25 MB.", "", "| process | RSS |", "|---|---:|"]
    out += [f"| {name} | {fmt(mb, 'MB')} |" for name, mb in rows]
    return [*out, ""]


SECTION_BEGIN, SECTION_END = bench.PEERS_BEGIN, bench.PEERS_END  # (a rewrite of the page by bench.py keeps it)


def update_section(target: Path, page: str, argv: Sequence[str]) -> None:
    """The page as a section of ``target`` (its title a level down), between markers that `make bench` keeps."""
    body = page.replace("# Benchmarks: agentd and its peers", "## Issue 18: start-up, idle memory and big queues", 1)
    body = body.replace("\n## ", "\n### ").replace("\n### Issue 18", "\n## Issue 18", 1)
    command = " ".join(["python", "scripts/bench_peers.py", *argv])
    body = body.replace("\n\n", f"\n\nCommand (from the project folder): `.venv/bin/{command}`\n\n", 1)
    section = f"{SECTION_BEGIN}\n{body.strip()}\n{SECTION_END}"
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    if SECTION_BEGIN in text and SECTION_END in text:
        head, rest = text.split(SECTION_BEGIN, 1)
        text = head + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    target.write_text(text, encoding="utf-8")


def _git_describe(tree: Path, ref: str) -> str:
    done = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s", ref], capture_output=True, text=True)
    return done.stdout.strip()


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _environ_has(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def section_profile(cleanup: bench.Cleanup, base: Path, count: int, way: int) -> list[str]:
    out_file = Path(tempfile.mkdtemp(prefix="prof-", dir=base)) / "daemon.prof"
    agentd_drain(cleanup, base, count, way, False, profile=out_file)
    text = bench.top_entries(pstats.Stats(str(out_file)))
    return [
        f"## Profile: the agentd daemon over {count} × `true`, {way} at a time",
        "",
        "`python -m cProfile -m agentd --role builder --drain` (the daemon only: each task's supervisor is a process "
        "of its own).",
        "",
        text,
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", metavar="FILE", help="write the page here (default: print it)")
    parser.add_argument(
        "--update",
        metavar="FILE",
        help="put the sections measured into FILE between its issue-18 markers (added at its end if absent)",
    )
    parser.add_argument("--only", metavar="LIST", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--repeat", type=int, default=5, metavar="N", help="repetitions (medians), default 5")
    parser.add_argument("--no-install", action="store_true", help="never install a missing peer")
    parser.add_argument("--tmpdir", metavar="DIR", help="where the temporary folders go")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S[0],
        metavar="S",
        help=f"seconds to wait before the first run (default {SETTLE_S[0]:g}: see SETTLE_S)",
    )
    parser.add_argument(
        "--clean-each",
        action="store_true",
        help="remove each run's folder right after it, not all at the end (the method before round 10)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        action="append",
        default=[],
        help="also run agentd as of this git commit (its src/ through PYTHONPATH) in the parallel and chain runs",
    )
    args = parser.parse_args(argv)
    CLEAN_EACH[0] = args.clean_each
    SETTLE_S[0] = args.settle
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    notes: list[str] = []
    if not args.no_install:
        install_missing(notes)
    else:
        notes += [f"{tool} is not installed: its figures are empty" for tool in ("tsp", "nq", "huey") if not have(tool)]
    cleanup = bench.Cleanup()
    base = Path(tempfile.mkdtemp(prefix="agentd-peers-", dir=args.tmpdir))
    refused = spread(base)
    notes.append(
        "each run's folder in a block group of its own (see `spread`)"
        if refused is None
        else f"the runs' folders could not be spread over the file system's block groups ({refused}): see `spread`"
    )
    for ref in args.baseline:
        folder = base / f"baseline-{len(BASELINE)}"
        folder.mkdir()
        tree = Path(__file__).resolve().parents[1]
        archive = subprocess.run(
            ["git", "-C", str(tree), "archive", ref, "src", "schemas"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
        BASELINE[ref] = folder
        notes.append(f"`agentd at {ref}`: the daemon runs that commit's src/ ({_git_describe(tree, ref)})")
    lines = [
        "# Benchmarks: agentd and its peers",
        "",
        "Generated by `scripts/bench_peers.py` (part of `make bench`; `make bench-peers` alone). "
        f"{bench.dt.datetime.now(bench.dt.UTC):%Y-%m-%d %H:%M} UTC, agentd {bench.__version__}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start.",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    if SETTLE_S[0] > 0:  # (see discard: what was removed just before would tax the first runs' creates)
        bench.log(f"peers: waiting {SETTLE_S[0]:g} s for the file system to forget the files removed before")
        time.sleep(SETTLE_S[0])
    header = len(lines)
    VERDICTS.clear()
    try:
        for section in sections:
            bench.log(f"peers: {section}")
            if section == "cli":
                lines += section_cli(cleanup, base, args.repeat)
            elif section == "parallel":
                lines += section_runs(cleanup, base, args.repeat, 200, 4, chain=False)
            elif section == "chain":
                lines += section_runs(cleanup, base, args.repeat, 50, 1, chain=True)
            elif section == "big":
                lines += section_big(cleanup, base, args.repeat, 200, 4, 10_000)
            elif section == "idle":
                lines += section_idle(cleanup, base)
            elif section == "profile":
                lines += section_profile(cleanup, base, 200, 4)
    finally:
        cleanup.close()
        shutil.rmtree(base, ignore_errors=True)
    lines[header:header] = verdict_lines(VERDICTS)
    page = "\n".join(lines).rstrip() + "\n"
    if args.update:
        update_section(Path(args.update), page, argv if argv is not None else sys.argv[1:])
        return 0
    if args.write:
        Path(args.write).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
