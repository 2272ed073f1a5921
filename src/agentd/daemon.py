"""One role's daemon: ``tick()`` does one pass and returns what it did; ``run()`` loops it with wake-ups and shutdown.

A pass: finish tasks that ended (one queue transaction for all), renew heartbeats, then — only if there is something
to do — one transaction that recovers stale leases, unblocks tasks and claims as many as there is room for, and
finally starts the claimed tasks. Queue changes and lease releases wake the loop at once (file events); the interval
is the fallback poll.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import queue as queue_mod
import shlex
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from agentd import command, faults, logsetup, recovery, scheduler, transitions
from agentd import config as config_mod
from agentd.clock import Clock, SystemClock, format_timestamp
from agentd.config import Config
from agentd.errors import AgentdError, ConfigError, DataError, ExitCode
from agentd.events import Journal
from agentd.leases import Held, LeaseDir, LeaseRecord, new_record, process_start
from agentd.model import Task, index_by_id, views
from agentd.queuefile import QueueStore, Snapshot
from agentd.runner import ExitInfo, LaunchSpec, TaskProcess, launch
from agentd.scheduler import Decision, Kind, Outcome, View
from agentd.watch import Watcher
from agentd.workflow import Role

log = logging.getLogger("agentd.daemon")

LEASE_POLL = 1.0  # s between lease checks while other daemons' leases exist (file events are the fast path)
Claim = tuple[str, int, int, dict[str, Any]]  # task id, token, attempt, the task as claimed


class Mode(enum.StrEnum):
    """How long the daemon runs."""

    FOREVER = "forever"
    ONCE = "once"  # one pass: claim what there is room for, run it to the end, exit
    DRAIN = "drain"  # until nothing is claimable (or backing off) for the role and nothing runs


@dataclass
class Running:
    """A task this daemon started."""

    task_id: str
    token: int
    attempt: int
    held: Held
    log_path: Path
    result_path: Path
    started_at: datetime
    next_beat: float
    proc: TaskProcess | None = None
    exit: ExitInfo | None = None
    lost: bool = False
    interrupted: bool = False


@dataclass
class TickReport:
    """What one pass did."""

    claimed: list[str] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (task id, outcome kind)
    refused: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    unblocked: list[str] = field(default_factory=list)
    error: str | None = None
    claimable_left: int = 0  # claimable (or backing off) for this role after the pass

    @property
    def did_something(self) -> bool:
        return bool(self.claimed or self.finished or self.recovered or self.unblocked or self.refused)


class Daemon:
    """The daemon of one role (several may serve the same role: the queue lock and leases keep them apart)."""

    def __init__(
        self,
        config: Config,
        role: str,
        *,
        instance: str | None = None,
        concurrency: int | None = None,
        interval: float | None = None,
        clock: Clock | None = None,
        watch: bool = True,
    ) -> None:
        self.config = config
        self.role_name = role
        self.role: Role = config.role(role)
        self.instance = instance
        self.concurrency = concurrency
        self.interval = interval if interval is not None else self.role.interval
        self.clock: Clock = clock or SystemClock()
        self.store = QueueStore(config.queue_path, workflow=config.workflow, lock_timeout=config.lock_timeout)
        self.leases = LeaseDir(config.leases_dir, config.root)
        self.journal = Journal(
            config.state_dir / "events.jsonl",
            self.clock,
            role,
            log,
            max_bytes=config.log.max_bytes,
            backups=config.log.backups,
        )
        self.running: dict[str, Running] = {}
        self.failed: set[str] = set()  # tasks whose latest run here failed (a later success clears them)
        self._ended: queue_mod.SimpleQueue[tuple[str, int, ExitInfo]] = queue_mod.SimpleQueue()
        self._wake = threading.Event()
        self._stop_requests = 0
        self._reload = False
        self._last_error: str | None = None
        self._wip_full = False
        self._watch = watch
        self._watcher: Watcher | None = None
        self._next_wake: datetime | None = None
        self._on_first_pass: Callable[[str | None], bool] | None = None
        self._claiming = True  # --once stops claiming after its first pass
        self._dirty = True  # something may have changed since the last look at the queue
        self._last_pass = float("-inf")
        self._claimable_left = 0

    # -- wake-ups ------------------------------------------------------------------------------------------------------

    def wake(self, reason: str = "") -> None:
        """Run the next pass now (thread-safe; called by file events, task exits and signals)."""
        self._dirty = True
        self._wake.set()

    def _on_exit(self, task_id: str, token: int) -> Any:
        def callback(_proc: TaskProcess, info: ExitInfo) -> None:
            self._ended.put((task_id, token, info))
            self.wake("task ended")

        return callback

    # -- one pass ------------------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass. Never raises for bad data: the error is reported once and the pass retried later."""
        report = TickReport()
        try:
            self._collect_exits()
            self._finish(report)
            self._heartbeat()
            if self._stop_requests == 0 and self._due():
                self._dirty = False  # cleared first: an event during the pass asks for another
                self._last_pass = self.clock.monotonic()
                self._sweep_and_claim(report)
                self._claimable_left = report.claimable_left
            else:
                report.claimable_left = self._claimable_left  # what the last look at the queue found
                if self._last_error is not None:
                    return report
            if self._last_error is not None and report.error is None:
                self.journal.emit(
                    "queue-invalid", f"{self.config.queue_path.name} is valid again; carrying on", state="valid"
                )
                self._last_error = None
        except (DataError, ConfigError, AgentdError) as exc:
            report.error = str(exc)
            if report.error != self._last_error:
                self.journal.emit(
                    "queue-invalid",
                    f"cannot use the queue: {exc} (retrying)",
                    level=logging.ERROR,
                    state="invalid",
                    error=str(exc),
                )
                self._last_error = report.error
        return report

    def _due(self) -> bool:
        """Whether this pass must look at the queue: an event, the interval, a backoff ending, an error being
        retried, or a peer's lease gone stale. Otherwise a wake-up only renews heartbeats (no queue read)."""
        if self._dirty or self._last_error is not None:
            return True
        if self.clock.monotonic() - self._last_pass >= self.interval:
            return True
        if self._next_wake is not None and self.clock.now() >= self._next_wake:
            return True
        now = self.clock.now()
        for task_id, seen in self.leases.observe_all().items():
            if task_id in self.running:
                continue
            role = self.config.roles.get(seen.role or "")
            if not scheduler.judge(seen, now, role.lease_ttl if role else self.role.lease_ttl).live:
                return True
        return False

    def _collect_exits(self) -> None:
        while True:
            try:
                task_id, token, info = self._ended.get_nowait()
            except queue_mod.Empty:
                return
            run = self.running.get(task_id)
            if run is not None and run.token == token:
                run.exit = info

    def _finish(self, report: TickReport) -> None:
        """Record every ended task in one transaction, then release their leases."""
        done = [run for run in self.running.values() if run.exit is not None]
        if not done:
            return
        now = self.clock.now()
        outcomes = {run.task_id: self._outcome(run) for run in done}
        faults.point("complete.before-queue-write")

        def change(doc: dict[str, Any]) -> dict[str, Decision | str]:
            results: dict[str, Decision | str] = {}
            by_id = index_by_id(doc)
            tasks = {task.id: task for task in views(doc)}
            for run in done:
                outcome = outcomes[run.task_id]
                results[run.task_id] = transitions.complete(
                    by_id.get(run.task_id),
                    tasks.get(run.task_id),
                    self.role,
                    outcome,
                    run.token,
                    now,
                    self.config.workflow,
                    self._last_run(run, outcome),
                )
            return results

        results = self.store.transaction(change)
        faults.point("complete.after-queue-write")
        for run in done:
            del self.running[run.task_id]
            run.held.release()
            self._report_finish(run, results[run.task_id], outcomes[run.task_id], report)
            self.journal.emit(
                "released",
                f"released the lease on {run.task_id}",
                level=logging.DEBUG,
                task=run.task_id,
                token=run.token,
            )
            self._prune_logs(run.task_id)

    def _report_finish(self, run: Running, result: Decision | str, outcome: Outcome, report: TickReport) -> None:
        """Journal (and log) how one run ended: refused, or finished with its outcome and next status."""
        if isinstance(result, str):
            report.refused.append(run.task_id)
            self.journal.emit(
                "refused",
                f"completion of {run.task_id} refused: {result}",
                level=logging.WARNING,
                task=run.task_id,
                token=run.token,
            )
            return
        assert run.exit is not None
        took = run.exit.duration
        report.finished.append((run.task_id, outcome.kind.value))
        if outcome.kind in (Kind.FAILURE, Kind.TIMEOUT, Kind.CRASH) and not result.stood:
            self.failed.add(run.task_id)
        elif outcome.kind is not Kind.INTERRUPTED:
            self.failed.discard(run.task_id)
        self.journal.emit(
            "finished",
            f"finished {run.task_id} in {took:.1f} s: {outcome.kind.value}"
            f"{'' if outcome.exit_code is None else f' (exit {outcome.exit_code})'} -> {result.status}",
            task=run.task_id,
            token=run.token,
            outcome=outcome.kind.value,
            exit_code=outcome.exit_code,
            status=result.status,
            duration=round(took, 3),
        )
        if result.retry and outcome.kind is not Kind.INTERRUPTED:
            self.journal.emit(
                "retry-scheduled",
                f"{run.task_id}: {result.note}",
                task=run.task_id,
                token=run.token,
                attempt=run.attempt,
                not_before=result.patch.get("not_before"),
            )

    def _prune_logs(self, task_id: str | None = None) -> None:
        """Keep the newest ``keep_task_logs`` output logs per task, none older than ``keep_task_log_days``."""
        try:
            removed = logsetup.prune_task_logs(
                self.config.state_dir / "logs" / "tasks",
                keep=self.config.log.keep_task_logs,
                max_age_days=self.config.log.keep_task_log_days,
                now=time.time(),
                only=task_id,
            )
        except OSError as exc:
            log.warning("cannot prune task logs: %s", exc)
            return
        if removed and task_id is None:
            log.info("pruned %d old task log(s)", removed)

    def _outcome(self, run: Running) -> Outcome:
        info = run.exit
        assert info is not None
        if run.interrupted and info.returncode != 0:
            return Outcome(Kind.INTERRUPTED, info.returncode, info.signal, note="interrupted by shutdown")
        try:
            result = command.read_result(run.result_path)
        except DataError as exc:
            log.warning("%s", exc)
            return Outcome(Kind.FAILURE, info.returncode, info.signal, note=f"bad result file: {exc.reason}")
        finally:
            with contextlib.suppress(OSError):
                run.result_path.unlink()
        if info.error and info.returncode is None:
            return Outcome(Kind.CRASH, None, info.signal, note=info.error)
        return scheduler.classify(
            self.role, exit_code=info.returncode, signal=info.signal, timed_out=info.timed_out, result=result
        )

    def _last_run(self, run: Running, outcome: Outcome) -> dict[str, Any]:
        info = run.exit
        assert info is not None
        return {
            "role": self.role_name,
            "attempt": run.attempt,
            "token": run.token,
            "outcome": outcome.kind.value,
            "exit_code": outcome.exit_code,
            "signal": outcome.signal,
            "started_at": format_timestamp(run.started_at),
            "ended_at": format_timestamp(self.clock.now()),
            "duration_s": round(info.duration, 3),
            "log": os.path.relpath(run.log_path, self.config.root),
        }

    def _heartbeat(self) -> None:
        """Renew leases that are due; a lease found taken stops its task's process group."""
        mono = self.clock.monotonic()
        for run in list(self.running.values()):
            if run.exit is not None or run.lost or mono < run.next_beat:
                continue
            run.next_beat = mono + self.role.heartbeat
            if run.held.update(self.clock.now()):
                continue
            run.lost = True
            self.journal.emit(
                "heartbeat-lost",
                f"lease on {run.task_id} was taken over (token {run.token}); stopping its process group",
                level=logging.WARNING,
                task=run.task_id,
                token=run.token,
            )
            if run.proc is not None:
                run.proc.kill()

    # -- sweeping and claiming -----------------------------------------------------------------------------------------

    def _limits(self, snapshot_data: dict[str, Any]) -> dict[str, int]:
        limits: dict[str, int] = dict(snapshot_data.get("wip_limits") or {})
        return limits

    def _room(self, tasks: list[Task], limits: dict[str, int]) -> int:
        if not self._claiming:
            return 0
        room = scheduler.wip_room(tasks, self.role, limits)
        if self.concurrency is not None:
            room = min(room, self.concurrency - len(self.running))
        return max(0, room)

    def _plan(self, data: dict[str, Any], observed: dict[str, Any], now: datetime) -> tuple[Any, ...]:
        tasks = views(data)
        held = set(self.running)
        recoveries = recovery.plan(tasks, observed, self.config.workflow, now, held=held)
        view = View.build(tasks, self.config.workflow, now, observed, self.role.lease_ttl)
        unblock = scheduler.to_unblock(self.config.workflow, view)
        claimable = scheduler.claimable(self.role, view)
        return tasks, recoveries, unblock, claimable

    def _sweep_and_claim(self, report: TickReport) -> None:
        now = self.clock.now()
        snapshot: Snapshot = self.store.read()
        observed = self.leases.observe_all()
        tasks, recoveries, unblock, claimable = self._plan(snapshot.data, observed, now)
        room = self._room(tasks, self._limits(snapshot.data))
        self._log_wip(tasks, snapshot.data, claimable, room)
        waits = [t.not_before for t in tasks if t.status in self.role.claims and t.not_before and t.not_before > now]
        self._next_wake = min(waits) if waits else None
        report.claimable_left = len(claimable) + len(waits)
        if not recoveries and not unblock and not (claimable and room > 0):
            return
        acquired: dict[str, Held] = {}

        def change(doc: dict[str, Any]) -> tuple[list[recovery.Recovery], list[str], list[Claim]]:
            now_ = self.clock.now()
            seen = self.leases.observe_all()
            for task_id in acquired:
                seen.pop(task_id, None)  # our own fresh claims from an earlier try of this transaction
            _, plans, to_unblock, _ = self._plan(doc, seen, now_)
            done = recovery.apply(doc, plans, self.config.workflow, now_, self.leases)
            for item in done:
                seen.pop(item.task_id, None)
            by_id = index_by_id(doc)
            moved = []
            rule = self.config.workflow.unblock
            for task in to_unblock:
                if rule is not None and by_id[task.id]["status"] == rule.from_status:
                    by_id[task.id]["status"] = rule.to_status
                    moved.append(task.id)
            fresh = views(doc)
            view = View.build(fresh, self.config.workflow, now_, seen, self.role.lease_ttl)
            room_ = self._room(fresh, self._limits(doc))
            chosen = scheduler.claimable(self.role, view)[:room_] if room_ > 0 else []
            fresh_ids = [task for task in chosen if task.id not in acquired]
            records = {task.id: self.leases.read_record(task.id) for task in fresh_ids}
            floors = [transitions.next_token(t, r.token if (r := records[t.id]) else None) - 1 for t in fresh_ids]
            tokens = dict(zip((t.id for t in fresh_ids), self.leases.issue_tokens(floors), strict=True))
            claims = []
            for task in chosen:
                claim = self._claim(by_id[task.id], task, now_, acquired, tokens.get(task.id, 0), records.get(task.id))
                if claim is not None:
                    claims.append(claim)
            return done, moved, claims

        try:
            done, moved, claims = self.store.transaction(change)
        except BaseException:
            for held in acquired.values():
                held.release()
            raise
        claimed_ids = {claim[0] for claim in claims}
        for task_id, held in list(acquired.items()):
            if task_id not in claimed_ids:
                held.release()
        for item in done:
            report.recovered.append(item.task_id)
            self.journal.emit(
                "recovered",
                f"recovered {item.task_id}: {item.cause}"
                + (" (its old process group was killed)" if item.kill else ""),
                task=item.task_id,
                action=item.action.value,
                cause=item.cause,
                token=item.lease.token if item.lease else None,
            )
        for task_id in moved:
            report.unblocked.append(task_id)
            self.journal.emit("unblocked", f"unblocked {task_id}: every dependency is done", task=task_id)
        faults.point("claim.after-queue-write")
        for task_id, token, attempt, raw in claims:
            report.claimed.append(task_id)
            self.journal.emit(
                "claimed",
                f"claimed {task_id} (token {token}, attempt {attempt})",
                task=task_id,
                token=token,
                attempt=attempt,
            )
            self._start(task_id, acquired[task_id], raw)

    def _claim(
        self,
        raw: dict[str, Any],
        task: Task,
        now: datetime,
        acquired: dict[str, Held],
        token: int,
        stale: LeaseRecord | None,
    ) -> Claim | None:
        """Claim one task inside the transaction: lease file first, then the queue fields."""
        held = acquired.get(task.id)
        if held is None:
            leftover = stale is not None or self.leases.inode_of(task.id) is not None
            if leftover and not self.leases.break_free(task.id):
                return None
            record = new_record(
                task.id,
                token,
                self.role_name,
                now=now,
                ttl=self.role.lease_ttl,
                heartbeat=self.role.heartbeat,
                attempt=task.attempts + 1,
                instance=self.instance,
            )
            held = self.leases.acquire(record)
            if held is None:
                return None
            acquired[task.id] = held
            faults.point("lease.after-create")
        record = held.record
        lease = {
            "owner": record.owner,
            "role": record.role,
            "host": record.host,
            "pid": record.pid,
            "acquired": record.acquired,
            "ttl": record.ttl,
            "token": record.token,
        }
        transitions.claim(raw, self.role, lease)
        return task.id, record.token, record.attempt, dict(raw)

    def _start(self, task_id: str, held: Held, raw: dict[str, Any]) -> None:
        attempt = held.record.attempt
        token = held.token
        state = self.config.state_dir
        log_path = state / "logs" / "tasks" / task_id / f"{token}.log"
        result_path = state / "results" / f"{task_id}.{token}.json"
        run = Running(
            task_id,
            token,
            attempt,
            held,
            log_path,
            result_path,
            self.clock.now(),
            self.clock.monotonic() + self.role.heartbeat,
        )
        self.running[task_id] = run
        try:
            argv = command.argv_for(
                raw,
                self.role,
                attempt=attempt,
                root=self.config.root,
                queue=self.config.queue_path,
                config_path=self.config.path,
            )
            env = command.environment(
                task_id,
                self.role,
                attempt=attempt,
                token=token,
                root=self.config.root,
                queue=self.config.queue_path,
                result=result_path,
                config=self.config.path,
            )
            result_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                result_path.unlink()
            spec = LaunchSpec(
                argv=argv,
                cwd=self.config.root,
                env=env,
                log_path=log_path,
                timeout=self.role.timeout,
                kill_after=self.role.kill_after,
                keep_fds=(held.fd,),
            )
            run.proc = launch(spec, on_exit=self._on_exit(task_id, token))
        except (AgentdError, OSError, ValueError) as exc:
            log.error("cannot start %s: %s", task_id, exc)
            now = time.time()
            run.exit = ExitInfo(127, None, False, None, str(exc), now, now)
            self.wake("start failed")
            return
        held.update(self.clock.now(), pgid=run.proc.pgid, pgid_start=process_start(run.proc.pgid))
        faults.point("task.after-start")
        self.journal.emit(
            "started",
            f"started {task_id}: {shlex.join(argv)[:200]} (pid {run.proc.pid}, log {os.path.relpath(log_path)})",
            task=task_id,
            token=token,
            pgid=run.proc.pgid,
        )

    def _log_wip(self, tasks: list[Task], data: dict[str, Any], claimable: list[Task], room: int) -> None:
        full = bool(claimable) and room == 0
        if full == self._wip_full:
            return
        self._wip_full = full
        limit = scheduler.wip_limit(self.role, self._limits(data))
        busy = len(scheduler.in_progress(tasks, self.role))
        if full:
            self.journal.emit(
                "wip-full",
                f"WIP limit reached ({busy}/{limit}); {len(claimable)} task(s) waiting",
                wip=busy,
                limit=limit,
                waiting=len(claimable),
            )
        else:
            self.journal.emit("wip-room", f"WIP room again ({busy}/{limit})", wip=busy, limit=limit)

    def _next_timeout(self) -> float:
        """Seconds until the next pass is due without any event."""
        timeout = self.interval
        mono = self.clock.monotonic()
        for run in self.running.values():
            timeout = min(timeout, max(0.0, run.next_beat - mono))
        with contextlib.suppress(OSError, AgentdError):
            if any(True for task_id in self.leases.task_ids() if task_id not in self.running):
                timeout = min(timeout, LEASE_POLL)
        if self._next_wake is not None:
            timeout = min(timeout, max(0.0, (self._next_wake - self.clock.now()).total_seconds()))
        return max(0.0, timeout)

    # -- the loop ------------------------------------------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop_requests += 1
        self.wake("signal")

    def reload(self) -> None:
        """Re-read agentd.toml (what SIGHUP does); a bad file is reported and the old configuration kept."""
        self._reload_config()

    def _reload_config(self) -> None:
        self._reload = False
        try:
            fresh = config_mod.load(root=self.config.root, config_path=self.config.path, queue=self.config.queue_path)
            role = fresh.role(self.role_name)
        except AgentdError as exc:
            log.error("SIGHUP: keeping the old configuration: %s", exc)
            return
        self.config, self.role = fresh, role
        self.store.workflow = fresh.workflow
        self.journal.max_bytes, self.journal.backups = fresh.log.max_bytes, fresh.log.backups
        log.info("SIGHUP: configuration re-read from %s", fresh.path or "defaults")

    def check_ready(self) -> None:
        """Refuse to start without a command for the role (the only config error that waits until now)."""
        if self.role.command is None:
            where = self.config.path or self.config.root / "agentd.toml"
            raise ConfigError(where, f"role {self.role_name!r} has no command; set [roles.{self.role_name}] command")

    def run(self, mode: Mode = Mode.FOREVER, on_first_pass: Callable[[str | None], bool] | None = None) -> int:
        """Run until stopped (or until the pass/drain is over); returns the exit code.

        ``on_first_pass`` is told the first pass's error (or None); returning False ends the daemon with the
        bad-data exit code (``agentd start`` uses this to refuse to report "started" for a daemon that cannot work).
        """
        self._on_first_pass = on_first_pass
        self.check_ready()
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                handlers[signum] = signal.signal(signum, self._signal)
        if self._watch:
            self._watcher = Watcher(self.config.queue_path, self.config.leases_dir, self.wake)
            self.leases.path.mkdir(parents=True, exist_ok=True)
            self._watcher.start()
        self.journal.emit(
            "daemon-started",
            f"{self.role_name} daemon started (pid {os.getpid()}, {mode.value}, interval {self.interval:g} s)",
            mode=mode.value,
            instance=self.instance,
            interval=self.interval,
        )
        self._prune_logs()
        try:
            code = self._loop(mode)
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        self.journal.emit("daemon-stopped", f"{self.role_name} daemon stopped (exit {code})", exit_code=code)
        return code

    def _loop(self, mode: Mode) -> int:
        first = True
        while True:
            if self._reload:
                self._reload_config()
            self._wake.clear()
            report = self.tick()
            if first and self._on_first_pass is not None and not self._on_first_pass(report.error):
                return int(ExitCode.BAD_DATA)
            if report.error and mode is not Mode.FOREVER and not self.running:
                return int(ExitCode.BAD_DATA)
            if self._stop_requests:
                return self._shutdown()
            if mode is Mode.ONCE and not self.running and (not first or not report.claimed):
                return int(ExitCode.FAILURE if self.failed else ExitCode.OK)
            if mode is Mode.DRAIN and not self.running and report.claimable_left == 0 and not report.did_something:
                return int(ExitCode.FAILURE if self.failed else ExitCode.OK)
            if mode is Mode.ONCE:
                self._stop_claiming_after_first_pass()
            first = False
            self._wake.wait(self._next_timeout())

    def _stop_claiming_after_first_pass(self) -> None:
        self._claiming = False

    def _shutdown(self) -> int:
        """Stop claiming; give running tasks ``grace`` s, then stop their groups; requeue them unspent."""
        if self.running:
            log.info(
                "shutting down: %d task(s) running, %g s grace (signal again to skip)",
                len(self.running),
                self.role.grace,
            )
        deadline = self.clock.monotonic() + self.role.grace
        asked = self._stop_requests
        unrecorded = 0
        while self.running:
            self._collect_exits()
            try:
                self._finish(TickReport())
            except AgentdError as exc:
                # The queue cannot be written now. Once every task has ended, give up: the leases are released on
                # exit and the next daemon recovers the tasks from the queue.
                unrecorded += 1
                if unrecorded == 1:
                    log.error("shutdown: cannot record finished tasks: %s", exc)
                if all(run.exit is not None for run in self.running.values()) and unrecorded > 25:
                    for run in self.running.values():
                        run.held.release()
                    self.running.clear()
                    return int(ExitCode.BAD_DATA)
            if not self.running:
                break
            if self.clock.monotonic() >= deadline or self._stop_requests > asked:
                for run in self.running.values():
                    if not run.interrupted and run.proc is not None:
                        run.interrupted = True
                        run.proc.terminate()
                deadline = float("inf")
            self._wake.clear()
            self._wake.wait(min(0.2, max(0.0, deadline - self.clock.monotonic())))
        return int(ExitCode.OK)
