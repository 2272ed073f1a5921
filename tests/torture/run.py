"""The torture test: real daemons, real signals, real files; the verdict comes from the recorded history alone.

    python -m tests.torture.run                      # the full profile (make torture)
    python -m tests.torture.run --profile quick      # the profile `make test` runs, at half size (test_torture.py)
    python -m tests.torture.run --seed 1234          # reproduce a run

It builds a queue of tasks over two roles with dependencies and WIP limits, runs several daemons per role, and at
random moments SIGKILLs daemons (sometimes their task processes too), SIGSTOPs and later SIGCONTs them, SIGTERMs
some, and restarts them. Some daemons run in UTS namespaces of their own (``unshare --uts``, as root: another
hostname on the same kernel, as in a container), one with its wall clock 2 h ahead (``AGENTD_FAULT_CLOCK_SKEW``).
Meanwhile an outside writer adds tasks and edits unrelated fields without taking agentd's
lock (atomic saves, as editors make), and a reader parses the queue in a tight loop. At the end the survivors drain
and the history is checked: no task ran twice at once, none was lost, WIP held, tokens only grew, the reader never
saw a broken file, and nothing was left behind.

Liveness does not depend on the machine's speed: the run waits as long as tasks keep changing state, and fails as a
stall when none changes for the profile's stall window while some are not final (with `agentd queue why` of the
stuck ones as evidence). A large cap is only a safety net, reported apart as "too slow" with the rate it reached.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentd import schema
from agentd.store.file.incremental import Decoder
from agentd.store.file.journal import read_events

WORK = Path(__file__).resolve().with_name("work.py")
ROLES = {
    "builder": ("ready", "in_progress", "awaiting_test"),
    "tester": ("awaiting_test", "testing", "done"),
}
WIP = {"builder": 3, "tester": 2}


@dataclass(frozen=True)
class Profile:
    daemons: int
    tasks: int
    kills: int
    stops: int
    terms: int
    fail_rate: float
    max_sleep: float
    cap: float  # s: the safety net; a run still progressing past it is too slow (not stalled)
    uts: int = 0  # daemons each in a UTS namespace of its own (another hostname, one kernel)
    skewed: int = 0  # daemons whose wall clock is SKEW s ahead
    escape_rate: float = 0.05  # runs that leave an escaped grandchild (setsid, keeps the lease's descriptor)
    low_nofile: int = 14  # `ulimit -n` of one builder daemon: too few descriptors to start even one task
    worktrees: bool = False  # worktree mode: each task in a git worktree of its own, merged into main by the tester
    stall: float = 60.0  # s without any task changing state while some are not final: a stall (a liveness bug)


PROFILES = {
    "full": Profile(8, 2000, 50, 10, 6, fail_rate=0.05, max_sleep=0.05, cap=3600, uts=3, skewed=1),
    "quick": Profile(5, 250, 30, 6, 4, fail_rate=0.1, max_sleep=0.1, cap=1800, uts=2, skewed=1),
    # Every run goes through git (a worktree made, a commit by the builder, a merge by the tester): fewer tasks.
    "worktree": Profile(4, 40, 8, 3, 2, fail_rate=0.1, max_sleep=0.1, cap=1800, worktrees=True),
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "torture",
    "GIT_AUTHOR_EMAIL": "torture@example.invalid",
    "GIT_COMMITTER_NAME": "torture",
    "GIT_COMMITTER_EMAIL": "torture@example.invalid",
}
SKEW = 7200.0
LEASE_TTL = 3.0


def uts_unavailable() -> str | None:
    """Why daemons cannot run in UTS namespaces of their own here (None: they can)."""
    try:
        probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot run: {exc}"
    if probe.returncode != 0:
        return "unshare --uts is not permitted: " + probe.stderr.decode(errors="replace").strip()
    return None


@dataclass
class Daemon:
    name: str
    role: str
    proc: subprocess.Popen[bytes] | None = None
    stopped_until: float = 0.0
    hostname: str | None = None  # its own UTS namespace with this hostname
    skew: float = 0.0
    stops: list[list[float]] = field(default_factory=list)  # [SIGSTOP, SIGCONT] times of this incarnation
    died_at: float | None = None  # when this incarnation ended (time.monotonic)
    nofile: int | None = None  # its `ulimit -n`, when lowered
    killed_pids: set[int] = field(default_factory=set)  # incarnations the harness SIGKILLed itself (chaos, not a peer)

    def stopped_at(self, moment: float) -> bool:
        """Whether the harness had it SIGSTOPped at ``moment``, or resumed it so shortly before that a peer may have
        judged it hung while it was stopped (lease ttl, plus a second)."""
        return any(start <= moment <= end + LEASE_TTL + 1 for start, end in self.stops)


@dataclass
class Stats:
    kills: int = 0
    task_kills: int = 0
    git_kills: int = 0  # runs SIGKILLed while their git was at work (worktree mode)
    stops: int = 0
    terms: int = 0
    restarts: int = 0
    killed_as_hung: int = 0  # daemons a peer killed as hung that the harness had SIGSTOPped (past lease_ttl)
    killed_as_hung_running: int = 0  # daemons a peer killed as hung that were never stopped: must stay 0
    killed_running: list[str] = field(default_factory=list)  # which, for the evidence
    environments: list[str] = field(default_factory=list)  # what ran beyond plain daemons, or why not
    writer_edits: int = 0
    writer_adds: int = 0
    writer_readds: int = 0
    writer_careless: int = 0
    reads: int = 0
    validations: int = 0
    reader_failures: list[str] = field(default_factory=list)
    queue_wip_max: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    queue_wip_peak: dict[str, list[str]] = field(default_factory=dict)  # the tasks in the working status at the peak
    # (time, time.monotonic(), daemon, the tokens of the leases it held by task): taken just before the SIGKILL (a peer
    # may recover a lease before the harness's wait for the death returns)
    kill_log: list[tuple[float, float, str, dict[str, int | None]]] = field(default_factory=list)


def log(message: str) -> None:
    print(f"torture: {message}", flush=True)


class Torture:
    def __init__(self, profile: Profile, seed: int, root: Path) -> None:
        self.profile = profile
        self.seed = seed
        self.rng = random.Random(seed)
        # The project (queue, agentd.toml, .leases/, .agentd/) and, beside it, the harness's own files (history,
        # daemon output): in a real project agentd's logs are under .agentd/, not in the folder it watches.
        self.root = root / "project"
        self.harness = root / "harness"
        self.history = self.harness / "history.jsonl"
        self.queue = self.root / "SPRINT_QUEUE.json"
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.added: list[str] = []
        self.daemons: list[Daemon] = []
        self.lock = threading.Lock()
        self.alive_runs: dict[tuple[int, int | None], dict[str, Any]] = {}  # run_key -> start record (the monitor's)
        self.skewed_pids: set[int] = set()  # daemons whose journal times are skewed (left out of the timings)

    # -- setup -------------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.root.mkdir(parents=True)
        (self.harness / "history.jsonl.guard").mkdir(parents=True)
        command = [
            sys.executable,
            "-I",
            "-S",
            str(WORK),
            str(self.history),
            str(self.seed),
            str(self.profile.fail_rate),
            str(self.profile.max_sleep),
            str(self.profile.escape_rate),
        ]
        lines = [
            "[defaults]",
            "interval = 2",
            "heartbeat = 0.5",
            f"lease_ttl = {LEASE_TTL:g}",
            "grace = 1",
            "kill_after = 0.5",
            "timeout = 30",
            "max_attempts = 12",
            "backoff = { initial = 0.05, factor = 2, max = 0.4 }",
        ]
        lines.insert(0, "roles_replace_defaults = true")
        if self.profile.worktrees:
            self.git_project()
            lines.insert(1, 'workspaces = { mode = "worktree", keep = "never" }')
        for role, (claims, working, success) in ROLES.items():
            argv = command
            if self.profile.worktrees and role == "builder":  # a commit on the task's branch, then the work
                commit = 'git commit -q --allow-empty -m "$AGENTD_TASK_ID run $AGENTD_LEASE_TOKEN" && exec "$@"'
                argv = ["sh", "-c", commit, "sh", *command]
            lines += [
                f"[roles.{role}]",
                f'claims = "{claims}"',
                f'working = "{working}"',
                f'on_success = "{success}"',
                "command = " + json.dumps(argv),
            ]
            if self.profile.worktrees:
                lines.append("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in GIT_ENV.items()) + " }")
                if role == "tester":
                    lines.append("merge = true")
        (self.root / "agentd.toml").write_text("\n".join(lines) + "\n")
        tasks = []
        for i in range(self.profile.tasks):
            deps = (
                sorted({f"T{self.rng.randrange(i):04d}" for _ in range(self.rng.choice([0, 0, 0, 1, 2]))}) if i else []
            )
            tasks.append(
                {
                    "id": f"T{i:04d}",
                    # (a third with characters outside ASCII, unescaped, as the project's real queues hold them)
                    "title": f"torture task {i}" + (" → étape ✅" if i % 3 == 0 else ""),
                    "type": "Build",
                    "status": "ready",
                    "priority": self.rng.randrange(5),
                    "agent": None,
                    "lease": None,
                    "dependencies": deps,
                }
            )
        document = json.dumps({"wip_limits": WIP, "tasks": tasks}, indent=2, ensure_ascii=False)
        self.queue.write_text(document + "\n", encoding="utf-8")
        roles = list(ROLES)
        for n in range(self.profile.daemons):
            role = roles[0] if n < (self.profile.daemons * 3 + 4) // 5 else roles[1]
            self.daemons.append(Daemon(f"{role}.d{n}", role, nofile=self.profile.low_nofile if n == 0 else None))
        # The environments that broke agentd once: containers on one kernel (another hostname each), and a daemon
        # whose date is 2 h ahead. They go to daemons of both roles, every other one from the start.
        spread = self.daemons[::2] + self.daemons[1::2]
        why_not = uts_unavailable() if self.profile.uts else None
        if why_not:
            self.stats.environments.append(f"UTS namespaces skipped ({why_not})")
        elif self.profile.uts:
            for n, daemon in enumerate(spread[: self.profile.uts]):
                daemon.hostname = f"container-{n}"
            self.stats.environments.append(f"{self.profile.uts} daemon(s) in UTS namespaces of their own")
        for daemon in spread[::-1][: self.profile.skewed]:
            daemon.skew = SKEW
        if self.profile.skewed:
            self.stats.environments.append(f"{self.profile.skewed} daemon(s) with the wall clock {SKEW:g} s ahead")

    def git_project(self) -> None:
        """The project as a git repository on main, agentd's files ignored."""
        (self.root / ".gitignore").write_text(".agentd/\n.leases/\nSPRINT_QUEUE.json*\nagentd.toml\n")
        env = {**os.environ, **GIT_ENV}
        for args in (["init", "-q", "-b", "main"], ["add", ".gitignore"], ["commit", "-qm", "start"]):
            subprocess.run(["git", *args], cwd=self.root, env=env, check=True, capture_output=True)

    def git_findings(self, tasks: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Worktree mode's verdict: every done task's branch is in main, the root checkout is clean, no worktree of a
        done task is left (keep = never), and no git lock file is left."""
        violations: list[str] = []
        evidence: list[str] = []

        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, check=False)

        lost = [
            t["id"]
            for t in tasks
            if t["status"] == "done" and git("merge-base", "--is-ancestor", f"agentd/{t['id']}", "main").returncode
        ]
        if lost:
            violations.append(f"done tasks whose branch is not in main (a lost merge): {lost[:10]}")
        status = git("status", "--porcelain").stdout.strip()
        if status:
            violations.append(f"the root checkout is not clean: {status.splitlines()[:5]}")
        listed = git("worktree", "list", "--porcelain").stdout
        left = [t["id"] for t in tasks if t["status"] == "done" and f"/.agentd/worktrees/{t['id']}\n" in listed]
        if left:
            violations.append(f"worktrees of done tasks left behind (keep = never): {left[:10]}")
        locks = sorted(str(path.relative_to(self.root)) for path in (self.root / ".git").rglob("*.lock"))
        # An agent's git killed in its auto maintenance (after a commit) leaves objects/maintenance.lock, made while
        # no agentd git work was under way: agentd cannot tell it from a person's, and leaves it (doctor names it).
        # It blocks nothing: git skips its automatic maintenance while it stays.
        maintenance = ".git/objects/maintenance.lock"
        if maintenance in locks:
            evidence.append(f"{maintenance} left by a killed git (doctor's git-lock-left; it blocks no git command)")
        blocking = [lock for lock in locks if lock != maintenance]
        if blocking:  # a git killed holding them, and nothing cleared them: the next git that needs one fails
            violations.append(f"git lock files left in the repository: {blocking[:10]}")
        merges = len(git("log", "--merges", "--format=%s", "main").stdout.splitlines())
        evidence.append(f"merge commits in main: {merges}")
        journal = self.root / ".agentd" / "events.jsonl"
        text = journal.read_text("utf-8", "replace") if journal.exists() else ""
        evidence.append(f"git lock files a killed git left, removed: {text.count('removed the git lock file')}")
        return violations, evidence

    def spawn(self, daemon: Daemon) -> None:
        err = open(self.harness / f"{daemon.name}.log", "ab")  # noqa: SIM115 - the daemon owns it
        instance = daemon.name.split(".", 1)[1]
        argv = [sys.executable, "-m", "agentd", "--root", str(self.root), "--role", daemon.role, "--instance", instance]
        if daemon.nofile is not None:  # a real `ulimit -n`, then exec (same pid); the harness has threads
            argv = ["sh", "-c", f'ulimit -n {daemon.nofile} && exec "$@"', "sh", *argv]
        if daemon.hostname:  # a container's view: its own hostname, the same kernel (exec keeps the pid)
            argv = ["unshare", "--uts", "sh", "-c", f'hostname {daemon.hostname} && exec "$@"', "sh", *argv]
        env = {**os.environ, "AGENTD_FAULT_CLOCK_SKEW": f"{daemon.skew:g}"} if daemon.skew else None
        daemon.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
        err.close()
        if daemon.skew:
            self.skewed_pids.add(daemon.proc.pid)
        daemon.stops = []
        daemon.died_at = None
        threading.Thread(target=self.watch, args=(daemon, daemon.proc), daemon=True).start()

    def watch(self, daemon: Daemon, proc: subprocess.Popen[bytes]) -> None:
        """Note when this incarnation ends (to tell a daemon killed while stopped from one killed while working)."""
        proc.wait()
        if daemon.proc is proc:
            daemon.died_at = time.monotonic()

    # -- the actors --------------------------------------------------------------------------------------------------

    def held_by(self, pid: int) -> list[str]:
        return list(self.tokens_held_by(pid))

    def tokens_held_by(self, pid: int) -> dict[str, int | None]:
        """The tasks whose lease files name ``pid``, with each lease's token."""
        held: dict[str, int | None] = {}
        for path in (self.root / ".leases").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                lease = json.loads(path.read_text())
                if lease.get("pid") == pid:
                    held[path.stem] = lease.get("token")
        return held

    def running_work(self, tasks: list[str], wait: float) -> list[int]:
        """The live command pids of runs of ``tasks`` (as the monitor sees them), waiting up to ``wait`` s for one:
        commands are short, so a kill aimed at one must catch it while it runs."""
        wanted = set(tasks)
        deadline = time.monotonic() + wait
        while True:
            runs = list(self.alive_runs.items())
            pids = [key[0] for key, record in runs if record["task"] in wanted and pid_alive(*key)]
            if pids or time.monotonic() >= deadline:
                return pids
            time.sleep(0.01)

    def chaos(self) -> None:
        """Kill, stop, terminate and restart daemons at random until the budget is spent."""
        p = self.profile
        budget = ["kill"] * p.kills + ["stop"] * p.stops + ["term"] * p.terms
        if p.worktrees:  # runs killed while their git holds its locks (a timeout's or a cancel's SIGKILL)
            budget += ["git"] * p.kills
        self.rng.shuffle(budget)
        pending_restart: list[tuple[float, Daemon]] = []
        for action in budget:
            if self.stop_event.wait(self.rng.uniform(0.2, 1.2)):
                break
            now = time.monotonic()
            for when, daemon in list(pending_restart):
                if when <= now:
                    pending_restart.remove((when, daemon))
                    self.spawn(daemon)
                    self.stats.restarts += 1
            self.revive(skip={daemon.name for _, daemon in pending_restart})
            live = [d for d in self.daemons if d.proc is not None and d.proc.poll() is None and d.stopped_until == 0]
            if not live:
                continue
            if action == "git":
                self.kill_a_git()
                continue
            daemon = self.rng.choice(live)
            assert daemon.proc is not None
            if action == "kill":
                held = self.held_by(daemon.proc.pid)
                if held and self.rng.random() < 0.3:  # its task processes first (an OOM kill, a kill -9 of both)
                    for pid in self.running_work(held, wait=1.0):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                            self.stats.task_kills += 1
                daemon.killed_pids.add(daemon.proc.pid)
                tokens = self.tokens_held_by(daemon.proc.pid)  # (as they are now: the task kills above released some)
                killed_at = (time.time(), time.monotonic())
                daemon.proc.kill()
                daemon.proc.wait()
                self.stats.kills += 1
                self.stats.kill_log.append((*killed_at, daemon.name, tokens))
                pending_restart.append((now + self.rng.uniform(0, 1.5), daemon))
            elif action == "stop":
                daemon.proc.send_signal(signal.SIGSTOP)
                daemon.stops.append([time.monotonic(), float("inf")])
                daemon.stopped_until = now + self.rng.uniform(1, 5)
                self.stats.stops += 1
                threading.Timer(daemon.stopped_until - now, self.resume, args=(daemon,)).start()
            else:
                daemon.proc.send_signal(signal.SIGTERM)
                try:
                    daemon.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # never two incarnations at once: the old one goes before a restart
                    daemon.killed_pids.add(daemon.proc.pid)
                    daemon.proc.kill()
                    daemon.proc.wait()
                self.stats.terms += 1
                pending_restart.append((now + self.rng.uniform(0, 1.0), daemon))
        for _, daemon in pending_restart:
            self.spawn(daemon)
            self.stats.restarts += 1
        self.revive(skip={daemon.name for _, daemon in pending_restart})

    def kill_a_git(self, within: float = 2.0) -> bool:
        """SIGKILL the process group of a task's run whose git is at work in the project (its step's, or its agent's),
        as a timeout or a cancel ends a run: git's lock files stay behind. Never a daemon's own group (its
        janitor's git): that would be a daemon kill the harness did not count."""
        daemons = {d.proc.pid for d in self.daemons if d.proc is not None}
        root = str(self.root)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.stop_event.is_set():
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    with open(f"/proc/{name}/comm") as handle:
                        if handle.read().strip() != "git":
                            continue
                    cwd = os.readlink(f"/proc/{name}/cwd")
                    group = os.getpgid(int(name))
                except OSError:
                    continue
                if (cwd == root or cwd.startswith(root + "/")) and group not in daemons and group != os.getpgrp():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(group, signal.SIGKILL)
                        self.stats.git_kills += 1
                        return True
            time.sleep(0.002)
        return False

    def revive(self, skip: set[str] | None = None) -> None:
        """Restart daemons that died without the chaos killing them: a peer kills a daemon it finds hung (stopped
        past lease_ttl). A service manager would restart it (systemd: Restart=on-failure); so does the harness.
        A daemon killed so that the harness never stopped is a healthy one killed as hung: a violation."""
        for daemon in self.daemons:
            if daemon.name in (skip or set()) or daemon.proc is None or daemon.proc.poll() is None:
                continue
            if daemon.proc.returncode == -signal.SIGKILL and daemon.proc.pid not in daemon.killed_pids:
                died = daemon.died_at if daemon.died_at is not None else time.monotonic()
                if daemon.stopped_at(died):
                    self.stats.killed_as_hung += 1
                else:
                    self.stats.killed_as_hung_running += 1
                    self.stats.killed_running.append(
                        f"{daemon.name} (pid {daemon.proc.pid}, stops {daemon.stops}; {self.killers(daemon.proc.pid)})"
                    )
            daemon.stopped_until = 0.0
            self.spawn(daemon)
            self.stats.restarts += 1

    def stale_by_design(self, pid_file: Path) -> bool:
        """A PID file left by an incarnation the harness SIGKILLed itself, when no later incarnation took it over: the
        successor ended before it could (the final SIGTERM reached it while it was still starting, before agentd's
        handler was in place, so it died of the signal). A SIGKILLed daemon cannot remove its PID file; a successor
        that ran and stopped gracefully (exit 0) must have replaced and then removed it, so that case still counts."""
        daemon = next((d for d in self.daemons if f"{d.name}.pid" == pid_file.name), None)
        try:
            pid = json.loads(pid_file.read_text())["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        last = daemon.proc if daemon is not None else None
        return (
            daemon is not None
            and pid in daemon.killed_pids
            and last is not None
            and last.poll() is not None
            and last.returncode != 0
            and last.pid != pid
        )

    def killers(self, pid: int) -> str:
        """What the journal says killed daemon ``pid``: the peers' hung-holder-killed events naming it."""
        found = []
        with contextlib.suppress(OSError):
            for line in (self.root / ".agentd" / "events.jsonl").read_text(errors="replace").splitlines():
                if '"hung-holder-killed"' in line and f'"holder_pid": {pid},' in line:
                    found.append(line)
        return "journal: " + (" | ".join(found[:2]) if found else "no peer journaled killing it")

    def resume(self, daemon: Daemon) -> None:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGCONT)
        if daemon.stops and daemon.stops[-1][1] == float("inf"):
            daemon.stops[-1][1] = time.monotonic()
        daemon.stopped_until = 0.0

    def writer(self) -> None:
        """An outside writer that never takes agentd's lock: adds tasks and edits unrelated fields (atomic saves).

        Most of its saves are careful, as a script's are: read, change, and re-read just before the rename to start
        over if the file changed meanwhile (a window of a few microseconds, not closed). One save in ten is careless,
        as an editor's buffer is: it saves a copy read a while ago, reverting whatever agentd wrote since (claims,
        completions), which agentd must survive without running a task twice or losing one.
        """
        n = 0
        while not self.stop_event.wait(self.rng.uniform(0.2, 0.6)):
            n += 1
            careless = self.rng.random() < 0.1
            for _ in range(5):
                try:
                    raw = self.queue.read_bytes()
                    data = json.loads(raw)
                except (OSError, ValueError):
                    continue
                present = {t["id"] for t in data["tasks"]}
                lost = [task_id for task_id in self.added if task_id not in present]
                for task_id in lost:  # a re-check a careful person makes: if the edit did not stick, make it again
                    data["tasks"].append(hand_task(task_id))
                adding = n % 3 == 0 and len(self.added) < self.profile.tasks // 20
                if adding:
                    task_id = f"H{len(self.added):04d}"
                    data["tasks"].append(hand_task(task_id))
                else:
                    target = self.rng.choice(data["tasks"])
                    target["notes"] = f"edited by hand {n} — ✍ 🎉"
                temp = self.queue.with_name(f".hand-edit.{n}")
                temp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                if careless:
                    time.sleep(self.rng.uniform(0, 0.3))  # the buffer was open a while
                elif self.queue.read_bytes() != raw:
                    temp.unlink()
                    continue  # changed meanwhile: start over from the new version
                os.replace(temp, self.queue)
                self.stats.writer_readds += len(lost)
                if adding:
                    self.added.append(task_id)
                    self.stats.writer_adds += 1
                else:
                    self.stats.writer_edits += 1
                self.stats.writer_careless += careless
                break

    def reader(self) -> None:
        """Parse and validate every version of the queue it can catch, in a tight loop.

        It polls the file's identity (inode, size, mtime) every 2 ms and checks each new version: ``json.loads``
        parses it (as any reader would), the JSON Schema validates it, and its ids must be unique. A reader that
        re-parsed the same bytes in a spin would only starve the 2 cores of the daemons it is watching. Validation
        reuses the verdict on each task whose exact text it validated before (agentd's incremental decoder splits
        the text; its document must equal ``json.loads``'s), so every version is validated, not a sample.
        """
        working = {role: spec[1] for role, spec in ROLES.items()}
        decoder = Decoder()
        last: tuple[int, int, int] | None = None
        while not self.stop_event.is_set():
            try:
                info = os.stat(self.queue)
                identity = (info.st_ino, info.st_size, info.st_mtime_ns)
                if identity == last:
                    time.sleep(0.002)
                    continue
                raw = self.queue.read_bytes()
                last = identity
                data = json.loads(raw)
                self.stats.reads += 1
                decoded = decoder.decode(raw.decode("utf-8"))
                if decoded.data != data:
                    self.stats.reader_failures.append("the incremental parse differs from json.loads")
                problem = schema.queue_error(decoded.data, decoded.pieces)
                self.stats.validations += 1
                if problem is not None:
                    self.stats.reader_failures.append(f"invalid: {problem}")
                ids = [t["id"] for t in data["tasks"]]
                if len(ids) != len(set(ids)):
                    twice = sorted({i for i in ids if ids.count(i) > 1})
                    self.stats.reader_failures.append(f"a version with duplicate ids: {twice[:10]}")
                for role, status in working.items():
                    there = [t["id"] for t in data["tasks"] if t.get("status") == status]
                    if len(there) > self.stats.queue_wip_max[role]:
                        self.stats.queue_wip_max[role] = len(there)
                        self.stats.queue_wip_peak[role] = there
            except (ValueError, KeyError) as exc:
                self.stats.reader_failures.append(f"{type(exc).__name__}: {exc}")
            except FileNotFoundError:
                self.stats.reader_failures.append("the queue file was missing")

    def monitor(self) -> None:
        """For executions that die without recording an end (SIGKILL), record when they were last seen alive: a
        lower bound of their real end (their start, at the least), so an overlap found with it is a real one."""
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
                now = time.time()  # taken before the look: if it is alive now, it was alive then
                if pid_alive(*key):
                    record["last_alive"] = now
                    continue
                absorb(tail.new())  # its end may have landed after we looked
                if key not in ended:
                    append_record(self.history, {**record, "event": "gone", "t": record["last_alive"]})
                    alive.pop(key, None)
                    ended.add(key)
            time.sleep(0.02)

    # -- the run -----------------------------------------------------------------------------------------------------

    def read_tasks(self) -> list[dict[str, Any]] | None:
        try:
            tasks: list[dict[str, Any]] = json.loads(self.queue.read_bytes())["tasks"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # (the reader thread judges every version; here a bad one is only not looked at)
        return tasks

    def finished(self, tasks: list[dict[str, Any]] | None = None) -> bool:
        tasks = self.read_tasks() if tasks is None else tasks
        if tasks is None:
            return False
        return not unfinished(tasks) and all(a in {t["id"] for t in tasks} for a in self.added)

    def await_final(self, began: float, progress: Progress, chaos: threading.Thread | None = None) -> Liveness:
        """Wait until every task is final, as long as the daemons keep moving tasks on: a stall (no task changed
        state for the profile's stall window while some are not final) ends the wait at once, whatever the
        machine's speed; the cap is only a safety net (a run still progressing past it is too slow, not stuck)."""
        while True:
            now = time.monotonic()
            tasks = self.read_tasks()
            if tasks is not None:
                progress.observe(now, tasks)
            if chaos is None or not chaos.is_alive():
                # The chaos thread restarts daemons while it runs; after it, a daemon a peer kills as hung (its last
                # SIGSTOP outlasted the lease ttl) is restarted here, as a service manager would.
                self.revive()
                if tasks is not None and self.finished(tasks):
                    return progress.verdict("final", now, [])
            if progress.stalled(now):
                stuck = unfinished(tasks or [])
                return progress.verdict("stall", now, [self.why(task_id) for task_id in stuck[:5]])
            if now - began >= self.profile.cap:
                return progress.verdict("too slow", now, [])
            time.sleep(0.5)

    def why(self, task_id: str) -> str:
        """`agentd queue why` of a stuck task, asked while the daemons still run (evidence of a stall)."""
        argv = [sys.executable, "-m", "agentd", "--root", str(self.root), "queue", "why", task_id]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            return f"agentd queue why {task_id}: no answer in 120 s"
        return f"agentd queue why {task_id}: " + (done.stdout + done.stderr).strip().replace("\n", " | ")

    def run(self) -> int:
        self.setup()
        for daemon in self.daemons:
            self.spawn(daemon)
        threads = [threading.Thread(target=fn, daemon=True) for fn in (self.writer, self.reader, self.monitor)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        progress = Progress(self.profile.stall, began)
        chaos = threading.Thread(target=self.chaos, daemon=True)
        chaos.start()
        liveness = self.await_final(began, progress, chaos)
        chaos_done = not chaos.is_alive()
        self.stop_event.set()
        chaos.join(timeout=30)
        threads[0].join(timeout=30)  # the writer may be saving one last edit: the drain must see it
        for daemon in self.daemons:
            self.resume(daemon)
        if liveness.verdict == "final":  # the survivors drain what the writer's last edits left
            progress.restart(time.monotonic())
            liveness = self.await_final(began, progress)
        for daemon in self.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGTERM)
        for daemon in self.daemons:
            if daemon.proc is not None:
                try:
                    daemon.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.proc.kill()
        for thread in threads:
            thread.join(timeout=10)
        elapsed = time.monotonic() - began
        return self.verdict(elapsed, chaos_done, liveness)

    # -- the verdict -------------------------------------------------------------------------------------------------

    def verdict(self, elapsed: float, chaos_done: bool, liveness: Liveness | None = None) -> int:
        records = read_history(self.history)
        tasks = json.loads(self.queue.read_bytes())["tasks"]
        violations: list[str] = []
        evidence: list[str] = []
        ids = [t["id"] for t in tasks]
        expected = [f"T{i:04d}" for i in range(self.profile.tasks)] + self.added
        runs = executions(records)
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            by_task[run["task"]].append(run)

        def history_of(task_id: str) -> str:
            return f"history of {task_id}: " + json.dumps([r for r in records if r.get("task") == task_id])

        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            violations.append(f"duplicate ids in the file: {twice}")
            evidence += [f"file entries of {i}: " + json.dumps([t for t in tasks if t["id"] == i]) for i in twice[:3]]
        missing = sorted(set(expected) - set(ids))
        if missing:
            violations.append(f"tasks vanished: {missing[:10]}")
            evidence += [history_of(task_id) for task_id in missing[:3]]
        left = unfinished(tasks)
        if left and liveness is not None and liveness.verdict == "stall":
            violations.append(
                f"stall: no task changed state for {liveness.quiet:.0f} s (window {self.profile.stall:g} s) at "
                f"{liveness.at:.0f} s, {len(left)} task(s) not final: {left[:10]}"
            )
            evidence += liveness.why
        elif left and liveness is not None and liveness.verdict == "too slow":
            violations.append(
                f"too slow: {liveness.rate:.2f} tasks/s ({liveness.final} final, {len(left)} not) when the "
                f"{self.profile.cap:g} s cap ran out, still progressing (last change {liveness.quiet:.1f} s before; "
                f"not a stall): {left[:10]}"
            )
        if left:
            violations.append(f"{len(left)} task(s) never reached a final status: {left[:10]}")
            evidence += [f"file entry of {i}: " + json.dumps([t for t in tasks if t["id"] == i]) for i in left[:3]]
            evidence += [history_of(task_id) for task_id in left[:3]]
        for record in records:
            if record["event"] == "overlap":
                violations.append(f"execution overlap (guard lock held by another run): {record}")
                evidence.append(history_of(record["task"]))
        for task_id, task_runs in by_task.items():
            task_runs.sort(key=lambda r: r["start"])
            for before, after in itertools.pairwise(task_runs):
                # A run killed without a word ends when it was last seen alive: a lower bound of its real end, so a
                # start before it is an overlap all the same.
                if after["start"] < before["end"]:
                    violations.append(f"{task_id}: run {after} started before {before} ended")
                    evidence.append(json.dumps(task_runs))
                if after["token"] <= before["token"]:
                    violations.append(f"{task_id}: token {after['token']} after {before['token']}")
                    evidence.append(json.dumps(task_runs))
        peaks, crowds = concurrency(runs)
        for role, peak in peaks.items():
            if peak > WIP[role]:
                violations.append(f"{role}: {peak} runs at once, WIP limit {WIP[role]}")
                evidence.append(f"{role} runs alive together: " + json.dumps(crowds[role]))
        for role, peak in self.stats.queue_wip_max.items():
            if peak > WIP[role]:
                violations.append(f"{role}: {peak} tasks in its working status at once in the queue (WIP {WIP[role]})")
                evidence.append(f"{role}: the version that had them: " + json.dumps(self.stats.queue_wip_peak[role]))
        violations += [f"reader: {failure}" for failure in self.stats.reader_failures]
        if self.profile.worktrees:
            found, seen = self.git_findings(tasks)
            violations += found
            log(f"worktrees: {'; '.join(seen)}")
        if self.stats.killed_as_hung_running:
            violations.append(f"{self.stats.killed_as_hung_running} daemon(s) killed as hung that were never stopped")
            evidence += [f"killed while not stopped: {who}" for who in self.stats.killed_running[:3]]
        leftovers = sorted((self.root / ".leases").glob("*.json"))
        if leftovers:
            violations.append(f"lease files left behind: {[p.name for p in leftovers[:10]]}")
            evidence += [f"{p.name}: {p.read_text(errors='replace').strip()}" for p in leftovers[:3]]
        run_dir = self.root / ".agentd" / "run"
        pid_files = sorted(run_dir.glob("*.pid")) if run_dir.exists() else []
        stale = [p for p in pid_files if self.stale_by_design(p)]
        if stale:
            log(f"PID files of SIGKILLed daemons whose successor was stopped while starting: {[p.name for p in stale]}")
        pid_files = [p for p in pid_files if p not in stale]
        if pid_files:
            violations.append(f"PID files left behind: {[p.name for p in pid_files]}")
            evidence += [f"{p.name}: {' '.join(p.read_text(errors='replace').split())}" for p in pid_files[:3]]
        alive_work = [r for r in records if r["event"] == "start" and pid_alive(r["pid"], r.get("since"))]
        if alive_work:
            violations.append(f"task processes left behind: {[r['pid'] for r in alive_work[:10]]}")
            evidence += [json.dumps(r) for r in alive_work[:3]]
        escaped = [r for r in records if r["event"] == "escaped"]
        alive_escaped = [r for r in escaped if pid_alive(r["pid"], r.get("since"))]
        if alive_escaped:
            violations.append(f"escaped grandchildren outlived their tasks: {[r['pid'] for r in alive_escaped[:10]]}")
            evidence += [history_of(r["task"]) for r in alive_escaped[:3]]
        journal = list(read_events(self.root / ".agentd" / "events.jsonl"))  # rotated files included
        charged = [
            event.data
            for event in journal
            if event.name == "finished" and event.data.get("exit_code") in (126, 127)  # work.py never exits so
        ]
        if charged:
            violations.append(f"agentd's own failures to start a command charged to tasks: {len(charged)}")
            evidence += [json.dumps(data, default=str) for data in charged[:3]]
        not_started = sum(
            1 for event in journal if event.name == "finished" and event.data.get("outcome") == "not-started"
        )
        start_notes = sum(1 for event in journal if event.name in ("start-failed", "start-capped"))
        recovery_times, restart_times, slowest = self.recovery_times(records, journal)
        recoveries = sum(1 for event in journal if event.name == "recovered")
        refused = sum(1 for event in journal if event.name == "refused")
        final = defaultdict(int)
        for t in tasks:
            final[t["status"]] += 1
        s = self.stats
        log(f"seed {self.seed}, profile {self.profile}, {elapsed:.0f} s")
        log(
            f"executions {len(runs)} ({len(runs) / max(elapsed, 1e-9):.1f}/s), daemons {self.profile.daemons}, "
            f"tasks {len(tasks)} ({len(self.added)} added by hand)"
        )
        if liveness is not None:
            log(
                f"liveness: {liveness.verdict} at {liveness.at:.0f} s, {liveness.rate:.2f} tasks final/s; longest "
                f"spell without a task changing state {liveness.longest:.1f} s (stall window {self.profile.stall:g} "
                f"s, cap {self.profile.cap:g} s)"
            )
        log(
            f"SIGKILLs {s.kills} (+{s.task_kills} task processes, {s.git_kills} runs while git was at work), "
            f"SIGSTOP/SIGCONT {s.stops}, SIGTERMs {s.terms}, "
            f"restarts {s.restarts}, chaos finished: {chaos_done}"
        )
        log(f"environments: {'; '.join(s.environments) or 'plain daemons only'}")
        log(
            f"killed as hung by a peer: {s.killed_as_hung} that were stopped, {s.killed_as_hung_running} that were "
            "not (must be 0)"
        )
        log(
            f"recoveries {recoveries}, refused completions {refused}, hand saves {s.writer_edits + s.writer_adds} "
            f"({s.writer_careless} careless, of stale copies), hand re-adds after a lost edit {s.writer_readds}"
        )
        if recovery_times and restart_times:
            log(
                f"recovery after SIGKILL (lease cleared, task put back): median {statistics.median(recovery_times):.2f}"
                f" s, max {max(recovery_times):.2f} s over {len(recovery_times)} tasks; started again after median "
                f"{statistics.median(restart_times):.2f} s, max {max(restart_times):.2f} s (waiting for WIP room too)"
            )
            for line in slowest:
                log(f"slow recovery: {line}")
        log(f"reader: {s.reads} reads, {s.validations} validations, {len(s.reader_failures)} failures")
        log(
            f"escaped grandchildren {len(escaped)} (alive at the end: {len(alive_escaped)}); runs agentd could not "
            f"start (ulimit -n {self.profile.low_nofile} on one builder) {not_started}, said in {start_notes} "
            "start-failed/start-capped events"
        )
        log(f"peak concurrency {dict(peaks)}, WIP limits {WIP}; final statuses {dict(final)}")
        log(f"violations = {len(violations)}")
        if violations:
            for violation in violations[:50]:
                log(f"VIOLATION: {violation}")
            for item in evidence[:10]:
                log(f"evidence: {item}")
            log(f"reproduce with: python -m tests.torture.run --seed {self.seed} (files kept in {self.root.parent})")
            return 1
        return 0

    def recovery_times(
        self, records: list[dict[str, Any]], journal: list[Any]
    ) -> tuple[list[float], list[float], list[str]]:
        """For each task a SIGKILLed daemon held: seconds until a peer recovered it (lease cleared, task put back),
        and until it started again (which may also wait for WIP room); and the three slowest recoveries over a
        second, each with who recovered it and which daemons were stopped at the kill (to tell a slow recovery
        agentd owes from one the chaos made)."""
        starts: dict[str, list[float]] = defaultdict(list)
        for record in records:
            if record["event"] == "start":
                starts[record["task"]].append(record["t"])
        recovered: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        for event in journal:
            if event.name == "recovered" and event.data.get("task") and event.data.get("pid") not in self.skewed_pids:
                recovered[event.data["task"]].append((event.time.timestamp(), event))
        to_recover, to_restart = [], []
        slow: list[tuple[float, str]] = []
        for killed_at, moment, name, held in self.stats.kill_log:
            for task_id, token in held.items():
                # (that lease's recovery: not a later one of the task, claimed and lost again since; the journal's
                # times are to the millisecond)
                later = [
                    (t, event)
                    for t, event in recovered[task_id]
                    if t > killed_at - 0.001 and (token is None or event.data.get("token") == token)
                ]
                if later:
                    at, event = min(later, key=lambda item: item[0])
                    to_recover.append(at - killed_at)
                    if at - killed_at > 1.0:
                        away = [d.name for d in self.daemons if d.name != name and d.stopped_at(moment)]
                        slow.append(
                            (
                                at - killed_at,
                                f"{task_id} of {name} after {at - killed_at:.2f} s, by {event.data.get('role')} "
                                f"pid {event.data.get('pid')} ({event.data.get('cause')}); stopped at the kill:"
                                f" {', '.join(away) or 'none'}",
                            )
                        )
                again = [t for t in starts[task_id] if t > killed_at]
                if again:
                    to_restart.append(min(again) - killed_at)
        slow.sort(key=lambda item: -item[0])
        return to_recover, to_restart, [line for _, line in slow[:3]]


@dataclass(frozen=True)
class Liveness:
    """How the wait for every task to be final ended: "final", "stall" (no progress for the stall window) or "too
    slow" (the cap ran out while tasks still moved on), with the figures that tell them apart."""

    verdict: str
    at: float  # s since the run began
    quiet: float  # s since a task last changed state
    longest: float  # the longest spell without a task changing state, s
    rate: float  # final tasks per s since the run began
    final: int
    why: list[str] = field(default_factory=list)  # `agentd queue why` of the stuck tasks (a stall)


class Progress:
    """Whether the daemons still move tasks on, judged from the queue's versions alone (the times are passed in).

    A task changes state when its status or lease token changes (a claim, a completion, a recovery, a retry). A task
    that appears or vanishes does not count (the outside writer adds tasks: not the daemons' progress), nor does an
    edit of other fields. A careless hand save can revert a status, but only to one the daemons wrote shortly
    before: it cannot make a stalled queue look busy.
    """

    def __init__(self, window: float, began: float) -> None:
        self.window = window
        self.began = began
        self.last_change = began
        self.longest = 0.0
        self.final = 0
        self.states: dict[str, tuple[Any, Any]] | None = None

    def observe(self, now: float, tasks: list[dict[str, Any]]) -> None:
        states = {t["id"]: (t.get("status"), t.get("lease_token")) for t in tasks}
        if self.states is not None and any(self.states.get(key, value) != value for key, value in states.items()):
            self.longest = max(self.longest, now - self.last_change)
            self.last_change = now
        self.states = states
        self.final = len(tasks) - len(unfinished(tasks))

    def restart(self, now: float) -> None:
        """A new wait begins (the drain after the writer stopped): the quiet spell counts from now."""
        self.last_change = max(self.last_change, now)

    def stalled(self, now: float) -> bool:
        return now - self.last_change >= self.window

    def verdict(self, verdict: str, now: float, why: list[str]) -> Liveness:
        quiet = now - self.last_change
        rate = self.final / max(now - self.began, 1e-9)
        return Liveness(verdict, now - self.began, quiet, max(self.longest, quiet), rate, self.final, why)


class Tail:
    """The lines appended to a JSON-lines file since the last call (a partial last line waits for its end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""

    def new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def hand_task(task_id: str) -> dict[str, Any]:
    return {"id": task_id, "title": "added by hand → ✋", "status": "ready", "dependencies": []}


def read_history(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def append_record(path: Path, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def run_key(record: dict[str, Any]) -> tuple[int, int | None]:
    """What tells one run's process from every other: its pid and its start time (pids come round)."""
    return record["pid"], record.get("since")


def pid_alive(pid: int, since: int | None = None) -> bool:
    """A process is alive (not a zombie) and, given ``since`` (its start time in clock ticks, as work.py records
    it), is that very process and not a later one that got its pid (pid_max is often 32768: pids come round)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and (since is None or int(fields[19]) == since)


def unfinished(tasks: list[dict[str, Any]]) -> list[str]:
    """Tasks not in a final status: done, blocked after failing (blocked_reason), or held back by such a task."""
    status = {t["id"]: t["status"] for t in tasks}
    deps = {t["id"]: t.get("dependencies") or [] for t in tasks}
    failed = {t["id"] for t in tasks if t["status"] == "blocked" and t.get("blocked_reason")}

    def doomed(task_id: str, seen: frozenset[str] = frozenset()) -> bool:
        if task_id in failed:
            return True
        return any(d not in seen and doomed(d, seen | {task_id}) for d in deps.get(task_id, []))

    return [t for t, s in status.items() if s != "done" and not (t in failed or doomed(t))]


def executions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per run: start, end (exact, or last seen alive for runs killed without a word), token."""
    open_runs: dict[tuple[int, int | None], dict[str, Any]] = {}
    runs = []
    for record in sorted(records, key=lambda r: r["t"]):
        if record["event"] == "start":
            open_runs[run_key(record)] = {
                "task": record["task"],
                "role": record["role"],
                "token": record["token"],
                "pid": record["pid"],
                "start": record["t"],
            }
        elif record["event"] in ("end", "gone") and run_key(record) in open_runs:
            run = open_runs.pop(run_key(record))
            run["end"] = record["t"]
            run["exact_end"] = record["event"] == "end"
            runs.append(run)
    for run in open_runs.values():
        run["end"] = float("inf")
        run["exact_end"] = False
        runs.append(run)
    return runs


def concurrency(runs: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    """The most runs of each role alive at one instant (killed runs count until they were last seen alive), and the
    runs alive together at that instant."""
    peaks: dict[str, int] = defaultdict(int)
    crowds: dict[str, list[dict[str, Any]]] = {}
    for role in ROLES:
        points = []
        for n, run in enumerate(runs):
            if run["role"] == role:
                points.append((run["start"], 1, n))
                points.append((run["end"], -1, n))
        # At one instant ends come before starts (a run that ends as another starts does not overlap it), so a run
        # of no length (killed before it was seen alive) ends before it starts: counted, it nets to nothing.
        count: dict[int, int] = defaultdict(int)
        alive: set[int] = set()
        for _, delta, n in sorted(points, key=lambda p: (p[0], p[1])):
            count[n] += delta
            if count[n] > 0:
                alive.add(n)
            else:
                alive.discard(n)
            if len(alive) > peaks[role]:
                peaks[role] = len(alive)
                crowds[role] = [runs[i] for i in sorted(alive)]
    return peaks, crowds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the project folder even when the run passes")
    for name in ("daemons", "tasks", "kills", "stops", "terms", "uts", "skewed"):
        parser.add_argument(f"--{name}", type=int)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    names = ("daemons", "tasks", "kills", "stops", "terms", "uts", "skewed")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    profile = Profile(**{**profile.__dict__, **overrides})
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    root = Path(tempfile.mkdtemp(prefix="agentd-torture-"))
    torture = Torture(profile, seed, root)
    try:
        code = torture.run()
    finally:
        for daemon in torture.daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)
                daemon.proc.kill()
    if code == 0 and not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
