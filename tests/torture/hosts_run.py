"""The multi-host torture test: daemons on several hosts share one PostgreSQL store; the verdict comes from history.

    python -m tests.torture.hosts_run                    # the long profile (make torture-hosts)
    python -m tests.torture.hosts_run --profile quick    # the short one `make test` runs, at about half size
    python -m tests.torture.hosts_run --seed 1234        # reproduce a run

Each host is a network namespace with its own hostname and address (:mod:`tests.helpers.hosts`); the server listens
on their bridge. Every host has its own project folder (its own agentd.toml naming the store by AGENTD_STORE, its
own logs) and runs builder and tester daemons, so no two hosts share anything but the database and the kernel.
The queue goes in with ``agentd queue import``. At random moments daemons are SIGKILLed (sometimes with their task
processes), SIGSTOPped and resumed, SIGTERMed and restarted; once, a host's link goes down for longer than the lease
ttl and comes back (a partition: its daemons keep running, cut off); once, the server restarts (every session cut).
The task command (``work.py``) appends each run's start and end to one history file the hosts share, and holds a
per-task flock for its life, so a second run of a task while one lives is recorded as an overlap whichever host it
runs on. The verdict, from that history and the final queue: no overlapping runs of a task, none lost (every task
reaches a final status), WIP never exceeded, tokens only grow, no lease left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import hosts, pg
from tests.torture.run import (
    ROLES,
    WIP,
    WORK,
    Tail,
    append_record,
    concurrency,
    executions,
    pid_alive,
    read_history,
    run_key,
    unfinished,
)

LEASE_TTL = 3.0
HEARTBEAT = 0.5


@dataclass(frozen=True)
class Profile:
    hosts: int
    daemons_per_host: int
    tasks: int
    kills: int
    stops: int
    terms: int
    fail_rate: float
    max_sleep: float
    timeout: float
    partition: float = LEASE_TTL + 3  # s a host is cut off (past the lease ttl)
    restarts: int = 1  # server restarts


PROFILES = {
    "long": Profile(3, 3, 400, 30, 8, 4, fail_rate=0.05, max_sleep=0.1, timeout=1500),
    "quick": Profile(2, 2, 120, 8, 3, 2, fail_rate=0.1, max_sleep=0.1, timeout=420),
}


def unavailable() -> str | None:
    """Why the multi-host profile cannot run here (None: it can)."""
    return hosts.unavailable() or pg.unavailable()


def log(message: str) -> None:
    print(f"torture-hosts: {message}", flush=True)


@dataclass
class Daemon:
    host: hosts.Host
    root: Path
    role: str
    instance: str
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    stopped_last: float = 0.0  # when the harness last resumed it (time.monotonic), 0: never stopped

    @property
    def name(self) -> str:
        return f"{self.role}.{self.instance}"


@dataclass
class Stats:
    kills: int = 0
    task_kills: int = 0
    stops: int = 0
    terms: int = 0
    restarts: int = 0
    died_alone: list[str] = field(default_factory=list)  # daemons that ended without the harness ending them
    killed_as_hung: int = 0  # SIGSTOPped daemons a peer on the same kernel killed as hung (as on one host)
    partitions: list[str] = field(default_factory=list)
    server_restarts: int = 0


class HostsTorture:
    def __init__(self, profile: Profile, seed: int, base: Path) -> None:
        self.profile = profile
        self.seed = seed
        self.rng = random.Random(seed)
        self.base = base
        self.history = base / "history.jsonl"
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.daemons: list[Daemon] = []
        self.alive_runs: dict[tuple[int, int | None], dict[str, Any]] = {}
        self.net: hosts.Network | None = None
        self.server: pg.Server | None = None
        self.dsn = ""
        self.task_ids: list[str] = []
        self.busy = threading.Lock()  # one disruption at a time: a partition or a restart is not also a kill

    # -- setup -------------------------------------------------------------------------------------------------------

    def config(self) -> str:
        command = [sys.executable, "-I", "-S", str(WORK), str(self.history), str(self.seed)]
        command += [str(self.profile.fail_rate), str(self.profile.max_sleep), "0"]
        lines = [
            "roles_replace_defaults = true",
            "[defaults]",
            "interval = 2",
            f"heartbeat = {HEARTBEAT:g}",
            f"lease_ttl = {LEASE_TTL:g}",
            "grace = 1",
            "kill_after = 0.5",
            "timeout = 30",
            "max_attempts = 12",
            "backoff = { initial = 0.05, factor = 2, max = 0.4 }",
        ]
        for role, (claims, working, success) in ROLES.items():
            lines += [f"[roles.{role}]", f'claims = "{claims}"', f'working = "{working}"']
            lines += [f'on_success = "{success}"', "command = " + json.dumps(command)]
        return "\n".join(lines) + "\n"

    def agentd(self, *args: str, root: Path) -> subprocess.CompletedProcess[str]:
        """The agentd CLI in the root namespace (the harness's own look at the store)."""
        env = {**os.environ, "AGENTD_STORE": self.dsn, "NO_COLOR": "1"}
        return subprocess.run(
            [sys.executable, "-m", "agentd", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
        )

    def setup(self, net: hosts.Network, server: pg.Server) -> None:
        self.net, self.server = net, server
        self.dsn = pg.fresh_database(server)
        (self.base / "history.jsonl.guard").mkdir(parents=True)
        queue = []
        for i in range(self.profile.tasks):
            deps = sorted({f"T{self.rng.randrange(i):04d}" for _ in range(self.rng.choice([0, 0, 1]))}) if i else []
            queue.append(
                {"id": f"T{i:04d}", "title": f"hosts task {i}", "type": "Build", "status": "ready",
                 "priority": self.rng.randrange(5), "agent": None, "lease": None, "dependencies": deps}
            )  # fmt: skip
        self.task_ids = [t["id"] for t in queue]
        admin = self.base / "admin"
        admin.mkdir()
        (admin / "agentd.toml").write_text(self.config())
        (admin / "queue.json").write_text(json.dumps({"wip_limits": WIP, "tasks": queue}, indent=2) + "\n")
        for args in (("store", "init"), ("queue", "import", "queue.json")):
            done = self.agentd(*args, root=admin)
            if done.returncode != 0:
                raise RuntimeError(f"agentd {' '.join(args)}: {done.stderr.strip()}")
        roles = list(ROLES)
        for host in net.hosts:
            root = self.base / host.name
            root.mkdir()
            (root / "agentd.toml").write_text(self.config())
            for n in range(self.profile.daemons_per_host):
                role = roles[n % len(roles)]
                self.daemons.append(Daemon(host, root, role, f"{host.name}{n}"))

    def spawn(self, daemon: Daemon) -> None:
        err = open(self.base / f"{daemon.name}.log", "ab")  # noqa: SIM115 - the daemon owns it
        argv = [sys.executable, "-m", "agentd", "--root", str(daemon.root), "--role", daemon.role]
        argv += ["--instance", daemon.instance]
        env = {**os.environ, "AGENTD_STORE": self.dsn}
        env.pop("AGENTD_ROOT", None)
        daemon.proc = daemon.host.popen(argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
        err.close()
        daemon.stopped = False

    # -- the actors --------------------------------------------------------------------------------------------------

    def held_by(self, daemon: Daemon) -> list[str]:
        """The tasks whose lease names this daemon's host and pid (a look at the database)."""
        import psycopg

        assert daemon.proc is not None
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.dsn, connect_timeout=5) as conn:
            rows = conn.execute("SELECT task_id, record FROM agentd_leases").fetchall()
            holders = {task_id: json.loads(record) for task_id, record in rows}
            return [
                task_id
                for task_id, record in holders.items()
                if record.get("pid") == daemon.proc.pid and record.get("host") == daemon.host.name
            ]
        return []

    def revive(self) -> None:
        """Restart daemons that ended without the harness ending them (noted: a daemon should outlive a lost
        connection and a restarted server)."""
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is not None:
                code = daemon.proc.returncode
                recently = daemon.stopped or time.monotonic() - daemon.stopped_last < LEASE_TTL + 5
                if code == -signal.SIGKILL and daemon.stopped_last and recently:
                    self.stats.killed_as_hung += 1  # hosts share one kernel here: a peer may prove it hung
                    self.spawn(daemon)
                    self.stats.restarts += 1
                    continue
                tail = (self.base / f"{daemon.name}.log").read_text(errors="replace").strip().splitlines()[-1:]
                self.stats.died_alone.append(f"{daemon.name} (exit {code}: {tail[0] if tail else ''})")
                self.spawn(daemon)
                self.stats.restarts += 1

    def chaos(self) -> None:
        p = self.profile
        budget = ["kill"] * p.kills + ["stop"] * p.stops + ["term"] * p.terms
        budget += ["partition"] + ["restart"] * p.restarts
        self.rng.shuffle(budget)
        for action in budget:
            if self.stop_event.wait(self.rng.uniform(0.5, 2.0)):
                break
            self.revive()
            live = [d for d in self.daemons if d.proc is not None and d.proc.poll() is None and not d.stopped]
            if not live:
                continue
            daemon = self.rng.choice(live)
            assert daemon.proc is not None and self.net is not None and self.server is not None
            if action == "kill":
                if self.rng.random() < 0.3:  # its task processes too (an OOM kill of the whole host's work)
                    wanted = set(self.held_by(daemon))
                    for key, record in list(self.alive_runs.items()):
                        if record["task"] in wanted and pid_alive(*key):
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(key[0], signal.SIGKILL)
                                self.stats.task_kills += 1
                daemon.proc.kill()
                daemon.proc.wait()
                self.stats.kills += 1
                self.spawn(daemon)
                self.stats.restarts += 1
            elif action == "stop":
                daemon.proc.send_signal(signal.SIGSTOP)
                daemon.stopped = True
                daemon.stopped_last = time.monotonic()
                self.stats.stops += 1
                threading.Timer(self.rng.uniform(1, 5), self.resume, args=(daemon,)).start()
            elif action == "term":
                daemon.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    daemon.proc.wait(timeout=30)
                self.stats.terms += 1
                if daemon.proc.poll() is None:
                    daemon.proc.kill()
                    daemon.proc.wait()
                self.spawn(daemon)
                self.stats.restarts += 1
            elif action == "partition":
                host = daemon.host
                self.net.partition(host)
                self.stats.partitions.append(f"{host.name} for {p.partition:g} s")
                log(f"partition: {host.name} cut off for {p.partition:g} s")
                self.stop_event.wait(p.partition)
                self.net.heal(host)
            else:
                log("server restart")
                self.server.restart()
                self.stats.server_restarts += 1

    def resume(self, daemon: Daemon) -> None:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGCONT)
        daemon.stopped = False
        daemon.stopped_last = time.monotonic()

    def monitor(self) -> None:
        """For runs that die without recording an end (SIGKILL), record when they were last seen alive (the hosts
        share one kernel, so /proc shows every host's processes)."""
        tail = Tail(self.history)
        alive = self.alive_runs
        ended: set[tuple[int, int | None]] = set()

        def absorb(records: list[dict[str, Any]]) -> None:
            for record in records:
                key = run_key(record)
                if record["event"] == "start" and key not in ended:
                    alive[key] = {**record, "last_alive": record["t"]}
                elif record["event"] in ("end", "gone"):
                    alive.pop(key, None)
                    ended.add(key)

        while not self.stop_event.is_set() or alive:
            absorb(tail.new())
            for key, record in list(alive.items()):
                now = time.time()
                if pid_alive(*key):
                    record["last_alive"] = now
                    continue
                absorb(tail.new())
                if key not in ended:
                    append_record(self.history, {**record, "event": "gone", "t": record["last_alive"]})
                    alive.pop(key, None)
                    ended.add(key)
            time.sleep(0.02)

    # -- the run -----------------------------------------------------------------------------------------------------

    def tasks(self) -> list[dict[str, Any]] | None:
        """The queue's tasks as the database has them (None when it cannot be reached now)."""
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                rows = conn.execute("SELECT body FROM agentd_tasks ORDER BY position").fetchall()
        except psycopg.Error:
            return None
        return [json.loads(body) for (body,) in rows]

    def leases_left(self) -> list[str]:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT task_id FROM agentd_leases").fetchall()]

    def run(self, net: hosts.Network, server: pg.Server) -> int:
        self.setup(net, server)
        started = time.monotonic()
        for daemon in self.daemons:
            self.spawn(daemon)
        monitor = threading.Thread(target=self.monitor, daemon=True)
        monitor.start()
        chaos = threading.Thread(target=self.chaos, daemon=True)
        chaos.start()
        deadline = started + self.profile.timeout
        drained = False
        while time.monotonic() < deadline:
            if not chaos.is_alive():
                self.revive()
                tasks = self.tasks()
                if tasks is not None and not unfinished(tasks):
                    drained = True
                    break
            time.sleep(1.0)
        chaos_done = not chaos.is_alive()
        self.stop_event.set()
        chaos.join(timeout=60)
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)
                daemon.proc.send_signal(signal.SIGTERM)
        for daemon in self.daemons:
            if daemon.proc is not None:
                try:
                    daemon.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.proc.kill()
                    daemon.proc.wait()
        monitor.join(timeout=60)
        return self.verdict(time.monotonic() - started, drained, chaos_done)

    def verdict(self, elapsed: float, drained: bool, chaos_done: bool) -> int:
        records = read_history(self.history)
        runs = executions(records)
        tasks = self.tasks() or []
        violations: list[str] = []
        evidence: list[str] = []
        present = {t["id"] for t in tasks}
        missing = [task_id for task_id in self.task_ids if task_id not in present]
        if missing:
            violations.append(f"tasks vanished: {missing[:10]}")
        left = unfinished(tasks)
        if left or not drained:
            violations.append(f"{len(left)} task(s) never reached a final status: {left[:10]}")
        for record in records:
            if record["event"] == "overlap":
                violations.append(f"execution overlap (guard lock held by another run): {record}")
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            by_task[run["task"]].append(run)
        for task_id, task_runs in by_task.items():
            task_runs.sort(key=lambda r: r["start"])
            for before, after in itertools.pairwise(task_runs):
                if after["start"] < before["end"]:
                    violations.append(f"{task_id}: run {after} started before {before} ended")
                if after["token"] <= before["token"]:
                    violations.append(f"{task_id}: token {after['token']} after {before['token']}")
        peaks, crowds = concurrency(runs)
        for role, peak in peaks.items():
            if peak > WIP[role]:
                violations.append(f"{role}: {peak} runs at once, WIP limit {WIP[role]}")
                evidence.append(f"{role} runs alive together: " + json.dumps(crowds[role]))
        leases = self.leases_left()
        if leases:
            violations.append(f"leases left behind: {leases[:10]}")
        alive_work = [r for r in records if r["event"] == "start" and pid_alive(r["pid"], r.get("since"))]
        if alive_work:
            violations.append(f"task processes left behind: {[r['pid'] for r in alive_work[:10]]}")
        final: dict[str, int] = defaultdict(int)
        for t in tasks:
            final[t["status"]] += 1
        s = self.stats
        log(f"seed {self.seed}, profile {self.profile}, {elapsed:.0f} s")
        log(f"hosts {[h.name for h in (self.net.hosts if self.net else [])]}, daemons {len(self.daemons)}")
        log(f"executions {len(runs)}, tasks {len(tasks)}")
        log(
            f"SIGKILLs {s.kills} (+{s.task_kills} task processes), SIGSTOP/SIGCONT {s.stops}, SIGTERMs {s.terms}, "
            f"restarts {s.restarts}, partitions {s.partitions}, server restarts {s.server_restarts}, "
            f"chaos finished: {chaos_done}"
        )
        log(f"SIGSTOPped daemons killed as hung by a peer on the same kernel: {s.killed_as_hung}")
        log(f"daemons that ended on their own (revived): {len(s.died_alone)} {s.died_alone[:5]}")
        log(f"peak concurrency {dict(peaks)}, WIP limits {WIP}; final statuses {dict(final)}")
        log(f"violations = {len(violations)}")
        if violations:
            for violation in violations[:50]:
                log(f"VIOLATION: {violation}")
            for item in evidence[:10]:
                log(f"evidence: {item}")
            log(f"reproduce with: python -m tests.torture.hosts_run --seed {self.seed} (files kept in {self.base})")
            return 1
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the folder even when the run passes")
    for name in ("hosts", "daemons_per_host", "tasks", "kills", "stops", "terms"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    parser.add_argument("--max-sleep", dest="max_sleep", type=float, help="longest run of the task command, s")
    args = parser.parse_args(argv)
    missing = unavailable()
    if missing:
        log(f"cannot run here: {missing}")
        return 2
    profile = PROFILES[args.profile]
    names = ("hosts", "daemons_per_host", "tasks", "kills", "stops", "terms", "max_sleep")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    profile = Profile(**{**profile.__dict__, **overrides})
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    base = Path(tempfile.mkdtemp(prefix="agentd-hosts-torture-"))
    os.chmod(base, 0o755)
    names_of_hosts = ["alpha", "beta", "gamma", "delta"][: profile.hosts]
    code = 1
    with hosts.network(names_of_hosts) as net:
        server = pg.start_server(base / "pg", listen=net.gateway, trust=(net.cidr,))
        server.host = net.gateway
        torture = HostsTorture(profile, seed, base)
        try:
            code = torture.run(net, server)
        finally:
            for daemon in torture.daemons:
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.proc.send_signal(signal.SIGCONT)
                    daemon.proc.kill()
            server.stop("immediate")
    if code == 0 and not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
