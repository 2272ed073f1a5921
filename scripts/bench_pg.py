#!/usr/bin/env python3
"""`make bench-pg` (part of `make bench`): agentd on PostgreSQL beside the file store (issue 13, point 5).

It starts its own throw-away PostgreSQL server (Debian's binaries, as the ``postgres`` user when run as root:
tests/helpers/pg.py) listening on the bridge of a few network namespaces ("hosts", tests/helpers/hosts.py), and
measures, in one run:

1. tx           claim+complete transactions/s of the store itself, file vs PostgreSQL, at 1,000 and 100,000 tasks:
                one transaction is one pass of a builder's Dispatcher (agentd.run.dispatch) as a daemon makes it at
                WIP 1: record the previous task's outcome (exit 0 -> awaiting_test, its last_run written), claim the
                next ready task (a fencing token, its lease created and held, the task set in_progress), then
                release the finished task's lease
2. throughput   whole daemons on no-op commands (`true`): one builder, --drain --concurrency 8, file vs PostgreSQL
3. pickup       a task added from host alpha (one store transaction) -> its command starting under a builder daemon
                on host beta (the shim's `exec` line); target median <= 50 ms
4. recovery     a builder on one host runs a long task, an idle builder waits on the other; the holder is SIGKILLed,
                or its host's link goes down past lease_ttl: the time until the task's command runs again on the
                other host (target <= lease_ttl + 2 s), and proof from the recorded history that the new run started
                only after the old one was dead
5. pgqueuer     pgqueuer's own benchmark (its tools/benchmark.py, vendored in scripts/vendor/) on the same server

Rates are medians of interleaved repetitions (file, PostgreSQL, file, ...); CPU time (rusage) is given beside the
wall-clock figures, since other work may share the machine.

    .venv/bin/python scripts/bench_pg.py --update docs/benchmarks.md     # what `make bench` runs
    .venv/bin/python scripts/bench_pg.py --quick                         # a fast smoke run, printed to stdout
    .venv/bin/python scripts/bench_pg.py --only recovery --quick         # one section
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
for entry in (str(HERE), str(PROJECT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import bench  # noqa: E402  (scripts/bench.py: clean-up, queues, daemons, statistics)
from tests.helpers import hosts, pg  # noqa: E402

SECTIONS = ("tx", "throughput", "pickup", "recovery", "pgqueuer")
BEGIN, END = bench.PG_BEGIN, bench.PG_END  # (a rewrite of the page by bench.py keeps the section)
PICKUP_TARGET = 0.050  # s, median
RECOVERY_SLACK = 2.0  # s over lease_ttl
LEASE_TTL = 5.0
HEARTBEAT = 1.0
VENDORED = HERE / "vendor" / "pgqueuer_benchmark.py"
BENCH_EXTRA = ["pgqueuer==1.6.0", "asyncpg>=0.29", "tqdm>=4.66", "typer>=0.12", "uvloop>=0.19", "tabulate>=0.9"]


def log(message: str) -> None:
    bench.log(f"pg: {message}")


@dataclass(frozen=True)
class Profile:
    name: str
    sizes: tuple[int, ...]
    repeat: int
    min_time: float  # s per transaction-rate repetition
    noop_tasks: int
    pickup_samples: int
    recovery_runs: int  # per kind (SIGKILL, partition)
    pgqueuer_time: float  # s; pgqueuer's own default is 30


FULL = Profile("full", (1_000, 100_000), 3, 2.0, 200, 40, 3, 30.0)
QUICK = Profile("quick", (1_000, 10_000), 1, 0.5, 40, 8, 1, 5.0)


# -- the history check (pure) ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run of a task's command as the history has it: when it started (the command's own clock), whether its
    guard lock was free then, and when it was over (the shim's last line: the command's whole tree gone)."""

    task: str
    token: int
    host: str
    start: float
    guard_free: bool
    end: float | None  # None: no record of its end


def order_violations(runs: Sequence[RunRecord]) -> list[str]:
    """Every way the history shows a task's run starting before the task's previous run was dead: the earlier run
    has no recorded end, or ended after the later one started, or the later one found the guard lock held (a process
    of an earlier run still alive). Runs of one task are taken in token order; [] when the order is sound."""
    problems: list[str] = []
    by_task: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    for task, task_runs in sorted(by_task.items()):
        task_runs.sort(key=lambda r: r.token)
        for before, after in itertools.pairwise(task_runs):
            where = f"{task}: token {after.token} on {after.host} after token {before.token} on {before.host}"
            if after.start < before.start:
                problems.append(f"{where}: started before it ({after.start:.3f} < {before.start:.3f})")
            if before.end is None:
                problems.append(f"{where}: the earlier run has no recorded end")
            elif after.start < before.end:
                problems.append(f"{where}: started {before.end - after.start:.3f} s before the earlier run ended")
        for run in task_runs:
            if not run.guard_free:
                problems.append(f"{task}: token {run.token} on {run.host} found the guard lock held at its start")
    return problems


# -- the server, hosts and projects ------------------------------------------------------------------------------------


WORK = textwrap.dedent(
    """\
    import fcntl, os, signal, sys, time
    history, pause = sys.argv[1], float(sys.argv[2])
    task, token = os.environ["AGENTD_TASK_ID"], int(os.environ["AGENTD_LEASE_TOKEN"])
    guard = os.open(os.path.join(history + ".guard", task), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        free = True
    except BlockingIOError:
        free = False
    def note(event, **extra):
        line = {"task": task, "token": token, "host": os.uname().nodename, "pid": os.getpid(), "event": event,
                "t": time.time(), **extra}
        fd = os.open(history, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, (repr(line).replace("'", '"').replace("True", "true").replace("False", "false") + "\\n").encode())
        os.fsync(fd)
        os.close(fd)
    note("start", guard_free=free)
    def term(*_):
        note("end", exit=143)
        os._exit(143)
    signal.signal(signal.SIGTERM, term)
    time.sleep(pause)
    note("end", exit=0)
    """
)


class Bench:
    """The server, the hosts and what every section shares."""

    def __init__(self, cleanup: bench.Cleanup, base: Path, net: hosts.Network | None, server: pg.Server) -> None:
        self.cleanup = cleanup
        self.base = base
        self.net = net
        self.server = server
        self.pickup_claims: list[float] = []  # s from a task's add to its `claimed` event
        self.drain_activity: list[tuple[float, float]] = []  # (sessions, transactions) per task, PostgreSQL drains

    def database(self) -> str:
        """A fresh database with agentd's schema; its DSN."""
        import psycopg

        from agentd.store.postgres import migrations

        dsn = pg.fresh_database(self.server)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrations.migrate(conn, dsn)
        return dsn

    def activity(self, dsn: str) -> tuple[int, int]:
        """(sessions opened, transactions committed or rolled back) in ``dsn``'s database so far, from
        pg_stat_database (the statistics collector reports them within about half a second: read after a pause)."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def server_cpu(self) -> float:
        """CPU seconds the server used so far: the postmaster with the backends it reaped, plus live backends."""
        pid_file = self.server.data / "postmaster.pid"
        try:
            master = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry.name), int(fields[1])
            if pid == master:
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            elif ppid == master:
                total += int(fields[11]) + int(fields[12])
        return total / ticks


def write_config(root: Path, *, store: str | None, command: Sequence[str], **defaults: Any) -> None:
    lines = [f'queue = "{bench.QUEUE_NAME}"', "roles_replace_defaults = true"]
    if store:
        lines.insert(0, f"store = {json.dumps(store)}")
    lines.append("[defaults]")
    lines += [f"{key} = {bench.toml_value(value)}" for key, value in {"interval": 60, **defaults}.items()]
    for name, spec in bench.builder_role(command).items():
        lines.append(f"[roles.{name}]")
        lines += [f"{key} = {bench.toml_value(value)}" for key, value in spec.items()]
    (root / "agentd.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def agentd_cli(root: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    done = subprocess.run(
        [*bench.agentd_argv(), "--root", str(root), *args], cwd=root, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"agentd {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")


def load_queue(root: Path, dsn: str | None, queue: dict[str, Any]) -> None:
    """The queue into the project: the file, or the database (through the store's own create)."""
    bench.write_json(root / bench.QUEUE_NAME, queue)
    if dsn is not None:
        store = open_store(root)
        try:
            store.create(queue)
        finally:
            store.close()


def open_store(root: Path) -> Any:
    from agentd import config as config_mod
    from agentd.store import open_store as open_any

    return open_any(config_mod.load(root=root, environ={}))


# -- 1. claim+complete transactions ------------------------------------------------------------------------------------


class PassDriver:
    """A builder's passes through the real Dispatcher and Executor, at WIP 1, with no command run: each pass records
    the previous claim's run as ended with exit 0 and claims the next ready task (one store transaction), and the
    finished run's lease is released after it, as the daemon does."""

    def __init__(self, root: Path) -> None:
        from agentd import config as config_mod
        from agentd.core.clock import SystemClock
        from agentd.run.dispatch import Dispatcher
        from agentd.run.execution import Executor
        from agentd.store import open_store as open_any

        self.config = config_mod.load(root=root, environ={})
        self.role = self.config.roles["builder"]
        self.clock = SystemClock()
        self.store = open_any(self.config, clock=self.clock)
        self.dispatcher = Dispatcher(
            self.config, self.role, self.store, Executor(self.config, self.role, self.clock), self.clock
        )
        self.done: list[Any] = []
        self.root = root

    def step(self, _index: int = 0) -> None:
        from agentd.run.execution import Running
        from agentd.run.runner import ExitInfo

        result = self.dispatcher.run(self.done, {run.task_id for run in self.done}, 1)
        for run in self.done:
            run.held.release()
        if not result.claims:
            raise RuntimeError(f"no task left to claim in {self.root}")
        now = time.time()
        self.done = [
            Running(
                claim.task_id,
                claim.held.token,
                1,
                claim.held,
                self.root / "none.log",
                self.root / "none.result.json",
                self.clock.now(),
                0.0,
                exit=ExitInfo(0, None, False, None, None, now, now),
            )
            for claim in result.claims
        ]

    def close(self) -> None:
        for run in self.done:
            run.held.release()
        self.store.close()


@dataclass
class TxResult:
    size: int
    kind: str  # "file" or "postgresql"
    load_s: float = 0.0  # s to load the queue: the file written, or the rows inserted by the store's create
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this process's CPU per transaction
    server_ms: list[float] = field(default_factory=list)  # the server's CPU per transaction


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def section_tx(b: Bench, profile: Profile) -> list[TxResult]:
    results: list[TxResult] = []
    for size in profile.sizes:
        ready = min(size // 2, 3000 if profile.name == "full" else 600)
        queue = bench.make_queue(size, ready=ready)
        drivers: dict[str, PassDriver] = {}
        loads: dict[str, float] = {}
        for kind in ("file", "postgresql"):
            root = b.cleanup.folder(f"tx-{kind}-{size}", b.base)
            dsn = b.database() if kind == "postgresql" else None
            write_config(root, store=dsn, command=["true"])
            log(f"tx: loading {size:,} tasks into the {kind} store")
            began = time.perf_counter()
            load_queue(root, dsn, queue)
            loads[kind] = time.perf_counter() - began
            drivers[kind] = PassDriver(root)
            drivers[kind].step()  # the first read (parsing every task once) and the first claim: not measured
        found = {kind: TxResult(size, kind, load_s=loads[kind]) for kind in drivers}
        try:
            for rep in range(profile.repeat):
                for kind, driver in drivers.items():
                    cpu, server = cpu_now(), b.server_cpu()
                    count = 0
                    start = time.perf_counter()
                    while True:
                        driver.step()
                        count += 1
                        elapsed = time.perf_counter() - start
                        if count >= 3 and elapsed >= profile.min_time:
                            break
                    found[kind].rates.append(count / elapsed)
                    found[kind].cpu_ms.append((cpu_now() - cpu) / count * 1000)
                    found[kind].server_ms.append((b.server_cpu() - server) / count * 1000)
                    log(f"tx: {kind} at {size:,} tasks, repetition {rep + 1}: {count / elapsed:.1f} tx/s")
        finally:
            for driver in drivers.values():
                driver.close()
        results += found.values()
    return results


# -- 2. throughput of whole daemons ------------------------------------------------------------------------------------


@dataclass
class Drain:
    kind: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # the daemon with its shims and commands
    server: list[float] = field(default_factory=list)


def drain_once(b: Bench, kind: str, count: int) -> tuple[float, float, float]:
    root = b.cleanup.folder(f"drain-{kind}", b.base)
    dsn = b.database() if kind == "postgresql" else None
    write_config(root, store=dsn, command=["true"])
    queue = bench.make_queue(count)
    queue["wip_limits"] = {"builder": 8}
    load_queue(root, dsn, queue)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    argv = [*bench.agentd_argv(), "--root", str(root), "--role", "builder", "--drain", "--concurrency", "8"]
    before = b.activity(dsn) if dsn else (0, 0)
    server = b.server_cpu()
    start = time.perf_counter()
    with open(root / "daemon.err", "wb") as err:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    b.cleanup.procs.append(proc)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    b.cleanup.procs.remove(proc)
    if proc.returncode != 0:
        tail = (root / "daemon.err").read_text()[-500:]
        raise RuntimeError(f"the {kind} daemon exited with {proc.returncode}: {tail}")
    server = b.server_cpu() - server
    if dsn:
        time.sleep(1.0)  # the statistics collector's reports (PGSTAT_MIN_INTERVAL 500 ms)
        after = b.activity(dsn)
        b.drain_activity.append(((after[0] - before[0] - 1) / count, (after[1] - before[1]) / count))
    if kind == "file":
        left = [t for t in bench.read_tasks(root).values() if t["status"] != "awaiting_test"]
    else:
        store = open_store(root)
        try:
            left = [t for t in store.read().tasks if t.status != "awaiting_test"]
        finally:
            store.close()
    if left:
        raise RuntimeError(f"the {kind} daemon left {len(left)} task(s) not done")
    bench.remove(b.cleanup, root)
    return wall, usage.ru_utime + usage.ru_stime, server


def section_throughput(b: Bench, profile: Profile) -> dict[str, Drain]:
    found = {kind: Drain(kind) for kind in ("file", "postgresql")}
    for rep in range(profile.repeat):
        for kind, drain in found.items():
            wall, cpu, server = drain_once(b, kind, profile.noop_tasks)
            drain.walls.append(wall)
            drain.cpus.append(cpu)
            drain.server.append(server)
            log(f"throughput: {kind}, repetition {rep + 1}: {profile.noop_tasks / wall:.1f} tasks/s")
    return found


# -- 3. pickup across namespaces ---------------------------------------------------------------------------------------


ADDER = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    sys.path[:0] = [{src!r}]
    from agentd import config as config_mod
    from agentd.store import open_store
    store = open_store(config_mod.load(root=Path({root!r}), environ={{}}))
    store.read()
    print("ready", flush=True)
    for line in sys.stdin:
        task = {{"id": line.strip(), "title": "pickup " + line.strip(), "type": "Build", "status": "ready",
                "priority": 1, "agent": None, "lease": None, "dependencies": []}}
        store.transaction(lambda txn: txn.add(task))
        print(repr(time.time()), flush=True)
    """
)


OTHER_KERNEL = 'mount --bind "$1" /proc/sys/kernel/random/boot_id && shift && exec "$@"'


def host_daemon(b: Bench, host: hosts.Host, root: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A builder daemon on ``host``, seeing a boot id of that host's own (a mount namespace binds one over the
    kernel's): the hosts share this machine's kernel, but to agentd they must look like the separate machines they
    stand for, whose processes a peer can neither see nor kill (tests/postgres/test_fencing_pg.py does the same)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    fake = root / "boot_id"
    fake.write_text(f"00000000-0000-4000-8000-{sum(map(ord, host.name)):012x}\n")
    argv = [*bench.agentd_argv(), "--root", str(root), "--role", "builder", *extra]
    argv = ["unshare", "--mount", "sh", "-c", OTHER_KERNEL, "sh", str(fake), *argv]
    with open(root / f"daemon-{host.name}-{len(b.cleanup.procs)}.err", "wb") as err:
        proc = host.popen(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                          start_new_session=True)  # fmt: skip
    b.cleanup.procs.append(proc)
    return proc


def wait_registered(dsn: str, proc: subprocess.Popen[bytes], count: int, timeout: float = 60) -> None:
    """Until ``count`` daemons are registered in the store (the daemons table), the latest being up."""
    import psycopg

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"a daemon exited with {proc.returncode} at start-up")
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM agentd_daemons").fetchone()[0] >= count  # type: ignore[index]

    bench.wait_for(up, timeout, "the daemons to register", every=0.05)
    time.sleep(0.5)  # its first pass


def section_pickup(b: Bench, profile: Profile) -> list[float]:
    assert b.net is not None
    alpha, beta = b.net.hosts[:2]
    dsn = b.database()
    roots = {}
    for host in (alpha, beta):
        roots[host.name] = root = b.cleanup.folder(f"pickup-{host.name}", b.base)
        write_config(root, store=dsn, command=["true"])
    load_queue(roots[alpha.name], dsn, {"wip_limits": {"builder": 8}, "tasks": []})
    daemon = host_daemon(b, beta, roots[beta.name])
    wait_registered(dsn, daemon, 1)
    script = ADDER.format(src=str(PROJECT / "src"), root=str(roots[alpha.name]))
    adder = alpha.popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    b.cleanup.procs.append(adder)
    assert adder.stdin is not None
    assert adder.stdout is not None
    if adder.stdout.readline().strip() != "ready":
        raise RuntimeError("the adder on alpha did not start")
    samples = []
    added_at: dict[str, float] = {}
    for n in range(profile.pickup_samples):
        task_id = f"P{n:05d}"
        adder.stdin.write(task_id + "\n")
        adder.stdin.flush()
        added = float(adder.stdout.readline())
        started = bench.wait_for(lambda t=task_id: bench.exec_times(roots[beta.name], t), 30, f"{task_id} to start")
        samples.append(min(started.values()) - added)
        added_at[task_id] = added
        time.sleep(0.2)  # its end recorded, the daemon idle again
    from agentd.store.base import Filter

    store = open_store(roots[alpha.name])
    try:  # where the time goes: the add -> the daemon's claim committed (its `claimed` event) -> the shim's exec
        for event in store.events(Filter(types=frozenset({"claimed"}))):
            if event.task in added_at:
                b.pickup_claims.append(event.time.timestamp() - added_at[event.task])
    finally:
        store.close()
    adder.stdin.close()
    adder.wait(timeout=30)
    bench.stop_daemon(daemon)
    for proc in (adder, daemon):
        b.cleanup.procs.remove(proc)
    return samples


# -- 4. recovery after SIGKILL and partition ---------------------------------------------------------------------------


@dataclass
class Recovery:
    kind: str  # "SIGKILL" or "partition"
    times: list[float] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    fenced: int = 0  # old runs whose shim killed them (daemon gone, or self-fencing)


def shim_killed(root: Path, task_id: str, token: int) -> bool:
    """Whether the shim of ``token``'s run killed its command's tree itself (its daemon gone, or self-fencing)."""
    path = root / ".agentd" / "logs" / "tasks" / task_id / f"{token}.log"
    with contextlib.suppress(OSError):
        text = path.read_text(encoding="utf-8", errors="replace")
        return "(daemon gone)" in text or "self-fencing" in text
    return False


class DeathWatch:
    """Notes when a process is first seen dead (gone, or a zombie: its descriptors, the guard lock's among them, are
    closed), looking every 2 ms: an upper bound of its death, so a new run starting later is proven to follow it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.dead_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    def _watch(self) -> None:
        while not self._stop.is_set():
            if not self._alive():
                self.dead_at = time.time()
                return
            time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def read_starts(history: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError), open(history, encoding="utf-8") as handle:
        return [rec for line in handle if (rec := json.loads(line))["event"] == "start"]
    return []


def recovery_once(b: Bench, kind: str, run: int, found: Recovery) -> None:
    assert b.net is not None
    dsn = b.database()
    history = b.base / f"history-{kind}-{run}.jsonl"
    (b.base / f"history-{kind}-{run}.jsonl.guard").mkdir()
    work = b.base / "work.py"
    work.write_text(WORK, encoding="utf-8")
    command = [sys.executable, "-I", "-S", str(work), str(history), "60"]
    roots: dict[str, Path] = {}
    daemons: dict[str, subprocess.Popen[bytes]] = {}
    for host in b.net.hosts[:2]:
        roots[host.name] = root = b.cleanup.folder(f"recovery-{kind}-{host.name}", b.base)
        write_config(root, store=dsn, command=command, lease_ttl=LEASE_TTL, heartbeat=HEARTBEAT, grace=1, kill_after=1)
    load_queue(roots[b.net.hosts[0].name], dsn, {"wip_limits": {"builder": 1}, "tasks": []})
    for n, host in enumerate(b.net.hosts[:2]):
        daemons[host.name] = host_daemon(b, host, roots[host.name], "--instance", host.name)
        wait_registered(dsn, daemons[host.name], n + 1)
    task_id = f"R{run:04d}"
    store = open_store(roots[b.net.hosts[0].name])
    try:
        store.transaction(lambda txn: txn.add(dict(bench.realistic_task(run, prefix="R"), id=task_id)))
    finally:
        store.close()
    first = bench.wait_for(lambda: read_starts(history), 30, f"{task_id} to start")[0]
    watch = DeathWatch(first["pid"])
    holder = next(h for h in b.net.hosts if h.name == first["host"])
    time.sleep(HEARTBEAT * 2)  # a steady state: a heartbeat or two recorded
    cut = time.time()
    if kind == "SIGKILL":
        daemons[holder.name].kill()
    else:
        b.net.partition(holder)
    try:
        second = bench.wait_for(lambda: read_starts(history)[1:], LEASE_TTL + 60, f"{task_id} to run again")[0]
    finally:
        if kind == "partition":
            b.net.heal(holder)
    found.times.append(second["t"] - cut)
    bench.wait_for(lambda: watch.dead_at, 60, "the old run's command to end")
    watch.close()
    found.fenced += shim_killed(roots[first["host"]], task_id, first["token"])
    found.runs.append(RunRecord(task_id, first["token"], first["host"], first["t"], first["guard_free"], watch.dead_at))
    found.runs.append(RunRecord(task_id, second["token"], second["host"], second["t"], second["guard_free"], None))
    for proc in daemons.values():
        bench.stop_daemon(proc)
        b.cleanup.procs.remove(proc)
    b.cleanup.stop_procs()
    for root in roots.values():
        bench.remove(b.cleanup, root)


def section_recovery(b: Bench, profile: Profile) -> dict[str, Recovery]:
    found = {kind: Recovery(kind) for kind in ("SIGKILL", "partition")}
    for run in range(profile.recovery_runs):
        for kind, rec in found.items():
            recovery_once(b, kind, run, rec)
            log(f"recovery: {kind}, run {run + 1}: {rec.times[-1]:.2f} s")
    return found


# -- 5. pgqueuer -------------------------------------------------------------------------------------------------------


def ensure_pgqueuer(notes: list[str]) -> bool:
    """pgqueuer and what its benchmark tool imports: installed into this environment when missing."""
    try:
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
        import tabulate  # noqa: F401
        import tqdm  # noqa: F401
        import typer  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        log("installing pgqueuer and its benchmark's needs into this environment (pip install '.[bench]')")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *BENCH_EXTRA],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            notes.append(f"pgqueuer could not be installed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            return False
    return True


@dataclass
class PgqResult:
    version: str
    rates: list[float] = field(default_factory=list)
    settings: str = ""


def section_pgqueuer(b: Bench, profile: Profile, notes: list[str]) -> PgqResult | None:
    if not ensure_pgqueuer(notes):
        return None
    from importlib.metadata import version

    found = PgqResult(version("pgqueuer"))
    for rep in range(profile.repeat):
        dsn = pg.fresh_database(b.server)
        name = dsn.rsplit("/", 1)[1]
        env = {**os.environ, "PGHOST": b.server.host, "PGPORT": str(b.server.port), "PGDATABASE": name}
        env["PGUSER"] = b.server.as_user or os.environ.get("USER", "postgres")
        install = subprocess.run([sys.executable, "-m", "pgqueuer", "install"], env=env, capture_output=True, text=True)
        if install.returncode != 0:
            notes.append(f"pgqueuer install failed: {(install.stderr.strip().splitlines() or ['?'])[-1]}")
            return None
        out = b.base / f"pgqueuer-{rep}.json"
        argv = [sys.executable, str(VENDORED), "--time", f"{profile.pgqueuer_time:g}", "--output-json", str(out)]
        found.settings = (
            f"`{' '.join(['python', 'scripts/vendor/pgqueuer_benchmark.py', *argv[2:4]])}`: its defaults otherwise "
            "(driver asyncpg, throughput strategy, 5 dequeue workers with batches of 10, 1 enqueue worker with "
            "batches of 10)"
        )
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=profile.pgqueuer_time + 120)
        if done.returncode != 0 or not out.exists():
            notes.append(f"pgqueuer's benchmark failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            return None
        found.rates.append(float(json.loads(out.read_text())["rate"]))
        log(f"pgqueuer, repetition {rep + 1}: {found.rates[-1]:,.0f} jobs/s")
    return found


# -- the page ----------------------------------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Results:
    profile: Profile
    argv: list[str]
    started: dt.datetime
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)
    tx: list[TxResult] | None = None
    drains: dict[str, Drain] | None = None
    pickup: list[float] | None = None
    pickup_claims: list[float] = field(default_factory=list)
    drain_activity: list[tuple[float, float]] = field(default_factory=list)
    pickup_file: list[float] = field(default_factory=list)  # the file store's pickup on one host, same run
    recovery: dict[str, Recovery] | None = None
    pgqueuer: PgqResult | None = None
    server_version: str = ""


def render(res: Results) -> str:
    p = res.profile
    med = bench.median
    lines = [
        "## Issue 13: PostgreSQL",
        "",
        "Command (from the project folder, as root: the server runs as `postgres`, the hosts are network namespaces): "
        f"`.venv/bin/python scripts/bench_pg.py {' '.join(res.argv)}` (`make bench-pg`; part of `make bench`).",
        "",
        f"Profile **{p.name}**: {p.repeat} interleaved repetition(s) per rate (medians), "
        f"{res.started:%Y-%m-%d %H:%M} UTC, {res.elapsed / 60:.1f} min, PostgreSQL {res.server_version} "
        "(a throw-away cluster the script starts: `fsync = off`, `synchronous_commit = off`, as in the test suite), "
        f"agentd {bench.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in res.load_start)} at the start and "
        f"{' '.join(f'{x:.2f}' for x in res.load_end)} at the end (the machine is shared: compare the ratios and the "
        "CPU times, measured within one run, more than the absolute rates).",
        "",
        *[f"- {note}" for note in res.notes],
        *([""] if res.notes else []),
    ]
    summary = ["| measurement | result | target | verdict |", "|---|---|---|---|"]
    body: list[str] = []
    if res.tx is not None:
        by = {(r.kind, r.size): r for r in res.tx}
        body += [
            "### Claim+complete transactions",
            "",
            "One transaction is one pass of a builder's `Dispatcher.run` (agentd.run.dispatch, the daemon's own pass) "
            "at WIP 1 in steady state: it records the previous task's run as ended with exit 0 (the task goes to "
            "`awaiting_test` with its `last_run`) and claims the next ready task (a fencing token, its lease created "
            "and held, the task set `in_progress` with its `lease`); after it the finished task's lease is released. "
            "No command runs: this is the store's cost per task. The queue holds realistic tasks (15 fields, "
            "~600 bytes), the ready ones first and the rest `done`. CPU: this process's (rusage) and the server's "
            "(its processes in /proc), per transaction.",
            "",
            "| tasks | store | tx/s | ms/tx | agentd CPU ms/tx | server CPU ms/tx | PostgreSQL ÷ file (tx/s) |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for size in p.sizes:
            file_rate = med(by[("file", size)].rates)
            for kind in ("file", "postgresql"):
                r = by[(kind, size)]
                rate = med(r.rates)
                ratio = f"{rate / file_rate:.2f} ×" if kind == "postgresql" else ""
                server = f"{med(r.server_ms):.2f}" if kind == "postgresql" else "—"
                body.append(
                    f"| {size:,} | {kind} | {fmt_rate(rate)} | {1000 / rate:.1f} | {med(r.cpu_ms):.2f} | {server} | "
                    f"{ratio} |"
                )
            pg_rate = med(by[("postgresql", size)].rates)
            summary.append(
                f"| claim+complete at {size:,} tasks | file {fmt_rate(file_rate)} tx/s, PostgreSQL "
                f"{fmt_rate(pg_rate)} tx/s ({pg_rate / file_rate:.2f} ×) | none | — |"
            )
        body.append("")
        body.append(
            "Loading the queue into PostgreSQL (`PgStore.create`, what `agentd queue import` does: one `INSERT` per "
            "task in one transaction) took "
            + ", ".join(f"{r.load_s:.1f} s at {r.size:,} tasks" for r in res.tx if r.kind == "postgresql")
            + "."
        )
        body.append("")
        body.append(
            "Every repetition: "
            + "; ".join(f"{r.kind} at {r.size:,}: " + ", ".join(fmt_rate(x) for x in r.rates) for r in res.tx)
            + "."
        )
        body.append("")
    if res.drains is not None:
        body += [
            "### Throughput on no-op commands",
            "",
            f"One builder daemon, `agentd --role builder --drain --concurrency 8` (WIP 8), {p.noop_tasks} ready tasks "
            "whose command is `true`; the time runs from starting the daemon to its exit (start-up included). CPU is "
            "the daemon's with its supervisors and commands (`wait4` rusage); the server's for PostgreSQL.",
            "",
            "| store | wall (median) | tasks/s | daemon CPU ms/task | server CPU ms/task | every wall |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for kind, d in res.drains.items():
            wall = med(d.walls)
            server = f"{med(d.server) / p.noop_tasks * 1000:.2f}" if kind == "postgresql" else "—"
            body.append(
                f"| {kind} | {wall:.2f} s | {p.noop_tasks / wall:.1f} | {med(d.cpus) / p.noop_tasks * 1000:.2f} | "
                f"{server} | {', '.join(f'{w:.2f} s' for w in d.walls)} |"
            )
        body.append("")
        if res.drain_activity:
            sessions = med([a[0] for a in res.drain_activity])
            xacts = med([a[1] for a in res.drain_activity])
            body += [
                f"On PostgreSQL each task cost the server a median {sessions:.2f} new session(s) and {xacts:.1f} "
                "transactions (pg_stat_database of the run's database; the session counted is the lease's own: a "
                "claim opens one, whose advisory lock stands for the lease, and hands its socket to the task's "
                "supervisor; the bench's own look at the statistics is left out). Each new session is a process the "
                "server forks, and each transaction a round trip that waits for the server's process to get a CPU: "
                "on a loaded machine these, not the rows, set the pace.",
                "",
            ]
        rates = {kind: p.noop_tasks / med(d.walls) for kind, d in res.drains.items()}
        summary.append(
            f"| throughput, `true`, WIP 8 | file {rates['file']:.1f} tasks/s, PostgreSQL {rates['postgresql']:.1f} "
            f"tasks/s ({rates['postgresql'] / rates['file']:.2f} ×) | none | — |"
        )
    if res.pickup is not None:
        samples = [s * 1000 for s in res.pickup]
        ok = med(samples) <= PICKUP_TARGET * 1000
        body += [
            "### Pickup across hosts",
            "",
            "A builder daemon (`--interval 60`) runs on host **beta** (a network namespace with its own hostname); "
            "a process on host **alpha** adds a ready task with one store transaction. The clock starts when that "
            "transaction has committed and stops at the `exec` line the shim on beta writes just before it starts "
            "the command (both hosts share the kernel's clock). The daemon is woken by LISTEN/NOTIFY; the "
            "interval poll plays no part.",
            "",
            "| samples | median | p99 | max | of which add → `claimed` event (median) | target | verdict |",
            "|---:|---:|---:|---:|---:|---|---|",
            f"| {len(samples)} | {med(samples):.0f} ms | {bench.p99(samples):.0f} ms | {max(samples):.0f} ms | "
            f"{med(res.pickup_claims) * 1000:.0f} ms | median ≤ {PICKUP_TARGET * 1000:.0f} ms | {verdict(ok)} |",
            "",
            "Every sample: " + ", ".join(f"{x:.0f} ms" for x in samples) + ".",
            "",
        ]
        if res.pickup_file:
            ref = [s * 1000 for s in res.pickup_file]
            body += [
                f"For reference, the file store's pickup in the same run (scripts/bench.py's section 4: one host, "
                f"a task appended by `QueueStore.transaction`, file events wake the daemon): median "
                f"{med(ref):.0f} ms, p99 {bench.p99(ref):.0f} ms over {len(ref)} samples; PostgreSQL across hosts "
                f"takes {med(samples) / med(ref):.1f} × that.",
                "",
            ]
        summary.append(
            f"| pickup across hosts | median {med(samples):.0f} ms, p99 {bench.p99(samples):.0f} ms | median ≤ "
            f"{PICKUP_TARGET * 1000:.0f} ms | {verdict(ok)} |"
        )
    if res.recovery is not None:
        limit = LEASE_TTL + RECOVERY_SLACK
        body += [
            "### Recovery",
            "",
            f"Two builder daemons, one on host alpha and one on beta, `lease_ttl = {LEASE_TTL:g}`, "
            f"`heartbeat = {HEARTBEAT:g}` (fence margin: the default, 20 % of the ttl), `--interval 60`, WIP 1. "
            "A task whose command sleeps 60 s is added; whichever daemon runs it is then **SIGKILLed** (its "
            "supervisor and command are left alone: the supervisor kills the command's tree when its daemon is "
            "gone), or its host's link is taken down (**partition**: the daemon, supervisor and command keep "
            "running, cut off from the server; the link comes back once the task has run again). The time runs "
            "from the kill or the cut to the command's own record of its start on the other host. "
            "**Never before the old run is dead**: the command records each start in a history file with whether "
            "it got its task's guard `flock` (held by every process of a run for its whole life, so it is free only "
            "once the old run's tree is gone), and the old run's end is the moment this script first sees its command "
            "dead (gone or a zombie, looked for every 2 ms from the root namespace: all hosts share one kernel), "
            "an upper bound of its death; the check (`order_violations` in the script, unit-tested) requires, "
            "for each task, every earlier run's end before the next run's start and the guard free at every start.",
            "",
            "| kind | runs | median | max | every run | old runs killed by their supervisor | order violations "
            "| target | verdict |",
            "|---|---:|---:|---:|---|---:|---:|---|---|",
        ]
        for kind, r in res.recovery.items():
            problems = order_violations(r.runs)
            ok = max(r.times) <= limit and not problems
            body.append(
                f"| {kind} | {len(r.times)} | {med(r.times):.2f} s | {max(r.times):.2f} s | "
                f"{', '.join(f'{t:.2f} s' for t in r.times)} | {r.fenced} of {len(r.times)} | {len(problems)} | "
                f"≤ lease_ttl + {RECOVERY_SLACK:g} s = {limit:g} s, never before the old run is dead | {verdict(ok)} |"
            )
            summary.append(
                f"| recovery after {kind} | median {med(r.times):.2f} s, max {max(r.times):.2f} s; {len(problems)} "
                f"order violation(s) | ≤ {limit:g} s, after the old run's end | {verdict(ok)} |"
            )
            body += [f"- {kind}: {problem}" for problem in problems]
        body.append("")
    if res.pgqueuer is not None:
        q = res.pgqueuer
        body += [
            "### pgqueuer on the same server",
            "",
            f"pgqueuer {q.version}'s own benchmark tool (`tools/benchmark.py` of its repository, vendored unchanged "
            "as scripts/vendor/pgqueuer_benchmark.py), run against the same server in a fresh database after "
            f"`python -m pgqueuer install`: {q.settings}. Its rate counts jobs dequeued and acknowledged per second "
            "by no-op Python handlers in one process: no process is started per job, no lease or fencing token, so "
            "compare it with the claim+complete transactions above, not with the no-op throughput.",
            "",
            "| repetitions | jobs/s (median) | every repetition |",
            "|---:|---:|---|",
            f"| {len(q.rates)} | {bench.median(q.rates):,.0f} | {', '.join(f'{x:,.0f}' for x in q.rates)} |",
            "",
        ]
        summary.append(f"| pgqueuer's dequeue rate (its benchmark) | {bench.median(q.rates):,.0f} jobs/s | none | — |")
    lines += ["### Summary", "", *summary, "", *body]
    return "\n".join(lines).rstrip() + "\n"


def update_section(target: Path, page: str) -> None:
    """The page between this section's markers in ``target`` (added at its end when absent; the rest untouched)."""
    section = f"{BEGIN}\n{page.strip()}\n{END}"
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    target.write_text(text, encoding="utf-8")


# -- main --------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def setting(base: Path, notes: list[str], need_hosts: bool) -> Iterator[tuple[hosts.Network | None, pg.Server]]:
    """The server, listening on the hosts' bridge when hosts can be made (else on 127.0.0.1)."""
    missing = hosts.unavailable() if need_hosts else "not asked for"
    if need_hosts and missing:
        notes.append(f"pickup and recovery across hosts skipped: {missing}")
    network = hosts.network(["alpha", "beta"]) if need_hosts and not missing else contextlib.nullcontext(None)
    with network as net:
        if net is not None:
            server = pg.start_server(base / "pg", listen=net.gateway, trust=(net.cidr,))
            server.host = net.gateway
        else:
            server = pg.start_server(base / "pg")
        try:
            yield net, server
        finally:
            server.stop("immediate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", metavar="FILE", help="put the section between its markers in FILE")
    parser.add_argument("--quick", action="store_true", help="a fast smoke profile (10,000 tasks at most)")
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions per rate (median reported)")
    parser.add_argument("--only", metavar="LIST", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--tmpdir", metavar="DIR", help="where the temporary folders go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (for debugging)")
    args = parser.parse_args(argv)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    profile = QUICK if args.quick else FULL
    if args.repeat:
        profile = Profile(**{**profile.__dict__, "repeat": args.repeat})
    missing = pg.unavailable()
    if missing:
        print(f"bench_pg: cannot start a PostgreSQL server here: {missing}", file=sys.stderr)
        return 2
    res = Results(profile, list(argv if argv is not None else sys.argv[1:]), dt.datetime.now(dt.UTC), os.getloadavg())
    started = time.monotonic()
    cleanup = bench.Cleanup(keep=args.keep)
    base = Path(tempfile.mkdtemp(prefix="agentd-bench-pg-", dir=args.tmpdir))
    os.chmod(base, 0o755)  # noqa: S103 (the server's user must traverse it; it holds no secret)
    cleanup.folders.append(base)
    try:
        with setting(base, res.notes, bool({"pickup", "recovery"} & set(sections))) as (net, server):
            b = Bench(cleanup, base, net, server)
            import psycopg

            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                res.server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            for section in sections:
                log(section)
                if section == "tx":
                    res.tx = section_tx(b, profile)
                elif section == "throughput":
                    res.drains = section_throughput(b, profile)
                    res.drain_activity = b.drain_activity
                elif section == "pickup" and net is not None:
                    res.pickup = section_pickup(b, profile)
                    res.pickup_claims = b.pickup_claims
                    log("pickup: the file store's, for reference (scripts/bench.py's section 4, one host)")
                    res.pickup_file = bench.pickup_latency(cleanup, base, profile.pickup_samples).added
                elif section == "recovery" and net is not None:
                    res.recovery = section_recovery(b, profile)
                elif section == "pgqueuer":
                    res.pgqueuer = section_pgqueuer(b, profile, res.notes)
                b.cleanup.stop_procs()
    finally:
        cleanup.close()
    res.elapsed = time.monotonic() - started
    res.load_end = os.getloadavg()
    page = render(res)
    if args.update:
        update_section(Path(args.update), page)
        log(f"updated the issue 13 section of {args.update}")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
