"""One role's daemon: ``tick()`` does one pass and returns what it did; ``run()`` loops it with wake-ups and shutdown.

Heartbeats never wait behind queue work: a thread of their own renews the leases of running tasks and beats the
daemon's own liveness (its PID file, and systemd's watchdog), taking no queue lock and reading no queue.

A pass, when a run ended or something may have changed, makes one queue transaction that
records the ended runs, recovers stale leases, unblocks tasks and claims as many as there is room for
(:mod:`agentd.run.dispatch`); then it starts the claimed tasks (:mod:`agentd.run.execution`). Queue changes and lease
releases wake the loop at once (file events); the interval is the fallback poll.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import queue as queue_mod
import resource
import shlex
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import FrameType

from agentd import actions, faults
from agentd import config as config_mod
from agentd.config import Config
from agentd.core import command, control, scheduler
from agentd.core.clock import Clock, SystemClock, boottime, format_timestamp
from agentd.core.control import Pause
from agentd.core.model import valid_task_id
from agentd.core.record import MutableRecord
from agentd.core.scheduler import Decision, Kind, Outcome
from agentd.core.validate import Finding
from agentd.core.workflow import Role
from agentd.errors import AgentdError, ConfigError, ExitCode, FileAccessError, StoreUnreachable
from agentd.report import usage
from agentd.run.dispatch import Claim, Dispatcher, PassResult
from agentd.run.execution import Executor, Running, start_room
from agentd.run.runner import ExitInfo, StatusPump, TaskProcess
from agentd.service import notify
from agentd.store import open_store
from agentd.store.base import Registration, Store, Watching
from agentd.wakeup import WakeUp
from agentd.workspaces.janitor import Janitor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger("agentd.daemon")

LEASE_POLL = 1.0  # s between lease checks while other daemons' leases exist (file events are the fast path)
# Looks at the queue prompted by others' writes alone are paced by what they cost: a daemon spends at most
# LOOK_SHARE of a core on them, and LOOK_BURST seconds of CPU at once after a quiet moment. Cheap looks (a small
# queue) are never delayed; under a storm of writes each daemon looks as often as LOOK_SHARE allows (a look at
# 20,000 tasks costs ~0.1 s of CPU: about one a second; at 1,000 tasks ~5 ms: twenty a second). The share is sized
# so that tasks added one by one to a 20,000-task queue are each picked up at once (see docs/benchmarks.md).
LOOK_SHARE = 0.10
LOOK_BURST = 0.5
LIVENESS_BEAT = 2.0  # s between the daemon's own liveness beats (its PID file; systemd's watchdog asks for more)
# The change watch is set up once the daemon first waits this long for something to happen (at once when its first
# pass leaves nothing running): while its tasks end more often than that, each end's pass reads the queue anyway, and
# the watch's set-up and its events (its own writes among them) cost a 200-task drain of `true` about 3 %.
WATCH_AFTER = 0.1
PRUNE_WAIT = 30.0  # s: the longest a stopping daemon waits for its start's prune of the task logs (a hung disk)
UNREACHABLE = "store unreachable"  # _last_error while the store cannot be reached (its own log lines say so)
START_RETRY_PAUSE = 1.0  # s without claims after agentd itself could not start a command (out of resources) ...
START_RETRY_PAUSE_MAX = 30.0  # ... doubled while it goes on failing, up to this
# A pass that failed on the system (no descriptor left, a full or read-only disk), not on the queue's content, is tried
# again after ACCESS_RETRY s, doubled while it goes on failing, up to the interval: no file event announces that a
# descriptor or a disk block is free again (a bad queue is looked at again when it is edited, or on the interval).
ACCESS_RETRY = 1.0
# Group commit (as PostgreSQL's commit_delay/commit_siblings): a pass for a run that ended while others of this
# daemon still run waits up to GROUP_SHARE of the last recording pass's own CPU time (what a pass saved costs; its
# wall time grows with the machine's load, so that a busy machine would hold longer), and never over GROUP_MAX,
# for more of them to end, so that one transaction records several ends and claims their successors. Never when
# nothing else of this daemon runs (a chain, a single task): those passes run at once.
GROUP_SHARE = 0.5
GROUP_MAX = 0.020  # s


def group_hold(last_pass: float, ended: int, running: int) -> float:
    """Seconds a pass that would record ``ended`` runs may wait while ``running`` others of this daemon still run
    (pure): a share of the last recording pass's own CPU time ``last_pass``, bounded; 0 when nothing else runs."""
    if ended <= 0 or running <= 0:
        return 0.0
    return max(0.0, min(GROUP_MAX, GROUP_SHARE * last_pass))


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class CpuBudget:
    """Seconds of CPU that may be spent: ``burst`` at most, refilled at ``share`` of the time passing (pure: the
    time is passed in). Spending may overdraw it; then nothing more until it is paid back."""

    def __init__(self, share: float, burst: float, now: float) -> None:
        self.share = share
        self.burst = burst
        self.left = burst
        self.at = now

    def _refill(self, now: float) -> None:
        self.left = min(self.burst, self.left + max(0.0, now - self.at) * self.share)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until something may be spent (0: now)."""
        self._refill(now)
        return 0.0 if self.left >= 0 else -self.left / self.share

    def spend(self, seconds: float, now: float) -> None:
        self._refill(now)
        self.left -= max(0.0, seconds)


class Mode(enum.StrEnum):
    """How long the daemon runs."""

    FOREVER = "forever"
    ONCE = "once"  # one pass: claim what there is room for, run it to the end, exit
    DRAIN = "drain"  # until nothing is claimable (or backing off) for the role and nothing runs


class TickReport(MutableRecord):
    """What one pass did."""

    _fields = (
        "claimed",
        "finished",
        "refused",
        "recovered",
        "unblocked",
        "error",
        "error_code",
        "claimable_left",
        "settled",
    )

    claimed: list[str]
    finished: list[tuple[str, str]]  # (task id, outcome kind)
    refused: list[str]
    recovered: list[str]
    unblocked: list[str]
    error: str | None
    error_code: int  # the exit code of ``error`` for --once and --drain
    claimable_left: int  # claimable (or backing off) for this role after the pass (counted up to one past the room)
    settled: bool  # the pass's transaction looked after its own changes: they need no other look

    def __init__(
        self,
        claimed: list[str] | None = None,
        finished: list[tuple[str, str]] | None = None,
        refused: list[str] | None = None,
        recovered: list[str] | None = None,
        unblocked: list[str] | None = None,
        error: str | None = None,
        error_code: int = int(ExitCode.BAD_DATA),
        claimable_left: int = 0,
        settled: bool = False,
    ) -> None:
        self.claimed = [] if claimed is None else claimed  # (a list not given is a new one, as a default_factory's)
        self.finished = [] if finished is None else finished
        self.refused = [] if refused is None else refused
        self.recovered = [] if recovered is None else recovered
        self.unblocked = [] if unblocked is None else unblocked
        self.error = error
        self.error_code = error_code
        self.claimable_left = claimable_left
        self.settled = settled

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
        self.store: Store = open_store(config, clock=self.clock)
        self.journal = self.store.journal(role, log)
        self.executor = Executor(config, self.role, self.clock)
        self.dispatcher = Dispatcher(config, self.role, self.store, self.executor, self.clock, instance)
        # worktree mode: removals and repairs, off the loop
        self.janitor = Janitor.for_config(config, self.journal, self.store)
        self.running: dict[str, Running] = {}
        self.failed: set[str] = set()  # tasks whose latest run here failed (a later success clears them)
        self._ended: queue_mod.SimpleQueue[tuple[str, int, ExitInfo]] = queue_mod.SimpleQueue()
        self._wake = WakeUp()
        self._status = StatusPump()  # the status of the tasks its loop starts, read as it sleeps (see run)
        self._stop_requests = 0
        self._reload = False
        self._terminal: tuple[int, ...] = ()  # the standard fds that were a terminal when it took the signals
        self._signal_handlers: dict[int, Any] | None = None  # what take_signals() replaced
        self._hangup = False  # stopping because the terminal went away (SIGHUP with it gone)
        self._last_error: str | None = None
        self._access_retry = 0.0  # s: the latest wait before a pass that failed on the system is tried again
        self._access_retry_at = float("inf")  # monotonic: when that pass is tried again
        self._wip_full = False
        self._watch = watch
        self._watcher: Watching | None = None
        self._watch_started = False  # (after the first pass of run(), at its first wait: see _wait)
        self._pruner: threading.Thread | None = None  # the start's prune of the task logs (see _start_prune)
        self.watch_after = WATCH_AFTER  # (0: the watch is set up right after the first pass)
        self._watch_setup: threading.Thread | None = None  # the thread setting the watch up (see _start_watching)
        self._watch_lock = threading.Lock()  # (hands the watch that thread set up to the daemon, or to a stop)
        # A set-up that found no watch (the kernel's limit on inotify instances reached, no descriptor left) is tried
        # again an interval later, as long as the daemon polls: at _watch_retry_at (monotonic), after _watch_refused
        # such set-ups in a row.
        self._watch_retry_at = float("inf")
        self._watch_refused = 0
        self._watch_trouble: str | None = None  # (the set-up's last error, logged once)
        self._next_wake: datetime | None = None
        self._peer_leases: frozenset[str] = frozenset()  # the leases of others seen as this daemon last went to sleep
        self._on_first_pass: Callable[[str | None], bool] | None = None
        self._claiming = True  # --once stops claiming after its first pass
        self._mode = Mode.FOREVER  # what run() was asked for: --once and --drain give up on a bad queue
        self._dirty = True  # something may have changed since the last look at the queue
        self._last_pass = float("-inf")
        self._pass_took = 0.0  # s (CPU): the last pass that recorded ends or claimed (see group_hold)
        self._claimable_left = 0
        self._urgent = False
        self._looks = CpuBudget(LOOK_SHARE, LOOK_BURST, self.clock.monotonic())  # see _pace
        self.pidfile: Registration | None = None  # set by whoever holds it: the heartbeat thread beats it
        self._beats = threading.Event()  # set to stop the heartbeat thread
        self._beater: threading.Thread | None = None
        self._start_trouble: str | None = None  # why agentd itself could not start commands lately (reported once)
        self._claim_pause_until = float("-inf")  # monotonic: no claims until then, after such a failure
        self._claim_pause = 0.0  # s: the latest such pause
        self._fd_room: int | None = None  # how many more tasks the descriptor limit lets this daemon start
        self._fd_capped = False  # the descriptor limit holds this daemon under its WIP limit (reported once)
        self._quarantine: dict[tuple[str, str], Finding] = {}  # (task, problem) reported as quarantined
        self._pause: Pause | None = None  # the pause that stops this role claiming, as last read
        self._state_error: str | None = None  # why the project's state file could not be read (reported once)
        self._spend = usage.Tally.of(self.store)  # costed runs today, read from the journal as it grows

    # -- wake-ups ------------------------------------------------------------------------------------------------------

    def wake(self, reason: str = "") -> None:
        """Run the next pass now (thread-safe; called by file events, task exits and signals)."""
        self._dirty = True
        if reason not in ("queue", "lease"):
            self._urgent = True  # this daemon's own business: never paced
        self._wake.set()

    def _look_delay(self) -> float:
        """Seconds the coming look must wait for the budget (0: now). Only a look for file events alone waits: the
        first pass after start (its cost is that of reading the whole queue once), the interval poll and this
        daemon's own business never do, and no wait runs past the interval poll."""
        if not self._dirty or self._urgent or self._stop_requests or self._reload:
            return 0.0
        since = self.clock.monotonic() - self._last_pass
        if since >= self.interval:  # the first pass (never looked yet) or the interval poll
            return 0.0
        return min(self._looks.wait(self.clock.monotonic()), self.interval - since)

    def _pace(self) -> bool:
        """Many daemons over a big queue wake each other on every write. A pass for file events alone waits while
        this daemon's budget for such looks is spent (LOOK_SHARE of a core, LOOK_BURST at once): a change after a
        quiet moment, or any change to a small queue, is seen at once; a storm of writes to a large queue costs
        each daemon a few looks a second. Its own tasks ending, timers, signals, the first pass and the interval
        poll are never delayed (nor charged).

        Returns whether the coming pass is one for file events alone (its CPU is charged to the budget)."""
        while True:
            self._wake.clear()  # (before the look: a wake-up from then on ends the wait, never cleared unseen)
            wait = self._look_delay()
            if wait <= 0:
                break
            self._sleep(wait)
        paced = self._dirty and not self._urgent and self.clock.monotonic() - self._last_pass < self.interval
        self._urgent = False
        return paced

    def _sleep(self, timeout: float | None) -> bool:
        """Wait for a wake-up (:meth:`wake`) or *timeout* s, reading meanwhile the status of the tasks this daemon's
        loop started (the end of one wakes it: see :class:`agentd.run.runner.StatusPump`)."""
        return self._status.wait(self._wake, timeout)

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
            if self._beater is None:
                self._heartbeat()  # tests driving tick() alone; a running daemon's heartbeat thread does this
            self._enforce_stops()
            done = [run for run in self.running.values() if run.exit is not None]
            # A pass that records ends also looks, so that the slots they free are claimed in its transaction: an
            # end's wake-up may have been cleared by a look that had collected the ends just before it came.
            looking = self._stop_requests == 0 and (bool(done) or self._due())
            if looking or done:
                self._pass(report, done, look=looking)
            else:
                report.claimable_left = self._claimable_left  # what the last look at the queue found
                if self._last_error is not None:
                    return report
            if self._last_error == UNREACHABLE and report.error is None:
                self._last_error = None  # (the store said it is back)
            if report.error is None:
                self._access_retry, self._access_retry_at = 0.0, float("inf")
            if self._last_error is not None and report.error is None:
                self.journal.emit(
                    "queue-invalid", f"{self.config.queue_path.name} is valid again; carrying on", state="valid"
                )
                self._last_error = None
        except (AgentdError, OSError) as exc:
            if not isinstance(exc, AgentdError):  # a folder made read-only, a full disk: reported and retried too
                exc = FileAccessError.from_os_error(exc)
            report.error = str(exc)
            report.error_code = int(exc.exit_code)
            if isinstance(exc, FileAccessError):
                self._access_retry = min(self.interval, self._access_retry * 2 if self._access_retry else ACCESS_RETRY)
                self._access_retry_at = self.clock.monotonic() + self._access_retry
            else:  # (a bad queue waits for its edit, or the interval: a retry time left from before would be past)
                self._access_retry, self._access_retry_at = 0.0, float("inf")
            if isinstance(exc, StoreUnreachable):  # the store logs it once, and once when back: retried meanwhile
                self._last_error = UNREACHABLE
            elif report.error != self._last_error:
                retrying = self._mode is Mode.FOREVER or bool(self.running)
                self.journal.emit(
                    "queue-invalid",
                    f"cannot use the queue: {exc}" + (" (retrying)" if retrying else ""),
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
        if self._claim_pause_until != float("-inf") and self.clock.monotonic() >= self._claim_pause_until:
            self._claim_pause_until = float("-inf")  # a pause after a failed start is over: claim again
            return True
        if self.clock.monotonic() - self._last_pass >= self.interval:
            return True
        if self._next_wake is not None and self.clock.now() >= self._next_wake:
            return True
        now = self.clock.now()
        leases = self.store.leases()
        if any(task_id not in leases for task_id in self._peer_leases):
            # A peer's lease seen before this daemon slept is gone: released, its task maybe free for this role. Its
            # file event may never have come: one on a lease this daemon itself released a moment before is taken
            # for its own (OWN_EVENTS_GRACE), and a peer can claim, run and release within that moment.
            return True
        for task_id, seen in leases.items():
            if task_id in self.running:
                continue
            role = self.config.roles.get(seen.role or "")
            if not scheduler.judge(seen, now, role.lease_ttl if role else self.role.lease_ttl).live:
                return True
        return False

    def _collect_exits(self) -> None:
        self._status.pump_ready()  # (the ends reported while this daemon was busy)
        while True:
            try:
                task_id, token, info = self._ended.get_nowait()
            except queue_mod.Empty:
                return
            run = self.running.get(task_id)
            if run is not None and run.token == token:
                run.exit = info
                if info.killed_by == "fence":
                    self._report_fenced(run)

    def _report_fenced(self, run: Running) -> None:
        """Journal that a run's supervisor fenced it (its lease went unrenewed too long: this daemon was stopped,
        hung, or could not reach the store); what becomes of the task is recorded as for any end, if still ours."""
        role = self.role
        self.journal.emit(
            "fenced",
            f"{run.task_id}: no lease renewal reached its supervisor for {role.fence_after:g} s (lease_ttl "
            f"{role.lease_ttl:g} s - fence_margin {role.margin:g} s): its command's tree was killed before a peer may "
            f"take the task over (token {run.token})",
            level=logging.WARNING,
            task=run.task_id,
            token=run.token,
            fence_after=role.fence_after,
        )

    def _room_cap(self, done: list[Running]) -> int | None:
        """This daemon's own limit on new claims (its --concurrency, and none after --once's pass or a stop)."""
        if not self._claiming or self._stop_requests or self.clock.monotonic() < self._claim_pause_until:
            return 0
        if self._pause is not None:
            return 0
        self._fd_room = start_room()  # never claim more than the descriptor limit lets this daemon start
        if self._fd_room == 0 and len(self.running) == len(done):
            self._fd_room = 1  # with nothing running, one try (a failure costs the task nothing, and pauses claims)
        caps = [room for room in (self._fd_room,) if room is not None]
        if self.concurrency is not None:
            caps.append(self.concurrency - (len(self.running) - len(done)))
        return min(caps) if caps else None

    def _pass(self, report: TickReport, done: list[Running], *, look: bool) -> None:
        """Record ended runs and, when due, recover, unblock and claim — all in one queue transaction."""
        held = set(self.running)
        if look:
            self._read_state()
        cap = self._room_cap(done) if look else 0
        deciding = self._pauses_pending(done)
        if deciding:
            cap = 0  # a run that paused its role, or spent money under a budget: claim after the pause is decided
        if look:
            self._dirty = False  # cleared first: an event during the pass asks for another
            self._last_pass = self.clock.monotonic()
        if not done:
            needed, seen = self.dispatcher.needed(held, cap)
            self._after_look(report, seen)
            if not needed:
                return
        claimed_at = boottime()  # before any claim of this pass: where the supervisors' fence deadlines start
        try:
            result = self.dispatcher.run(done, held, cap)
        except BaseException:
            self.store.settle()  # (a write that stood before the error: durable now)
            raise
        try:
            # The pass's lines up to its starts (ends, recoveries, unblocks): one append. Not when a run may pause
            # the role or cost money under a budget: the budget is read from the journal's "finished" lines.
            with self.journal.batch() if not deciding else contextlib.nullcontext():
                if look:
                    self._after_look(report, result)
                    # Its room and what is claimable were judged after its own changes (runs recorded, tasks
                    # recovered and unblocked): unless room was left while tasks wait (a claim lost to a peer), no
                    # other look is needed.
                    report.settled = not deciding and not (
                        result.room > len(result.claims) and result.claimable > len(result.claims)
                    )
                if self.janitor is not None:
                    self.janitor.after_pass(result.finished, result.recovered)
                self._record_ends(result, report)
            if result.claims:
                faults.point("claim.after-queue-write")
            try:
                for claim in result.claims:
                    with self.journal.batch():  # its "claimed" and "started" lines: one append
                        report.claimed.append(claim.task_id)
                        self.journal.emit(
                            "claimed",
                            f"claimed {claim.task_id} (token {claim.held.token}, attempt {claim.held.record.attempt})",
                            task=claim.task_id,
                            token=claim.held.token,
                            attempt=claim.held.record.attempt,
                        )
                        self._start(claim, claimed_at)
            finally:
                if result.claims:
                    self.executor.started()  # their status read: once the starts are over
            if result.finished and result.claims:
                faults.point("complete.after-starts")
        finally:
            # The transaction left the fsync of the queue's folder (its rename's durability) until now: the
            # supervisors have their tasks and start while the disk works (see Store.transaction).
            self.store.settle()
            self._release_ended(result)
        if result.claims:
            # The next pass's files (the queue's, and as many lease files), made now that the starts are over: not in
            # its transaction, which holds the queue lock (and, with tasks running, leaves the other core idle).
            self.store.prepare(len(result.claims))

    def _record_ends(self, result: PassResult, report: TickReport) -> None:
        """Journal the runs the pass recorded (their leases are released after its starts: see _release_ended), with
        what it recovered and unblocked."""
        for run, decided in result.finished:
            del self.running[run.task_id]
            self._report_finish(run, decided, self.executor.outcome(run), report)
        for item in result.recovered:
            report.recovered.append(item.task_id)
            self.journal.emit(
                "recovered",
                f"recovered {item.task_id}: {item.cause}",
                task=item.task_id,
                action=item.action.value,
                cause=item.cause,
                token=item.lease.token if item.lease else None,
            )
        for item in result.killed:
            lease = item.lease
            self.journal.emit(
                "hung-holder-killed",
                f"{item.task_id}: its holder is hung ({item.cause}); killed its {' and '.join(item.killed)}; the task"
                " is recovered once the kernel has released the lease",
                level=logging.WARNING,
                task=item.task_id,
                token=lease.token if lease else None,
                holder_pid=lease.pid if lease else None,
                holder_host=lease.host if lease else None,
                killed=list(item.killed),
            )
        for task_id in result.unblocked:
            report.unblocked.append(task_id)
            self.journal.emit("unblocked", f"unblocked {task_id}: every dependency is done", task=task_id)
        for task_id, note in result.expired:
            report.unblocked.append(task_id)  # a change this pass made: look again
            self.journal.emit(
                "waiting-expired",
                f"{task_id}: {note}; it goes to {self.role.on_failure}",
                level=logging.WARNING,
                task=task_id,
                status=self.role.on_failure,
            )

    def _release_ended(self, result: PassResult) -> None:
        """Release the leases of the runs a pass recorded, journal it, cap and prune their logs: after the pass has
        started the tasks it claimed, which then run meanwhile (nothing of this is on their way: the queue says the
        runs ended, and the slots they held were counted free in the pass's transaction). Until then each lease file
        stays locked by this daemon; one left by a crash meanwhile is an orphan whose task has moved on, removed by
        the next look of any daemon as after a crash right after the transaction. Their supervisors are reaped after
        that (each was held from it since it reported: see :func:`agentd.run.runner.launch`'s ``hold_reap``)."""
        if not result.finished:
            return
        with self.journal.batch():
            for run, _decided in result.finished:
                run.held.release()
                self.journal.emit(
                    "released",
                    f"released the lease on {run.task_id}",
                    level=logging.DEBUG,
                    task=run.task_id,
                    token=run.token,
                )
        for run, _decided in result.finished:
            self.executor.cap_log(run)
            self.executor.prune_logs(run.task_id)
        with self.executor.reaping_together():  # (one wake-up of the zygote for them all)
            for run, _decided in result.finished:
                if run.proc is not None:
                    run.proc.let_reap()

    # -- pauses and budgets --------------------------------------------------------------------------------------------

    def _pauses_pending(self, done: list[Running]) -> bool:
        """Whether an ended run may pause the role once recorded (it asked for a pause, it cost money and the role has
        a budget, or agentd itself could not start it): the pass that records it then claims nothing, and the next
        one claims as the pause allows."""
        for run in done:
            outcome = self.executor.outcome(run)
            if outcome.kind in (Kind.PAUSED, Kind.NOT_STARTED):
                return True
            if self.role.budget_usd_per_day is not None and "cost_usd" in outcome.usage:
                return True
        return False

    def _read_state(self) -> None:
        """Read the project's state (pauses): a bad file is reported once and the last good pauses kept."""
        try:
            state = actions.project_state(self.store)
        except (AgentdError, OSError) as exc:
            message = str(exc)
            if isinstance(exc, StoreUnreachable):
                return  # (the store logs it once, and once when back)
            if message != self._state_error:
                self._state_error = message
                log.error("cannot read the project state (keeping the pauses last read): %s", message)
            return
        if self._state_error is not None:
            self._state_error = None
            log.info("the project state reads again")
        now = self.clock.now()
        pause = control.pause_in_force(state.pauses, self.role_name, now)
        if pause != self._pause:
            if pause is not None:
                until = f"until {format_timestamp(pause.until)}" if pause.until else "until resumed"
                log.info("%s is paused %s (%s): claiming nothing", self.role_name, until, pause.reason or "no reason")
            else:
                log.info("%s is no longer paused: claiming again", self.role_name)
        self._pause = pause

    def _pause_role(self, task_id: str, outcome: Outcome) -> None:
        """A command paused its own role (a usage limit): until its time, else for the role's ``pause_for``."""
        now = self.clock.now()
        until = outcome.pause_until or now + timedelta(seconds=self.role.pause_for)
        if until <= now:
            return
        pause = control.Pause(self.role_name, now, until, outcome.note or "paused by its command", f"task {task_id}")
        where = actions.state_where(self.store)
        try:
            self.store.transaction(
                lambda txn: control.change_state(txn.state, where, lambda state: state.paused(pause.role, pause))
            )
        except (AgentdError, OSError) as exc:
            log.error("cannot pause %s: %s", self.role_name, exc)
            return
        self._pause = pause
        self.journal.emit(
            "paused",
            f"{self.role_name} paused until {format_timestamp(until)} by {task_id}: {pause.reason}",
            task=task_id,
            until=format_timestamp(until),
            reason=pause.reason,
            by=pause.by,
        )

    def _check_budget(self) -> None:
        """After a run that cost money: the role's spend today (from the journal) against its budget; reached, the
        role pauses until the next day starts in the project's time zone."""
        limit = self.role.budget_usd_per_day
        if limit is None:
            return
        now = self.clock.now()
        start, _end = control.day_bounds(now, self.config.timezone)
        try:
            records = [r for r in self._spend.update(start) if r[1] == self.role_name]
        except OSError as exc:
            log.warning("cannot read the journal for the budget: %s", exc)
            return
        pause = control.budget_pause(self.role_name, limit, records, now, self.config.timezone)
        if pause is None:
            return

        def put(state: control.ProjectState) -> control.ProjectState:
            current = next((p for p in state.pauses if p.role == self.role_name), None)
            if current is not None and (current.until is None or (pause.until and current.until >= pause.until)):
                return state  # already paused at least as long (a peer saw it first)
            return state.paused(self.role_name, pause)

        try:
            where = actions.state_where(self.store)
            before, after = self.store.transaction(lambda txn: control.change_state(txn.state, where, put))
        except (AgentdError, OSError) as exc:
            log.error("cannot pause %s for its budget: %s", self.role_name, exc)
            return
        self._pause = control.pause_in_force(after.pauses, self.role_name, now)
        if before != after:
            assert pause.until is not None
            self.journal.emit(
                "budget-reached",
                f"{self.role_name}: {pause.reason}; paused until {format_timestamp(pause.until)}",
                level=logging.WARNING,
                until=format_timestamp(pause.until),
                limit=limit,
                reason=pause.reason,
            )

    def _after_look(self, report: TickReport, seen: PassResult) -> None:
        """Remember what a look at the queue found: what is left to claim, when a backoff ends, WIP changes."""
        # A paused role has nothing to do until the pause ends (--drain ends; a budget pause may last a day).
        left = 0 if self._pause is not None else seen.claimable_left
        report.claimable_left = left
        self._claimable_left = left
        timers = [*seen.waits, *seen.timers]
        if self._pause is not None and self._pause.until is not None:
            timers.append(self._pause.until)
        self._next_wake = min(timers) if timers else None
        # As many supervisors forked ahead as the next pass may start: a queue's wip_limits apply without --concurrency.
        self.executor.keep_ahead(seen.limit if self.concurrency is None else min(seen.limit, self.concurrency))
        self._log_wip(seen)
        self._log_fd_cap(seen)
        for task_id, status in seen.stop:
            self._stop_run(task_id, status)
        self._report_quarantine(seen.quarantined)

    def _log_fd_cap(self, seen: PassResult) -> None:
        """Say once that the descriptor limit holds this daemon under its WIP limit (the limit does not change while
        the daemon runs; what is free of it does, a little, with every task, so this is said once, not per change)."""
        if self._fd_room is None or self._fd_capped:
            return
        most = len(self.running) + self._fd_room
        if most >= seen.limit or not seen.claimable:
            return
        self._fd_capped = True
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.journal.emit(
            "start-capped",
            f"the file descriptor limit (ulimit -n {nofile}) lets this daemon run about {most} task(s) at once, under "
            f"its WIP limit of {seen.limit}: it claims no more than it can start (raise the limit, or start another "
            "daemon)",
            level=logging.WARNING,
            most=most,
            limit=seen.limit,
            nofile=nofile,
        )

    def _stop_run(self, task_id: str, status: str) -> None:
        """Someone moved a task this daemon runs to a final status: stop its command's whole tree (TERM, then KILL
        after ``kill_after``, and by ``grace`` at the latest); the run is recorded when it ends, the status stands."""
        run = self.running.get(task_id)
        if run is None or run.exit is not None or run.stopping is not None or run.proc is None:
            return
        run.stopping = status
        run.stop_deadline = self.clock.monotonic() + self.role.grace
        self.journal.emit(
            "stopping",
            f"{task_id} was moved to {status!r} while it ran: stopping its command (grace {self.role.grace:g} s)",
            task=task_id,
            token=run.token,
            status=status,
        )
        run.proc.terminate()

    def _report_quarantine(self, found: Mapping[str, Finding]) -> None:
        """Journal each quarantined task once per problem, and once more when the problem is gone."""
        now = {(task_id, problem.message): problem for task_id, problem in found.items()}
        if now.keys() == self._quarantine.keys():
            return
        for (task_id, message), problem in now.items():
            if (task_id, message) not in self._quarantine:
                where = f"{problem.path}: " if problem.path else ""
                shown = task_id if valid_task_id(task_id) else repr(task_id)  # one line, whatever the id holds
                self.journal.emit(
                    "task-quarantined",
                    f"{shown} is quarantined: {where}{message}; no daemon claims, runs or changes it until it is "
                    f"fixed (`agentd queue validate`)",
                    level=logging.WARNING,
                    task=task_id,
                    state="quarantined",
                    path=problem.path,
                    code=problem.code,
                    problem=message,
                )
        for (task_id, message), problem in self._quarantine.items():
            if (task_id, message) not in now:
                shown = task_id if valid_task_id(task_id) else repr(task_id)
                self.journal.emit(
                    "task-quarantined",
                    f"{shown} is no longer quarantined ({message}: fixed); it flows again",
                    task=task_id,
                    state="fixed",
                    path=problem.path,
                    code=problem.code,
                    problem=message,
                )
        self._quarantine = now

    def _start(self, claim: Claim, claimed_at: float) -> None:
        on_exit = self._on_exit(claim.task_id, claim.held.token)
        run = self.executor.start(claim.task_id, claim.held, claim.raw, on_exit, claim.workspace, claimed_at)
        self.running[claim.task_id] = run
        if run.proc is None:
            if run.not_started is not None:
                self._pause_claims()
            self.wake("start failed")
            return
        faults.point("task.after-start")
        self.journal.emit(
            "started",
            f"started {claim.task_id}: {shlex.join(run.argv)[:200]} "
            f"(pid {run.proc.pid}, log {os.path.relpath(run.log_path)})",
            task=claim.task_id,
            token=claim.held.token,
            pgid=run.proc.pgid,
        )

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
        self._note_start(run, outcome)
        if outcome.kind in (Kind.FAILURE, Kind.TIMEOUT, Kind.CRASH) and not result.stood:
            self.failed.add(run.task_id)
        elif outcome.kind not in (Kind.INTERRUPTED, Kind.NOT_STARTED):
            self.failed.discard(run.task_id)
        self.journal.emit(
            "finished",
            level=logging.DEBUG if outcome.kind is Kind.NOT_STARTED else logging.INFO,  # said once: see _note_start
            message=f"finished {run.task_id} in {took:.1f} s: {outcome.kind.value}"
            f"{'' if outcome.exit_code is None else f' (exit {outcome.exit_code})'} -> {result.status}",
            task=run.task_id,
            token=run.token,
            outcome=outcome.kind.value,
            exit_code=outcome.exit_code,
            status=result.status,
            duration=round(took, 3),
            **({"usage": dict(outcome.usage)} if outcome.usage else {}),
            **({"cost_usd": outcome.usage["cost_usd"]} if "cost_usd" in outcome.usage else {}),
        )
        if outcome.kind is Kind.ASKED and not result.stood:
            self.journal.emit(
                "question-asked",
                f"{run.task_id} asks: {outcome.question} (waits in {result.status})",
                task=run.task_id,
                token=run.token,
                question=outcome.question,
                session=outcome.session,
                status=result.status,
            )
        if outcome.kind is Kind.PAUSED:
            self._pause_role(run.task_id, outcome)
        if "cost_usd" in outcome.usage:
            self._check_budget()
        if result.looped:
            self.journal.emit(
                "hot-loop",
                f"{run.task_id}: {result.note}; it goes to {result.status}",
                level=logging.WARNING,
                task=run.task_id,
                token=run.token,
                status=result.status,
            )
        if result.retry and outcome.kind not in (Kind.INTERRUPTED, Kind.NOT_STARTED):
            self.journal.emit(
                "retry-scheduled",
                f"{run.task_id}: {result.note}",
                task=run.task_id,
                token=run.token,
                attempt=run.attempt,
                not_before=result.patch.get("not_before"),
            )

    def _pause_claims(self) -> None:
        """No claims for a moment after agentd itself could not start a command (longer while it goes on)."""
        self._claim_pause = (
            min(START_RETRY_PAUSE_MAX, self._claim_pause * 2) if self._claim_pause else START_RETRY_PAUSE
        )
        self._claim_pause_until = self.clock.monotonic() + self._claim_pause

    def _note_start(self, run: Running, outcome: Outcome) -> None:
        """Report once that agentd itself cannot start commands (the tasks go back unspent), and once that it can."""
        if outcome.kind is Kind.NOT_STARTED:
            self._pause_claims()
            if self._start_trouble is None:
                self._start_trouble = run.not_started or "out of resources"
                self.journal.emit(
                    "start-failed",
                    f"cannot start task commands: {self._start_trouble} (agentd's own limit, not the tasks' failure: "
                    f"they go back without spending an attempt; claiming fewer)",
                    level=logging.WARNING,
                    state="failing",
                    task=run.task_id,
                    error=self._start_trouble,
                )
        elif self._start_trouble is not None and outcome.kind is not Kind.INTERRUPTED:
            self._start_trouble = None
            self._claim_pause = 0.0
            self.journal.emit("start-failed", "task commands start again", state="recovered", task=run.task_id)

    def _enforce_stops(self) -> None:
        """Kill runs still going ``grace`` s after they were stopped (a cancel): from the main loop, not the
        heartbeat thread, which renews leases only."""
        mono = self.clock.monotonic()
        for run in list(self.running.values()):
            if run.stop_deadline is not None and run.exit is None and mono >= run.stop_deadline and run.proc:
                run.stop_deadline = None
                log.warning("%s: still running %g s after it was stopped; killing it", run.task_id, self.role.grace)
                run.proc.kill()

    def _heartbeat(self) -> float:
        """Renew leases that are due; a lease found taken stops its task's process group. Safe from the heartbeat
        thread: it reads a snapshot of the running tasks, and a lease released meanwhile is simply skipped. Returns
        the seconds until the next lease is due.

        A run whose command has ended keeps its lease renewed until the main loop has recorded its outcome and
        released it: recording waits for the queue lock, which peers may hold for seconds on a loaded machine, and a
        lease left to age meanwhile would have a peer judge this healthy daemon hung and kill it."""
        mono = self.clock.monotonic()
        every = self.role.heartbeat
        due = every
        for run in tuple(self.running.values()):
            if run.lost:
                continue
            if mono < run.next_beat:
                due = min(due, run.next_beat - mono)
                continue
            run.next_beat = mono + every
            before = boottime()  # read before renewing: the supervisor's fence never outlives the lease (see runner)
            renewed = run.held.update(self.clock.now(), self.clock.boottime())
            if renewed is True and run.proc is not None:
                run.proc.renewed(before)
            if renewed is not False:
                continue  # renewed, or released by the main loop meanwhile
            run.lost = True
            doing = "stopping its process group" if run.exit is None else "its outcome will not be recorded"
            self.journal.emit(
                "heartbeat-lost",
                f"lease on {run.task_id} was taken over (token {run.token}); {doing}",
                level=logging.WARNING,
                task=run.task_id,
                token=run.token,
            )
            if run.proc is not None and run.exit is None:
                run.proc.kill()
        return due

    def _beat(self) -> None:
        """The daemon's own liveness beat: its PID file, and systemd's watchdog when it asks for one."""
        if self.pidfile is not None:
            try:
                self.pidfile.beat(self.clock.now(), self.clock.boottime())
            except OSError as exc:
                log.debug("cannot beat the PID file: %s", exc)
        notify.watchdog()

    def _beat_loop(self) -> None:
        """The heartbeat thread: leases and the liveness beat, never behind the queue lock or a queue read."""
        every = min(LIVENESS_BEAT, notify.watchdog_every() or LIVENESS_BEAT)
        next_beat = 0.0
        while not self._beats.is_set():
            wait = every
            try:
                wait = min(wait, self._heartbeat())
                mono = self.clock.monotonic()
                if mono >= next_beat:
                    self._beat()
                    next_beat = mono + every
                wait = min(wait, max(0.0, next_beat - mono))
            except Exception:  # a bug here must not end the beats silently: logged, and the loop goes on
                log.exception("heartbeat thread: unexpected error (carrying on)")
            self._beats.wait(max(0.05, wait))

    def start_heartbeats(self) -> None:
        """Start the heartbeat thread (``run`` does; idempotent)."""
        if self._beater is not None:
            return
        self._beats.clear()
        self._beater = threading.Thread(target=self._beat_loop, name=f"agentd-{self.role_name}-heartbeat", daemon=True)
        self._beater.start()

    def stop_heartbeats(self) -> None:
        """Stop the heartbeat thread and wait for it."""
        if self._beater is None:
            return
        self._beats.set()
        self._beater.join()
        self._beater = None

    def _log_wip(self, seen: PassResult) -> None:
        """Log "WIP limit reached" and "room again" once per change, not on every pass: the state after the pass's
        own claims (a pass measures before it claims, and refills in the same write the slots ended runs freed)."""
        claimed = len(seen.claims)
        busy = seen.busy + claimed
        full = seen.claimable > claimed and seen.room <= claimed and self._claiming and busy >= seen.limit
        if full == self._wip_full:
            return
        self._wip_full = full
        if full:
            waiting = seen.waiting() - claimed
            self.journal.emit(
                "wip-full",
                f"WIP limit reached ({busy}/{seen.limit}); {waiting} task(s) waiting",
                wip=busy,
                limit=seen.limit,
                waiting=waiting,
            )
        elif busy < seen.limit:
            self.journal.emit("wip-room", f"WIP room again ({busy}/{seen.limit})", wip=busy, limit=seen.limit)
        else:  # still at (or, with a dead peer's run not yet recovered, over) the limit, but nothing waits for it
            self.journal.emit(
                "wip-room", f"no task waits for WIP room any more ({busy}/{seen.limit})", wip=busy, limit=seen.limit
            )

    def _next_timeout(self) -> float:
        """Seconds until the next pass is due without any event."""
        timeout = self.interval
        mono = self.clock.monotonic()
        for run in self.running.values():
            if self._beater is None:
                timeout = min(timeout, max(0.0, run.next_beat - mono))
            if run.stop_deadline is not None:
                timeout = min(timeout, max(0.0, run.stop_deadline - mono))
        with contextlib.suppress(OSError, AgentdError):
            self._peer_leases = frozenset(task_id for task_id in self.store.lease_ids() if task_id not in self.running)
            if self._peer_leases:
                timeout = min(timeout, LEASE_POLL)
        if self._next_wake is not None:
            timeout = min(timeout, max(0.0, (self._next_wake - self.clock.now()).total_seconds()))
        if self._claim_pause_until > mono:
            timeout = min(timeout, self._claim_pause_until - mono)
        if self._last_error is not None:
            timeout = min(timeout, max(0.0, self._access_retry_at - mono))
        if self._watch_refused:
            timeout = min(timeout, max(0.0, self._watch_retry_at - mono))
        if self._pause is not None and self._pause.until is not None:
            timeout = min(timeout, max(0.0, (self._pause.until - self.clock.now()).total_seconds()))
        return max(0.0, timeout)

    # -- the loop ------------------------------------------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and self._terminal_gone():
            self._hangup = True  # the terminal of a foreground daemon closed: stop gracefully, as its user left
            self._stop_requests += 1
        elif signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop_requests += 1
        self.wake("signal")

    def _terminal_gone(self) -> bool:
        """Whether this daemon ran attached to a terminal that has hung up. A hung-up terminal's fds answer every
        terminal query with EIO, so none of them is a tty any more; a live one (``kill -HUP`` by hand) still is."""
        return bool(self._terminal) and not any(_isatty(fd) for fd in self._terminal)

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
        self.executor = Executor(fresh, role, self.clock)
        self.dispatcher = Dispatcher(fresh, role, self.store, self.executor, self.clock, self.instance)
        self.journal.max_bytes, self.journal.backups = fresh.log.max_bytes, fresh.log.backups
        log.info("SIGHUP: configuration re-read from %s", fresh.path or "defaults")

    def take_signals(self) -> None:
        """From now on SIGTERM and SIGINT stop this daemon gracefully and SIGHUP re-reads its configuration (on the
        main thread; run() does it first). The foreground command calls this before it registers the daemon's PID
        file: a stop sent as soon as the daemon is seen running (by `agentd status`, a service manager) is a request
        the loop honours, never the default action killing it with the PID file left behind."""
        if self._signal_handlers is not None or threading.current_thread() is not threading.main_thread():
            return
        self._terminal = tuple(fd for fd in (0, 1, 2) if _isatty(fd))
        self._signal_handlers = {
            signum: signal.signal(signum, self._signal) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }

    def give_back_signals(self) -> None:
        """Put back the signal handlers take_signals() replaced."""
        handlers, self._signal_handlers = self._signal_handlers, None
        for signum, handler in (handlers or {}).items():
            signal.signal(signum, handler)

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
        self._mode = mode
        self.take_signals()
        self.check_ready()
        self.executor.prepare(self.concurrency or 1)
        self.store.prepare(0)  # (what a daemon's store keeps from pass to pass: see Store.prepare)
        self._watch_started = False  # (the watch starts after the first pass: see _wait)
        self._pruner = None  # (the task logs are pruned after the first pass: see _start_prune)
        self.journal.emit(
            "daemon-started",
            f"{self.role_name} daemon started (pid {os.getpid()}, {mode.value}, interval {self.interval:g} s)",
            mode=mode.value,
            instance=self.instance,
            interval=self.interval,
        )
        unknown = command.unknown_placeholders(self.role)
        if unknown:
            log.warning("%s", command.describe_unknown(self.role, unknown))
        if self.janitor is not None:
            self.janitor.start()
        self.start_heartbeats()
        notify.ready()
        self.executor.pump = self._status  # (a pass driven by tick() alone, as in tests, has its tasks read by threads)
        try:
            try:
                code = self._loop(mode)
            finally:
                self.executor.pump = None
                notify.stopping()
                if self.janitor is not None:
                    self.janitor.stop()
                self.stop_heartbeats()
                self._stop_watching(hand_off=self.executor.keep_until_exit)
                self._end_prune()
                self.executor.finish()
                self.give_back_signals()
            self.journal.emit("daemon-stopped", f"{self.role_name} daemon stopped (exit {code})", exit_code=code)
        finally:
            # Its descriptors (the queue lock, the lease folder, the token mark, files made ahead; a database store's
            # connections, which its journal writes through): closed once its last event is written, not at the
            # process's exit, for daemons run one after another in one process (a store reopens what it needs).
            with contextlib.suppress(OSError):  # (nothing to lose: the run is over, its exit code stands)
                self.store.close()
        return code

    def _loop(self, mode: Mode) -> int:
        first = True
        while True:
            paced = self._pace()
            if self._reload:
                if self._terminal_gone():  # a hang-up's SIGHUP judged before the terminal had finished hanging up
                    self._reload = False
                    self._hangup = True
                    self._stop_requests += 1
                else:
                    self._reload_config()
            self._gather_ends()
            if not first and not self._stop_requests:
                # The spares of the last pass's starts, asked for as this pass begins, once its group of ends is
                # gathered: the zygote forks them while the pass's transaction runs, which leaves the other core
                # idle, rather than during the group's hold, when they took a core from the last supervisors.
                self.executor.replenish()
            self._wake.clear()
            spent = time.thread_time()
            report = self.tick()
            if report.finished or report.claimed:
                self._pass_took = time.thread_time() - spent
            if paced:
                self._looks.spend(time.thread_time() - spent, self.clock.monotonic())
            if first:
                self._start_prune()
            if first and self._on_first_pass is not None and not self._on_first_pass(report.error):
                return report.error_code
            if report.error and mode is not Mode.FOREVER and not self.running:
                return report.error_code
            if self._stop_requests:
                return self._shutdown()
            if mode is Mode.ONCE and not self.running and (not first or not report.claimed):
                return int(ExitCode.FAILURE if self.failed else ExitCode.OK)
            settled = report.settled or not report.did_something
            if mode is Mode.DRAIN and not self.running and report.claimable_left == 0 and settled:
                return int(ExitCode.FAILURE if self.failed else ExitCode.OK)
            if mode is Mode.ONCE:
                self._stop_claiming_after_first_pass()
            if first and (not self.running or self.watch_after <= 0):
                self._start_watching()  # (idle from the start: see _wait)
            elif self._watch_refused:
                self._retry_watch()
            first = False
            if not settled:
                self._dirty = True  # what this pass changed (room freed, tasks moved) deserves another look now
                self._urgent = True
                continue
            self._wait(self._next_timeout())

    def _wait(self, timeout: float) -> None:
        """The loop's wait for what comes next. Until the change watch is set up, its first :attr:`watch_after` s:
        when nothing came by then (a wake-up, a task's end), the watch is set up (on a thread of its own, which wakes
        the daemon once it is up: a change made meanwhile is seen) and the wait goes on. While the daemon's tasks end
        more often than that, the watch would add nothing: each end's pass reads the queue, the lease folder and the
        state file."""
        after = self.watch_after
        if self._watch and not self._watch_started and not self._watch_refused and 0 < after < timeout:
            if self._sleep(after):
                return
            self._start_watching()
            timeout -= after
        self._sleep(timeout)

    def _gather_ends(self) -> None:
        """Group commit: hold a pass that would record an ended run while others of this daemon still run, for at
        most :func:`group_hold` (a share of the last such pass's own time), so that it records the runs that end
        meanwhile too; the hold ends early once none of them runs any more, or on a stop or reload."""
        self._collect_exits()
        ended = sum(1 for run in self.running.values() if run.exit is not None)
        hold = group_hold(self._pass_took, ended, len(self.running) - ended)
        if hold <= 0:
            return
        deadline = time.monotonic() + hold
        while True:
            self._wake.clear()  # (before the looks: an end, stop or reload from then on ends the wait below)
            self._collect_exits()
            if self._stop_requests or self._reload:
                return
            left = deadline - time.monotonic()
            if left <= 0 or all(run.exit is not None for run in self.running.values()):
                return
            self._sleep(left)

    def _start_prune(self) -> None:
        """Prune every task's output logs (and the folders of spare supervisors that died) on a thread of its own,
        once the first pass has claimed and started what it could: on a project with thousands of task log folders
        that walk takes tens of milliseconds, seconds with a cold cache, which a daemon's first claim need not wait
        for. (A finished run's own folder is pruned by the pass that records it; the two prunes may meet in a
        folder: a log one removed is only skipped by the other.)"""
        if self._pruner is None:
            self._pruner = threading.Thread(target=self.executor.prune_logs, name="agentd-prune-logs", daemon=True)
            self._pruner.start()

    def _end_prune(self) -> None:
        """Wait for the start's prune (see :meth:`_start_prune`) before the daemon reports that it stopped."""
        if self._pruner is not None:
            self._pruner.join(timeout=PRUNE_WAIT)

    def _start_watching(self) -> None:
        """Start the store's change watch (after the first pass, when the daemon first waits: see :meth:`_wait`), on
        a thread of its own: a store's watch may take a while to set up (the PostgreSQL store's connects; the file
        store's imports ctypes), which is nothing a daemon needs before its first claim, nor on the main thread while
        its first task runs (that task's end is recorded meanwhile), and a drain with nothing to do never needs it.
        Once the watch is up, a look follows: a change made before is not missed."""
        if not self._watch or self._watch_started:
            return
        self._watch_started = True
        self._watch_setup = threading.Thread(target=self._set_up_watch, name="agentd-watch-setup", daemon=True)
        self._watch_setup.start()

    def _set_up_watch(self) -> None:
        try:
            watcher = self.store.watch(self.wake)
        except (AgentdError, OSError) as exc:
            watcher = None
            if str(exc) != self._watch_trouble:
                self._watch_trouble = str(exc)
                log.warning("no change watch (the queue is looked at every %g s): %s", self.interval, exc)
        with self._watch_lock:
            if self._watch_setup is None:  # the daemon stopped meanwhile (and gave up waiting for this)
                if watcher is not None:
                    watcher.stop()
                return
            if watcher is None:  # (the store said why): tried again an interval from now
                self._watch_refused += 1
                self._watch_started = False  # (first: the loop retries once _watch_retry_at is set)
                self._watch_retry_at = self.clock.monotonic() + self.interval
                self._wake.set()  # (no look: the loop's next wait only takes the retry's time into account)
                return
            self._watcher = watcher
            if self._watch_refused:
                log.info("file events available again: changes wake the daemon at once, no more polling")
            self._watch_refused, self._watch_trouble = 0, None
        self.wake("watching")

    def _retry_watch(self) -> None:
        """Set the change watch up again once a refused set-up's interval is over (see _set_up_watch)."""
        if not self._watch_started and self.clock.monotonic() >= self._watch_retry_at:
            self._watch_retry_at = float("inf")
            self._start_watching()

    def _stop_watching(self, hand_off: Callable[[int], object] | None = None) -> None:
        """Stop the change watch, waiting a while for its set-up when that is still under way (a store's watch that
        hangs, e.g. connecting to an unreachable server, is stopped by its thread once it is up). ``hand_off``: see
        :meth:`agentd.store.base.Watching.stop`."""
        setup = self._watch_setup
        if setup is not None:
            setup.join(timeout=10)
        with self._watch_lock:
            self._watch_setup = None
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop(hand_off)

    def _stop_claiming_after_first_pass(self) -> None:
        self._claiming = False

    def _shutdown(self) -> int:
        """Stop claiming; give running tasks ``grace`` s, then stop their groups; requeue them unspent."""
        if self._hangup:
            self.journal.emit(
                "hangup",
                f"{self.role_name}: its terminal closed (SIGHUP); stopping gracefully",
                level=logging.WARNING,
                running=len(self.running),
            )
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
            self._wake.clear()  # (before the looks: an end or a second signal from then on ends the wait below)
            self._collect_exits()
            done = [run for run in self.running.values() if run.exit is not None]
            try:
                if done:
                    self._pass(TickReport(), done, look=False)
            except (AgentdError, OSError) as exc:
                # The queue cannot be written now. Once every task has ended, give up: the leases are released on
                # exit and the next daemon recovers the tasks from the queue.
                unrecorded += 1
                if unrecorded == 1:
                    log.error("shutdown: cannot record finished tasks: %s", exc)
                if all(run.exit is not None for run in self.running.values()) and unrecorded > 25:
                    for run in self.running.values():
                        run.held.release()
                        if run.proc is not None:
                            run.proc.let_reap()
                    self.running.clear()
                    return int(exc.exit_code if isinstance(exc, AgentdError) else ExitCode.IO_ERROR)
            if not self.running:
                break
            if self.clock.monotonic() >= deadline or self._stop_requests > asked:
                for run in self.running.values():
                    if not run.interrupted and run.proc is not None:
                        run.interrupted = True
                        run.proc.terminate()
                deadline = float("inf")
            self._sleep(min(0.2, max(0.0, deadline - self.clock.monotonic())))
        return int(ExitCode.OK)
