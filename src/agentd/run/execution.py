"""Running one claimed task: its command, environment and log, its outcome, the record of its run.

The daemon decides *what* runs (:mod:`agentd.run.dispatch`); this module owns *how*: it builds the argv, hands the
lease's locked descriptor to the task's supervisor, reads the result file once, and keeps the task logs pruned.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from agentd.config import Config
from agentd.core import adapters, command, scheduler
from agentd.core.clock import Clock, boottime, format_timestamp
from agentd.core.duration import parse_duration
from agentd.core.record import MutableRecord, Record, set_field
from agentd.core.scheduler import Kind, Outcome
from agentd.core.workflow import Role
from agentd.errors import AgentdError, DataError
from agentd.run.runner import ExitInfo, LaunchSpec, StatusPump, TaskProcess, launch, read_status
from agentd.run.zygote import default_zygote
from agentd.service import logsetup
from agentd.store.base import HeldLease
from agentd.workspaces import launch as workspaces_launch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

log = logging.getLogger("agentd.daemon")

# Why agentd itself may fail to start a command (not the command's failure: no attempt is spent).
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})
# File descriptors a task costs the daemon: kept while it runs (its lease, the two ends of its supervisor's pipes, and a
# pidfd of and the channel to a supervisor the zygote forked, which the daemon keeps after the task while the
# supervisor waits for another), more for a moment while its supervisor is started (the other ends of those pipes;
# subprocess's pipes when started directly), and what the daemon keeps free for its own work (the zygote's socket
# among them).
FDS_PER_TASK = 5
FDS_TO_SPAWN = 6
FDS_RESERVED = 8
# The renewal that records a started run's process group is told to its supervisor (a control line: a wake-up of it)
# only when the start took more than this share of the fence: else the fence, counted from the claim, comes at most
# that share sooner than it would have (the safe side), and the next heartbeat's renewal moves it on as ever.
BEAT_AFTER_START = 0.01


def open_descriptors() -> int | None:
    """How many file descriptors this process has open (None where that cannot be told)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # the listing's own descriptor
        except OSError:
            continue
    return None


def start_room() -> int | None:
    """How many more tasks this process has the file descriptors to start (None: no limit found)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_now = open_descriptors()
    if soft == resource.RLIM_INFINITY or open_now is None:
        return None
    return scheduler.descriptor_room(soft, open_now, per_task=FDS_PER_TASK, spawn=FDS_TO_SPAWN, reserve=FDS_RESERVED)


class _Paths(Record):
    """What :meth:`Executor.start` uses of its config's paths (see :meth:`Executor.paths`)."""

    _fields = ("config", "root", "queue", "config_file", "task_logs", "results")

    config: Config
    root: Path
    queue: Path
    config_file: Path | None
    task_logs: str  # the folder of the task logs (one folder per task)
    results: str  # the folder of the result files

    def __init__(
        self, config: Config, root: Path, queue: Path, config_file: Path | None, task_logs: str, results: str
    ) -> None:
        set_field(self, "config", config)
        set_field(self, "root", root)
        set_field(self, "queue", queue)
        set_field(self, "config_file", config_file)
        set_field(self, "task_logs", task_logs)
        set_field(self, "results", results)


def _make_folder(folder: str) -> None:
    """``Path(folder).mkdir(parents=True, exist_ok=True)``: one stat when it exists (the usual case; pathlib tries
    a mkdir, catches its FileExistsError, then stats); FileExistsError when something else is in its place."""
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)


class Running(MutableRecord):
    """A task this daemon started (or failed to start)."""

    _fields = (
        "task_id",
        "token",
        "attempt",
        "held",
        "log_path",
        "result_path",
        "started_at",
        "next_beat",
        "proc",
        "exit",
        "outcome",
        "argv",
        "lost",
        "interrupted",
        "stopping",
        "stop_deadline",
        "not_started",
    )

    task_id: str
    token: int
    attempt: int
    held: HeldLease
    log_path: Path
    result_path: Path
    started_at: datetime
    next_beat: float
    proc: TaskProcess | None = None
    exit: ExitInfo | None = None
    outcome: Outcome | None = None  # decided once, when the run is first recorded (the result file is read once)
    argv: tuple[str, ...] = ()
    lost: bool = False
    interrupted: bool = False
    stopping: str | None = None  # the final status someone moved the task to while it ran: its command is stopped
    stop_deadline: float | None = None  # monotonic: SIGKILL the command's tree if it has not ended by then
    not_started: str | None = None  # why agentd itself could not start it (out of resources): no attempt spent

    def __init__(
        self,
        task_id: str,
        token: int,
        attempt: int,
        held: HeldLease,
        log_path: Path,
        result_path: Path,
        started_at: datetime,
        next_beat: float,
        proc: TaskProcess | None = None,
        exit: ExitInfo | None = None,
        outcome: Outcome | None = None,
        argv: tuple[str, ...] = (),
        lost: bool = False,
        interrupted: bool = False,
        stopping: str | None = None,
        stop_deadline: float | None = None,
        not_started: str | None = None,
    ) -> None:
        self.task_id = task_id
        self.token = token
        self.attempt = attempt
        self.held = held
        self.log_path = log_path
        self.result_path = result_path
        self.started_at = started_at
        self.next_beat = next_beat
        self.proc = proc
        self.exit = exit
        self.outcome = outcome
        self.argv = argv
        self.lost = lost
        self.interrupted = interrupted
        self.stopping = stopping
        self.stop_deadline = stop_deadline
        self.not_started = not_started


def task_timeout(task: Mapping[str, Any], role: Role) -> float:
    """A task's own ``timeout`` (seconds, or a duration such as "2h") over its role's."""
    value = task.get("timeout")
    if value is None or isinstance(value, bool):
        return role.timeout
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError):
        log.warning(
            "%s: its timeout %r is not a duration; the role's %g s applies", task.get("id"), value, role.timeout
        )
        return role.timeout
    return seconds if seconds > 0 else role.timeout


class Executor:
    """Starts tasks for one role and turns their ends into outcomes."""

    def __init__(self, config: Config, role: Role, clock: Clock) -> None:
        self.config = config
        self.role = role
        self.clock = clock
        self._paths: _Paths | None = None
        self._unread: list[TaskProcess] = []  # started since the last started(): their status not yet read
        # Where their status is read: a running daemon's loop (Daemon.run sets it), else a thread each
        self.pump: StatusPump | None = None

    def paths(self) -> _Paths:
        """The config's paths a start uses, made once per config (each of its properties makes a new Path)."""
        made = self._paths
        if made is None or made.config is not self.config:
            config = self.config
            state = config.state_folder
            made = self._paths = _Paths(
                config,
                config.root,
                config.queue_path,
                config.path,
                os.path.join(state, "logs", "tasks"),
                os.path.join(state, "results"),
            )
        return made

    def prepare(self, at_once: int = 1) -> None:
        """Get ready to start tasks (a running daemon, before its first pass): the supervisor zygote starts now, and
        keeps as many supervisors forked ahead as the daemon may start in one pass (``at_once``)."""
        zygote = default_zygote()
        zygote.prepare_logs(self.paths().task_logs)  # (each spare makes a task's log folder and file ahead)
        zygote.prestart(at_once)

    def keep_ahead(self, at_once: int) -> None:
        """The daemon may now start up to *at_once* tasks in one pass (its role's WIP limit, as the queue last said,
        within its --concurrency): the zygote keeps as many supervisors forked ahead (see
        :meth:`agentd.run.zygote.Zygote.keep_ahead`)."""
        default_zygote().keep_ahead(at_once)

    def finish(self) -> None:
        """The daemon starts no more tasks: the supervisors forked ahead and unused are let go, and gone, with the
        log folders they made ahead of a task (see :meth:`agentd.run.zygote.Zygote.release_spares`)."""
        default_zygote().release_spares()

    def reaping_together(self) -> AbstractContextManager[None]:
        """Within it, the supervisors let be reaped (:meth:`TaskProcess.let_reap`) are reaped by the zygote at its end,
        one message for all (see :meth:`agentd.run.zygote.Zygote.reaping_together`)."""
        return default_zygote().reaping_together()

    def keep_until_exit(self, fd: int) -> bool:
        """Have the supervisor zygote keep a copy of *fd* until it exits (the daemon ends: see
        :meth:`agentd.run.zygote.Zygote.keep`)."""
        return default_zygote().keep(fd)

    def started(self) -> None:
        """The tasks of a pass were started (:meth:`start`; the caller calls this whatever happened after them): their
        status is read from now on, by :attr:`pump` (the daemon's loop, in the poll it sleeps in) or else by a thread
        each (which wakes it: done once the starts are over, not between them). Their spares' successors are asked
        for by the next pass (:meth:`replenish`), not now: forked now, they would take a core from the supervisors
        just handed their tasks."""
        unread, self._unread = self._unread, []
        failed: BaseException | None = None
        for proc in unread:
            try:
                if self.pump is not None:
                    self.pump.add(proc)
                else:
                    read_status(proc)
            except Exception as exc:  # (no thread for it: the others still get theirs)
                failed = failed or exc
        if failed is not None:
            raise failed

    def replenish(self) -> None:
        """Ask the zygote for the supervisors the last starts took from those forked ahead, all in one request: at the
        start of a pass (a daemon woken by an end, or by a change to the queue), once the ends it waits for are in
        (see Daemon._gather_ends), so that they are forked while the pass reads and writes the queue, on the core
        that leaves idle (the supervisors that reported no longer use it), and are ready when it starts what it
        claims. Nothing when none is missing or no zygote was started."""
        default_zygote().replenish()

    def start(
        self,
        task_id: str,
        held: HeldLease,
        raw: dict[str, Any],
        on_exit: Callable[[TaskProcess, ExitInfo], None],
        workspace: str | None = None,
        claimed_at: float | None = None,
    ) -> Running:
        """Launch the task's command under its supervisor; a run that cannot start ends at once (exit 127).

        ``claimed_at``: a boot-clock reading taken before the claim's transaction began: the supervisor's fence
        deadline counts from it until the first renewal (see :mod:`agentd.run.runner`)."""
        attempt, token = held.record.attempt, held.token
        paths = self.paths()
        result_file = os.path.join(paths.results, f"{task_id}.{token}.json")
        run = Running(
            task_id,
            token,
            attempt,
            held,
            Path(os.path.join(paths.task_logs, task_id, f"{token}.log")),
            Path(result_file),
            self.clock.now(),
            self.clock.monotonic() + self.role.heartbeat,
        )
        try:
            where = workspaces_launch.for_run(self.config, self.role, task_id, workspace, run.result_path)
            argv = command.argv_for(
                raw,
                self.role,
                attempt=attempt,
                root=paths.root,
                queue=paths.queue,
                config_path=paths.config_file,
                workspace=where.path if where else None,
                branch=where.branch if where else "",
            )
            env = command.environment(
                task_id,
                self.role,
                attempt=attempt,
                token=token,
                root=paths.root,
                queue=paths.queue,
                result=run.result_path,
                config=paths.config_file,
                task=raw,
            )
            if where is not None:  # the command runs in the task's worktree, by the workspace step
                env.update(where.environment())
            _make_folder(paths.results)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(result_file)
            fence_from = boottime() if claimed_at is None else claimed_at  # (where the supervisor's fence starts)
            spec = LaunchSpec(
                argv=where.wrap(argv) if where else argv,
                cwd=paths.root,
                env=env,
                log_path=run.log_path,
                timeout=task_timeout(raw, self.role),
                kill_after=self.role.kill_after,
                keep_fds=held.inherit(),
                fence_after=self.role.fence_after,
                fence_from=fence_from,
                report_start=False,  # (the daemon uses no command pid: no reader woken for it)
            )
            default_zygote().prepare_logs(paths.task_logs)  # (the next spares: see prepare)
            # (read: see started; reaped once the daemon recorded the run: see Daemon._release_ended)
            run.proc = launch(spec, on_exit=on_exit, replenish=False, read=False, hold_reap=True)
            self._unread.append(run.proc)
        except (AgentdError, OSError, ValueError) as exc:
            now = time.time()
            if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
                # agentd's own failure: the daemon journals it (once) and requeues the task unspent
                run.not_started = str(exc)
                if exc.errno == errno.EMFILE:
                    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                    run.not_started += f" (ulimit -n {nofile}, {open_descriptors()} open)"
                run.exit = ExitInfo(None, None, False, None, str(exc), now, now, not_started=True)
                return run
            log.error("cannot start %s: %s", task_id, exc)
            run.exit = ExitInfo(127, None, False, None, str(exc), now, now)
            return run
        pgid = run.proc.pgid
        before = boottime()  # the real boot clock, which the supervisor reads too (self.clock may be a test's)
        renewed = held.update(self.clock.now(), self.clock.boottime(), pgid=pgid, pgid_start=run.proc.pgid_start())
        if renewed is True and before - fence_from > self.role.fence_after * BEAT_AFTER_START:
            run.proc.renewed(before)
        run.argv = tuple(argv)
        return run

    def outcome(self, run: Running) -> Outcome:
        """How the run ended (decided once: the result file is read, validated and removed)."""
        if run.outcome is None:
            run.outcome = self._decide(run)
        return run.outcome

    def _decide(self, run: Running) -> Outcome:
        info = run.exit
        assert info is not None
        if info.not_started:  # the supervisor could not start it for want of resources: agentd's failure
            run.not_started = run.not_started or info.error or "out of resources"
        if run.not_started is not None:
            with contextlib.suppress(OSError):
                run.result_path.unlink()
            return Outcome(
                Kind.NOT_STARTED, None, None, note=f"not started: agentd could not start it ({run.not_started})"
            )
        if info.killed_by == "fence":  # whatever it wrote is void: its lease may have been taken over meanwhile
            with contextlib.suppress(OSError):
                run.result_path.unlink()
            return Outcome(
                Kind.FENCED,
                info.returncode,
                info.signal,
                note=f"fenced: no lease renewal for {self.role.fence_after:g} s (lease_ttl {self.role.lease_ttl:g} s - "
                f"fence_margin {self.role.margin:g} s); its supervisor killed the command's tree",
            )
        if run.interrupted and info.returncode != 0:
            return Outcome(Kind.INTERRUPTED, info.returncode, info.signal, note="interrupted by shutdown")
        if run.stopping is not None and info.returncode != 0:
            with contextlib.suppress(OSError):
                run.result_path.unlink()
            return Outcome(Kind.STOPPED, info.returncode, info.signal)  # no note: the person's own note stands
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
        outcome = scheduler.classify(
            self.role, exit_code=info.returncode, signal=info.signal, timed_out=info.timed_out, result=result
        )
        return self._with_report(run, outcome, result)

    def _with_report(self, run: Running, outcome: Outcome, result: dict[str, Any] | None) -> Outcome:
        """Add the session and usage the result file or the role's output adapter reported; an agent that says it
        failed (exit 0 and ``is_error``) failed."""
        report = self._adapter_report(run)
        session = (result or {}).get("session") or (report.session if report else None)
        usage = {**(report.usage if report else {}), **((result or {}).get("usage") or {})}
        if report is not None and report.is_error and outcome.kind is Kind.SUCCESS:
            outcome = outcome.replace(kind=Kind.FAILURE, note=report.note or "the agent reported an error")
        return outcome.replace(session=session, usage=usage)

    def _adapter_report(self, run: Running) -> adapters.AgentReport | None:
        """What the role's output adapter reads from the end of the run's log (None: no adapter, or nothing)."""
        if self.role.output is None:
            return None
        try:
            read = adapters.adapter(self.role.output)
            with open(run.log_path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - adapters.TAIL))
                text = handle.read().decode("utf-8", errors="replace")
            return read(text)
        except (LookupError, OSError) as exc:
            log.warning("%s: output adapter %r: %s", run.task_id, self.role.output, exc)
            return None
        except Exception as exc:  # an installed adapter's bug must not stop the daemon
            log.warning("%s: output adapter %r failed: %r", run.task_id, self.role.output, exc)
            return None

    def last_run(self, run: Running, outcome: Outcome) -> dict[str, Any] | None:
        """What the task records about this run (None for a run agentd could not start: it was no attempt)."""
        if outcome.kind is Kind.NOT_STARTED:
            return None
        info = run.exit
        assert info is not None
        return {
            "role": self.role.name,
            "attempt": run.attempt,
            "token": run.token,
            "outcome": outcome.kind.value,
            "exit_code": outcome.exit_code,
            "signal": outcome.signal,
            "started_at": format_timestamp(run.started_at),
            "ended_at": format_timestamp(self.clock.now()),
            "duration_s": round(info.duration, 3),
            "log": os.path.relpath(run.log_path, self.config.root_folder),
            **({"session": outcome.session} if outcome.session else {}),
            **({"usage": dict(outcome.usage)} if outcome.usage else {}),
        }

    def cap_log(self, run: Running) -> None:
        """Cut the middle out of a finished run's log over ``[log] max_task_log`` bytes (head and tail kept)."""
        limit = self.config.log.max_task_log
        try:
            cut = logsetup.cap_task_log(run.log_path, limit)
        except OSError as exc:
            log.warning("%s: cannot cap the task log: %s", run.log_path, exc.strerror or exc)
            return
        if cut:
            log.info("%s: %d bytes cut from the middle (max_task_log %d)", os.path.relpath(run.log_path), cut, limit)

    def prune_logs(self, task_id: str | None = None) -> None:
        """Keep the newest ``keep_task_logs`` output logs per task, none older than ``keep_task_log_days``."""
        try:
            removed = logsetup.prune_task_logs(
                os.path.join(self.config.state_folder, "logs", "tasks"),  # (a string: no Path made at every end)
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
