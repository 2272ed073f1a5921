"""Run one task command under a supervisor process (the shim, ``_shim.py``).

The daemon never forks by itself (it is multi-threaded): :func:`launch` has the shim forked by the daemon's supervisor
zygote (:mod:`agentd.run.zygote`), or starts it with ``subprocess.Popen`` when there is no working zygote; either way in
a new session, so the shim is the leader of the task's process group (``pgid == shim pid``) and the command runs in
that group.  The daemon holds the only write end
of the shim's stdin (the control pipe): if the daemon dies, even by SIGKILL, the shim sees EOF
and kills the whole group -- the command, its children and itself -- within about a second.

Status comes back as length-prefixed ``marshal`` frames on the shim's stdout (see ``_shim.py``), read by one
thread per running task (kept for a later task once its own ended), or, in a running daemon, by its loop itself in the
poll it sleeps in (:class:`StatusPump`)::

    task = launch(LaunchSpec(argv=["make", "test"], cwd=repo, env={}, log_path=log, timeout=3600))
    info = task.wait()          # ExitInfo; or pass on_exit=callback to launch()

Self-fencing: with ``fence_after`` set, the shim kills the command's whole tree once that many seconds passed on the
boot clock since ``fence_from`` and since the latest :meth:`TaskProcess.renewed` (the daemon calls it after each
successful lease renewal). Control lines go down a non-blocking pipe: a renewal never waits on a shim (a beat that
would block is dropped, which can only make the fence come sooner).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import marshal
import math
import os
import queue
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agentd.core.clock import boottime
from agentd.core.record import Record, set_field
from agentd.hostinfo import process_start
from agentd.run.zygote import ForkedSupervisor, Zygote, ZygoteGone, close_quietly, default_zygote, pipes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "SHIM_PATH",
    "ExitInfo",
    "LaunchSpec",
    "StatusPump",
    "TaskProcess",
    "group_alive",
    "kill_group",
    "launch",
    "read_status",
]

log = logging.getLogger(__name__)

SHIM_PATH = Path(__file__).resolve().with_name("_shim.py")
# The shim's first frame on its stdin is its own code, compiled once per daemon: `python -I -S _shim.py` would compile
# the script on every task (a script's bytecode is never cached), ~5 ms of CPU each. BOOT reads exactly that frame
# (so the spec frame behind it stays in the pipe for the shim) and runs it as __main__.
SHIM_BOOT = (
    """import marshal,os
def r(n):
    b=b''
    while len(b)<n:
        c=os.read(0,n-len(b))
        if not c:raise SystemExit(2)
        b+=c
    return b
exec(marshal.loads(r(int.from_bytes(r(4),'big'))),{'__name__':'__main__','__file__':"""
    + repr(str(SHIM_PATH))
    + "})"
)
KILL_FALLBACK_DELAY = 1.0  # s: after KILL on the pipe, SIGKILL the group ourselves if no report yet
INHERITOR_WAIT = 10.0  # s: for each process of a run whose supervisor died to end once SIGKILLed (see _end_inheritors)
REAP_TIMEOUT = 5.0  # s: a shim that reported must exit by then
# s: the longest the reap of a supervisor that reported waits for its owner's go (launch(hold_reap=True), then
# TaskProcess.let_reap()): a go never given (an owner that gave up on the run) only delays the reap this long (a pumped
# task's: this long, or until its owner next waits in StatusPump.wait, the supervisor a zombie meanwhile)
REAP_HOLD = 1.0


class LaunchSpec(Record):
    """What to run.  ``env`` is added to (overrides) ``os.environ``."""

    _fields = (
        "argv",
        "cwd",
        "env",
        "log_path",
        "timeout",
        "kill_after",
        "keep_fds",
        "fence_after",
        "fence_from",
        "report_start",
    )

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    log_path: Path
    timeout: float | None
    kill_after: float = 5.0
    keep_fds: Sequence[int] = ()
    fence_after: float | None = None  # s without a lease renewal before the shim kills the tree (None: no fencing)
    fence_from: float | None = None  # boot-clock time the lease was last renewed, at or before (None: now)
    report_start: bool = True  # the supervisor reports the command's start (command_pid, wait_started)

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        timeout: float | None,
        kill_after: float = 5.0,
        keep_fds: Sequence[int] = (),
        fence_after: float | None = None,
        fence_from: float | None = None,
        report_start: bool = True,
    ) -> None:
        set_field(self, "argv", argv)
        set_field(self, "cwd", cwd)
        set_field(self, "env", env)
        set_field(self, "log_path", log_path)
        set_field(self, "timeout", timeout)
        set_field(self, "kill_after", kill_after)
        set_field(self, "keep_fds", keep_fds)
        set_field(self, "fence_after", fence_after)
        set_field(self, "fence_from", fence_from)
        set_field(self, "report_start", report_start)


class ExitInfo(Record):
    """How a task ended.  ``started``/``ended`` are ``time.time()`` values.

    A command killed by a signal has ``returncode None`` and ``signal`` set.  A command that could
    not be started has returncode 127 (not found) or 126 (not executable, bad cwd, unusable log)
    and ``error`` set (``not_started`` when the cause was agentd's own lack of resources, not the command).
    ``killed_by`` is ``"timeout"``, ``"term"`` or ``"kill"`` when the
    supervisor was asked to stop the command (or the timeout did) before it exited, and ``"fence"`` when the
    supervisor fenced it (no lease renewal for ``fence_after`` seconds; never started when that was already so).
    """

    _fields = ("returncode", "signal", "timed_out", "killed_by", "error", "started", "ended", "not_started")

    returncode: int | None
    signal: int | None
    timed_out: bool
    killed_by: str | None
    error: str | None
    started: float
    ended: float
    not_started: bool = False  # agentd itself could not start the command (out of descriptors, processes, memory)

    def __init__(
        self,
        returncode: int | None,
        signal: int | None,
        timed_out: bool,
        killed_by: str | None,
        error: str | None,
        started: float,
        ended: float,
        not_started: bool = False,
    ) -> None:
        set_field(self, "returncode", returncode)
        set_field(self, "signal", signal)
        set_field(self, "timed_out", timed_out)
        set_field(self, "killed_by", killed_by)
        set_field(self, "error", error)
        set_field(self, "started", started)
        set_field(self, "ended", ended)
        set_field(self, "not_started", not_started)

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def crashed(self) -> bool:
        """No proper report: the supervisor itself died (e.g. was SIGKILLed)."""
        return self.returncode is None and self.signal is None


def _check_pgid(pgid: int) -> None:
    # killpg(0) is our own group and killpg(1) is nonsense: never let a bug signal those.
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")


def group_alive(pgid: int) -> bool:
    """Does process group *pgid* have any member (zombies count, as for ``kill(2)``)?"""
    _check_pgid(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, sig: int) -> bool:
    """Send *sig* to process group *pgid*; False if there is no such group (or not ours)."""
    _check_pgid(pgid)
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not permitted to signal process group %d", pgid)
        return False
    return True


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_float(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


class TaskProcess:
    """Handle of one running task.  ``pid == pgid`` is the shim's pid; thread-safe."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes] | ForkedSupervisor,
        spec: LaunchSpec,
        on_exit: Callable[[TaskProcess, ExitInfo], None] | None,
        launched: float,
        hold_reap: bool = False,
    ) -> None:
        self._popen = popen
        self.spec = spec
        self.pid: int = popen.pid
        self.pgid: int = popen.pid
        self.command_pid: int | None = None
        self._on_exit = on_exit
        self._launched = launched
        self._ctl_lock = threading.Lock()
        self._reap_lock = threading.Lock()
        self._reaped = False
        self._started = threading.Event()
        self._done = threading.Event()
        self._info: ExitInfo | None = None
        self._reap_go = threading.Event()  # set: a supervisor that reported is reaped as soon as it exits
        if not hold_reap:
            self._reap_go.set()
        self._owner_go = False  # let_reap() was called: the owner recorded the run and released its lease
        self._reusable = False  # its report said it waits for another task (a forked supervisor: see _shim._spare)
        self._pending = b""  # (pumped) what was read of a frame not whole yet
        self._status_started = launched  # (pumped) the command's start, as reported
        self._reported: ExitInfo | None = None  # (pumped) the end the supervisor reported, not reaped yet
        self._tie: tuple[int, int] | None = None  # (device, inode) of the run's tie (see launch, _end_inheritors)
        self._inherited = _identities(spec.keep_fds)  # what each descriptor the run inherits is (_end_inheritors)

    def __repr__(self) -> str:
        state = "running" if self._info is None else f"exited {self._info}"
        return f"<TaskProcess shim={self.pid} command={self.command_pid} {state}>"

    # -- queries -------------------------------------------------------------------------------
    def poll(self) -> ExitInfo | None:
        return self._info

    def wait(self, timeout: float | None = None) -> ExitInfo | None:
        """The ExitInfo once the task has ended, or None if *timeout* expired first."""
        self._done.wait(timeout)
        return self._info

    def pgid_start(self) -> int | None:
        """The supervisor's start time (:func:`agentd.hostinfo.process_start` of ``pgid``, which a lease records to
        tell the group's leader from a reused pid): as its zygote read it after forking it, ahead of the task (no
        read of /proc on the way to the command); read now for one started directly."""
        if isinstance(self._popen, ForkedSupervisor) and self._popen.start is not None:
            return self._popen.start
        return process_start(self.pgid)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Wait until ``command_pid`` is known (True) or the task ended / timeout expired."""
        self._started.wait(timeout)
        return self.command_pid is not None

    # -- control -------------------------------------------------------------------------------
    def terminate(self) -> None:
        """Graceful stop: SIGTERM to the group, SIGKILL after ``kill_after`` (done by the shim)."""
        if self._done.is_set():
            return
        if not self._send("TERM"):
            self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the group now (via the shim, so the exit is still reported)."""
        if self._done.is_set():
            return
        if not self._send("KILL"):
            self._signal_group(signal.SIGKILL)
            return
        fallback = threading.Timer(KILL_FALLBACK_DELAY, self._kill_fallback)
        fallback.daemon = True
        fallback.start()

    def renewed(self, at: float) -> None:
        """The lease was renewed; ``at`` is a boot-clock reading taken before the renewal began. Never blocks."""
        if not self._done.is_set():
            self._send(f"BEAT {at!r}")

    def let_reap(self) -> None:
        """The owner did what the end's report asked of it (a daemon: recorded the run, released its lease): the
        supervisor may be reaped now (see ``launch(hold_reap=True)``), or, when its report said it waits for another
        task, given back to its zygote for the next one (``ForkedSupervisor.reuse``: only on this go). Never blocks:
        a pumped task's supervisor that has exited is reaped here (it exits right after its report), one still
        exiting by a thread of its own."""
        self._owner_go = True
        self._let_reap()

    def _let_reap(self) -> None:
        self._reap_go.set()
        info = self._reported
        if info is not None:  # (set by pump() alone: a reader thread reaps by itself)
            self._reported = None
            if self._reap(wait=False):
                self._done_with(info)
            else:
                self._reap_later(info, tell=False)

    def detach_control(self) -> None:
        """Close the control pipe as if the daemon had died (the shim then kills the group)."""
        with self._ctl_lock:
            stdin = self._popen.stdin
            if stdin is not None and not stdin.closed:
                with contextlib.suppress(OSError):
                    stdin.close()

    # -- internals -----------------------------------------------------------------------------
    def _send(self, line: str | bytes) -> bool:
        """A control line (``TERM``, ``KILL``, ``BEAT t``: one write, never blocking, all or nothing: a line is
        shorter than PIPE_BUF), or the spec frame (bytes: blocking, before the pipe is made non-blocking)."""
        with self._ctl_lock:
            stdin = self._popen.stdin
            if stdin is None or stdin.closed:
                return False
            try:
                if isinstance(line, bytes):
                    stdin.write(line)
                    stdin.flush()
                    os.set_blocking(stdin.fileno(), False)
                else:
                    os.write(stdin.fileno(), line.encode() + b"\n")  # BlockingIOError: the shim is not reading
            except (BrokenPipeError, ValueError, OSError):
                return False
            return True

    def _signal_group(self, sig: int) -> None:
        # Under the reap lock: while the shim is unreaped its pid (= our pgid) cannot be reused.
        # A supervisor forked by the zygote is reaped by the zygote, only once we have seen it exit (unreaped()).
        with self._reap_lock:
            if not self._reaped and (not isinstance(self._popen, ForkedSupervisor) or self._popen.unreaped()):
                kill_group(self.pgid, sig)

    def _kill_fallback(self) -> None:
        if not self._done.is_set():
            log.warning("task %d: no exit report %.1fs after KILL, SIGKILLing the group", self.pid, KILL_FALLBACK_DELAY)
            self._signal_group(signal.SIGKILL)

    def _read_status(self) -> None:
        info: ExitInfo | None = None
        stdout = self._popen.stdout
        try:
            assert stdout is not None
            while True:
                head = stdout.read(4)
                payload = stdout.read(int.from_bytes(head, "big")) if len(head) == 4 else b""
                if not payload:
                    break  # EOF: the shim is gone
                info, bad = self._on_frame(payload)
                if info is not None or bad:
                    break
        except Exception:
            log.exception("task %d: status reader failed", self.pid)
        self._finish(*self._ended_as(info))

    def _on_frame(self, payload: bytes) -> tuple[ExitInfo | None, bool]:
        """One status frame: (the end it reports, or None; whether it was bad, which ends the reading)."""
        try:
            msg = marshal.loads(payload)  # noqa: S302 - a private pipe from our own shim
        except (ValueError, EOFError, TypeError):
            log.warning("task %d: bad status frame %r", self.pid, payload[:200])
            return None, True
        if not isinstance(msg, dict):
            return None, False
        event = msg.get("event")
        if event == "started":
            self.command_pid = _opt_int(msg.get("pid"))
            self._status_started = _opt_float(msg.get("started"), self._status_started)
            self._started.set()
        elif event == "exited":
            err = msg.get("error")
            self._reusable = msg.get("reuse") is True
            return ExitInfo(
                returncode=_opt_int(msg.get("returncode")),
                signal=_opt_int(msg.get("signal")),
                timed_out=bool(msg.get("timed_out")),
                killed_by=str(msg["killed_by"]) if msg.get("killed_by") else None,
                error=str(err) if err is not None else None,
                started=_opt_float(msg.get("started"), self._status_started),
                ended=_opt_float(msg.get("ended"), time.time()),
                not_started=bool(msg.get("not_started")),
            ), False
        return None, False

    def _ended_as(self, info: ExitInfo | None) -> tuple[ExitInfo, bool]:
        """The end to tell, and whether the supervisor reported it: a shim that died without reporting leaves nothing
        of its group alive (SIGKILL) and a run ended as "supervisor died"."""
        if info is not None:
            return info, True
        self._signal_group(signal.SIGKILL)
        self._end_inheritors()
        return ExitInfo(None, None, False, None, "supervisor died", self._status_started, time.time()), False

    def _end_inheritors(self, wait: float = INHERITOR_WAIT) -> None:
        """The supervisor died without reporting (SIGKILLed with its group: by a person, an OOM kill, its command's
        ``kill -9 0``), and with it went its watch, as the run's subreaper, over descendants that left the group
        (``setsid``). Any other process holding a descriptor the run inherited is one of them: an ``flock`` through
        the file store's lease (shared with this process until the end is told), the PostgreSQL store's session
        socket, or, where the run inherits none, its tie (a pipe's write end this process does not keep: see
        :func:`_tie`). Each is SIGKILLed and waited for (up to ``wait`` s), so that nothing of the run is alive when
        its end is told and its task can be claimed again, whatever the store. One that closed its descriptors is not
        found this way (nor by anything short of a cgroup). Rare, and done where the end is read (a daemon's loop):
        one look through ``/proc``, a few milliseconds."""
        from agentd.hostinfo import flock_holders, open_holders

        me = os.getpid()
        found: dict[int, tuple[int, int]] = {}  # pid -> the (device, inode) it holds
        if self._tie is not None:
            for pid in open_holders(*self._tie):
                if pid != me:
                    found.setdefault(pid, self._tie)
        for dev, ino, regular in self._inherited:  # (as they were at the launch: their numbers may be reused since)
            # A file (the file store's lease) by its lock: a peer may have it open to read it. A socket (the
            # PostgreSQL store's session, which the store may since have replaced by another) or a pipe only by
            # holding it: no one else can open it.
            for pid in (flock_holders if regular else open_holders)(dev, ino):
                if pid != me:
                    found.setdefault(pid, (dev, ino))
        ended = [pid for pid, (dev, ino) in sorted(found.items()) if _kill_and_wait(pid, dev, ino, wait)]
        if ended:
            log.warning(
                "task %d: its supervisor died; SIGKILLed %d process(es) of its run that had escaped its group: %s",
                self.pid,
                len(ended),
                ", ".join(map(str, ended)),
            )

    def _finish(self, info: ExitInfo, reported: bool) -> None:
        self._close_streams()
        if reported:
            # The end is told as soon as the supervisor reported it, not once it has exited and been reaped: it
            # reports only after the command's tree is gone, so the daemon may record the outcome and release the
            # lease while the supervisor exits (an exit it has nothing left to do for; it is reaped below).
            self._tell(info)
            # Held until the owner's go (or REAP_HOLD): the supervisor exits while the daemon records its run, and its
            # reap (a wake-up of this thread, a message to the zygote) would take the interpreter from that pass.
            self._reap_go.wait(REAP_HOLD)
        self._reap_then_done(info, not reported)

    def _close_streams(self) -> None:
        with self._ctl_lock:
            for stream in (self._popen.stdin, self._popen.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def _reap(self, *, wait: bool) -> bool:
        """Reap the supervisor (SIGKILL to its group if it has not exited REAP_TIMEOUT after reporting); with
        ``wait=False`` only if it has exited already (False: it has not)."""
        with self._reap_lock:
            if self._reaped:
                return True
            # A supervisor that waits for another task goes back to its zygote, but only on the owner's go: its run
            # recorded and its lease released, no record left that names its process group for this task.
            if self._reusable and self._owner_go and isinstance(self._popen, ForkedSupervisor) and self._popen.reuse():
                self._reaped = True
                return True
            try:
                self._popen.wait(REAP_TIMEOUT if wait else 0)
            except subprocess.TimeoutExpired:
                if not wait:
                    return False
                log.warning("task %d: supervisor did not exit after reporting, SIGKILLing", self.pid)
                kill_group(self.pgid, signal.SIGKILL)
                self._popen.wait()
            self._reaped = True
            return True

    def _reap_then_done(self, info: ExitInfo, tell: bool) -> None:
        self._reap(wait=True)
        self._done_with(info)
        if tell:
            self._tell(info)

    def _reap_later(self, info: ExitInfo, *, tell: bool) -> None:
        """:meth:`_reap_then_done` in a thread of its own (a supervisor still exiting: its reap may wait)."""
        threading.Thread(target=self._reap_then_done, args=(info, tell), name="agentd-reap", daemon=True).start()

    def _done_with(self, info: ExitInfo) -> None:
        self._info = info
        self._started.set()
        self._done.set()

    # -- pumped status (see StatusPump) -----------------------------------------------------------------------------
    def status_fileno(self) -> int:
        """The descriptor its status comes on (readable: :meth:`pump` has something to read)."""
        stdout = self._popen.stdout
        assert stdout is not None
        return stdout.fileno()

    def pump(self) -> bool:
        """Read what its supervisor reported, without blocking, on the owner's thread; True once its status is over
        (the end told to ``on_exit``, or the supervisor found dead without a report). The supervisor is reaped at
        :meth:`let_reap` (a dead one's end is told once it is)."""
        info: ExitInfo | None = None
        over = False
        try:
            while not over:
                chunk = os.read(self.status_fileno(), 65536)
                if not chunk:
                    over = True  # EOF: the shim is gone
                    break
                pending = self._pending + chunk
                while len(pending) >= 4:
                    size = int.from_bytes(pending[:4], "big")
                    if len(pending) < 4 + size:
                        break
                    info, bad = self._on_frame(pending[4 : 4 + size]) if size else (None, True)
                    pending = pending[4 + size :]
                    if info is not None or bad:
                        over = True
                        break
                self._pending = pending
        except BlockingIOError:
            return False
        except Exception:  # (a read that failed: as a reader thread's, the end of the reading)
            log.exception("task %d: status reading failed", self.pid)
        self._pending = b""
        info, reported = self._ended_as(info)
        self._close_streams()
        if not reported:  # (reaped first, then told, by a thread: the supervisor may be a moment from gone)
            self._reap_later(info, tell=True)
            return True
        self._reported = info
        self._tell(info)
        if self._reap_go.is_set():
            self._let_reap()  # (not the owner's go: one given at the launch, hold_reap=False)
        return True

    def _tell(self, info: ExitInfo) -> None:
        if self._on_exit is not None:
            try:
                self._on_exit(self, info)
            except Exception:
                log.exception("task %d: on_exit callback failed", self.pid)


class _Readers:
    """The threads that read the supervisors' status pipes, one per running task (a read blocks until the
    supervisor reports). A thread whose task ended waits for the next task's instead of exiting: starting a thread
    makes ``launch`` wait until it runs (~0.2 ms, several ms when the CPUs are busy), handing it a task does not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[TaskProcess] = queue.SimpleQueue()
        self.idle = 0  # threads waiting for a task

    def read(self, task: TaskProcess) -> None:
        with self._lock:
            start = self.idle == 0
            if not start:
                self.idle -= 1
        self._tasks.put(task)
        if start:
            threading.Thread(target=self._serve, name="agentd-status", daemon=True).start()

    def _serve(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task._read_status()
            except Exception:  # (it catches its own errors: never let one end the thread uncounted)
                log.exception("task %d: status reader failed", task.pid)
            with self._lock:
                self.idle += 1


_READERS = _Readers()


class StatusPump:
    """Reads the status of tasks launched with ``read=False`` on its owner's thread, in the poll that thread sleeps in
    (a daemon's loop: :meth:`wait` instead of its wake-up's): no reader thread is woken at a task's start, nor at its
    end, where the report and the owner's wake-up were two hand-overs between threads, each a wait for the
    interpreter. A supervisor that reported is reaped at :meth:`TaskProcess.let_reap`, or :data:`REAP_HOLD` after its
    report when the owner never gives that go. For one thread: the owner's."""

    def __init__(self) -> None:
        self._tasks: dict[int, TaskProcess] = {}  # status descriptor: its task
        self._held: dict[TaskProcess, float] = {}  # reported, not reaped yet: when to reap it anyway (monotonic)

    def add(self, task: TaskProcess) -> None:
        """Read *task*'s status from now on (instead of :func:`read_status`; once for each task)."""
        fd = task.status_fileno()
        os.set_blocking(fd, False)
        self._tasks[fd] = task
        if task.pump():  # (what it reported already)
            self._over(fd, task)

    def wait(self, wake: Any, timeout: float | None) -> bool:
        """Sleep until *wake* (an :class:`agentd.wakeup.WakeUp`) is set or *timeout* s passed (None: no limit),
        reading the status that comes meanwhile (an end read sets *wake* through its task's ``on_exit``); whether
        *wake* is set."""
        if self._held:
            left = max(0.0, min(self._held.values()) - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        woke = self._read_ready(None if timeout is None else math.ceil(max(0.0, timeout) * 1000), wake.fileno())
        self._let_held()
        return woke or wake.is_set()

    def pump_ready(self) -> None:
        """Read, without sleeping, whatever status has come (before the owner collects the ends)."""
        if self._tasks:
            self._read_ready(0)

    def _read_ready(self, milliseconds: int | None, wake_fd: int = -1) -> bool:
        """Poll the tasks' status descriptors (and ``wake_fd``, when given) for up to ``milliseconds`` (None: no
        limit) and read what came; whether ``wake_fd`` polled readable."""
        poller = select.poll()
        if wake_fd >= 0:
            poller.register(wake_fd, select.POLLIN)
        for fd in self._tasks:
            poller.register(fd, select.POLLIN)
        woke = False
        for fd, _events in poller.poll(milliseconds):
            if fd == wake_fd:
                woke = True
                continue
            task = self._tasks.get(fd)
            if task is not None and task.pump():
                self._over(fd, task)
        return woke

    def _over(self, fd: int, task: TaskProcess) -> None:
        del self._tasks[fd]
        if task._reported is not None:  # (told, its reap not let yet)
            self._held[task] = time.monotonic() + REAP_HOLD

    def _let_held(self) -> None:
        if not self._held:
            return
        now = time.monotonic()
        for task, until in list(self._held.items()):
            if task._reported is None:  # (let reap by its owner)
                del self._held[task]
            elif now >= until:
                del self._held[task]
                task._let_reap()  # (not the owner's go: the supervisor is not reused)


_environ: tuple[dict[bytes, bytes], dict[str, str]] | None = None  # os.environ's bytes and their decoding, last seen


def _environment() -> dict[str, str]:
    """A copy of ``os.environ``, decoded again only when it changed (``dict(os.environ)`` decodes every variable:
    about 0.1 ms a task; comparing its bytes with those last decoded costs a microsecond)."""
    global _environ
    raw = getattr(os.environ, "_data", None)  # (CPython's bytes behind os.environ)
    seen = _environ
    if seen is not None and raw is not None and seen[0] == raw:
        return dict(seen[1])
    env = dict(os.environ)
    if isinstance(raw, dict):
        _environ = (dict(raw), dict(env))
    return env


def _boot_since(since: float | None) -> float:
    return boottime() if since is None else float(since)


@functools.cache
def shim_code() -> bytes:
    """The shim's code as the frame :data:`SHIM_BOOT` reads, once per process (without -O, as ``python -I -S`` runs).

    Read from ``_shim.py``'s bytecode cache as an import would (checked against the source, written when missing
    or stale and bytecode may be written): compiling the 800 lines costs ~16 ms of CPU at every daemon's first task,
    unmarshalling the cached code ~0.5 ms."""
    if sys.flags.optimize == 0:
        from importlib.machinery import SourceFileLoader

        try:
            cached = SourceFileLoader("agentd.run._shim", str(SHIM_PATH)).get_code("agentd.run._shim")
        except (OSError, ImportError, SyntaxError, ValueError, EOFError):
            cached = None
        if cached is not None:
            code = marshal.dumps(cached)
            return len(code).to_bytes(4, "big") + code
    code = marshal.dumps(compile(SHIM_PATH.read_bytes(), str(SHIM_PATH), "exec", dont_inherit=True, optimize=0))
    return len(code).to_bytes(4, "big") + code


def launch(
    spec: LaunchSpec,
    on_exit: Callable[[TaskProcess, ExitInfo], None] | None = None,
    *,
    zygote: Zygote | None = None,
    replenish: bool = True,
    read: bool = True,
    hold_reap: bool = False,
) -> TaskProcess:
    """Start *spec* under a shim; *on_exit* is called once, from a reader thread, at the end: as soon as the shim
    reported it (its command's tree gone; the shim itself may still be exiting), or when the shim died without a
    report. :meth:`TaskProcess.wait` returns once the shim has also been reaped.

    The shim is forked by *zygote* (default: this process's, :func:`agentd.run.zygote.default_zygote`), or started
    as a fresh interpreter when there is no working zygote. ``replenish=False``: the next task's spare is not asked
    for yet (a caller starting several tasks at once asks once for all, :meth:`Zygote.replenish`). ``read=False``:
    no thread reads its status yet (handing it one wakes that thread): the caller must call :func:`read_status` for
    it, whatever happens, or its end is never told; the supervisor's reports wait in its pipe meanwhile.
    ``hold_reap=True``: once the supervisor reported the end, its reap waits for :meth:`TaskProcess.let_reap` (at most
    :data:`REAP_HOLD`), so that the thread reading its status takes nothing from the owner's handling of the end
    (until the reap, the supervisor's pid, its process group's id, cannot be reused: the group may still be
    signalled)."""
    argv = [str(a) for a in spec.argv]
    if not argv:
        raise ValueError("empty argv")
    keep_fds = [int(fd) for fd in spec.keep_fds]
    if any(fd < 3 for fd in keep_fds):
        raise ValueError(f"keep_fds must be >= 3, got {keep_fds}")
    tie = None if keep_fds else _tie()  # (a lease's descriptor is the run's tie where the store has one)
    try:
        kept = keep_fds if tie is None else [*keep_fds, tie[0]]
        return _launch(spec, argv, kept, tie, on_exit, zygote, replenish, read, hold_reap)
    finally:
        if tie is not None:
            os.close(tie[0])


def _tie() -> tuple[int, tuple[int, int]] | None:
    """A run's tie, for a run that inherits no descriptor of its own (a lease the store keeps no descriptor for, a
    command run without a store): the write end of a pipe whose read end is closed at once (nothing is ever written
    or read), and its (device, inode). Every process of the run inherits it, as it would a lease's descriptor, so the
    processes that hold it are the run's, found by it once the supervisor is gone (see
    :meth:`TaskProcess._end_inheritors`). A run with a lease's descriptor needs none: that descriptor finds them (a
    tie there cost 1-2 % of a 4-way drain of 200 × ``true``). None when no descriptor is to be had."""
    try:
        read, write = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return None
    os.close(read)
    info = os.fstat(write)
    return write, (info.st_dev, info.st_ino)


def _launch(
    spec: LaunchSpec,
    argv: list[str],
    keep_fds: list[int],
    tie: tuple[int, tuple[int, int]] | None,
    on_exit: Callable[[TaskProcess, ExitInfo], None] | None,
    zygote: Zygote | None,
    replenish: bool,
    read: bool,
    hold_reap: bool,
) -> TaskProcess:
    if spec.timeout is not None and spec.timeout <= 0:
        raise ValueError(f"timeout must be positive or None, got {spec.timeout}")
    if spec.kill_after < 0:
        raise ValueError(f"kill_after must be >= 0, got {spec.kill_after}")
    if spec.fence_after is not None and spec.fence_after <= 0:
        raise ValueError(f"fence_after must be positive or None, got {spec.fence_after}")
    env = _environment()
    env.update(spec.env)
    message = marshal.dumps(
        {
            "argv": argv,
            "cwd": os.fspath(spec.cwd),
            "env": env,
            "log": os.path.abspath(spec.log_path),
            "timeout": spec.timeout,
            "kill_after": spec.kill_after,
            "keep_fds": keep_fds,
            "fence": None if spec.fence_after is None else (_boot_since(spec.fence_from), float(spec.fence_after)),
            "report_start": spec.report_start,
        }
    )
    frame: bytes | None = len(message).to_bytes(4, "big") + message  # the shim's protocol: see _shim.py
    launched = time.time()
    zygote = zygote if zygote is not None else default_zygote()
    forked = None if zygote.broken else _fork(zygote, keep_fds, message)
    if forked is not None:
        task = TaskProcess(forked, spec, on_exit, launched, hold_reap)
        task._tie = tie[1] if tie is not None else None
        if forked.spec_sent:
            frame = None  # it came with the descriptors
    else:
        frame = shim_code() + (frame or b"")  # a fresh interpreter: its code first (see SHIM_BOOT)
        popen = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", SHIM_BOOT, "agentd-shim"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            pass_fds=keep_fds,
            close_fds=True,
        )
        task = TaskProcess(popen, spec, on_exit, launched, hold_reap)
        task._tie = tie[1] if tie is not None else None
    if frame is not None and not task._send(frame):
        log.warning("task %d: supervisor died before receiving its spec", task.pid)
    if read:
        _READERS.read(task)
    if forked is not None and replenish:
        zygote.replenish()
    return task


def _identities(fds: Sequence[int]) -> list[tuple[int, int, bool]]:
    """(device, inode, whether a regular file) of each descriptor: what it is, however it is numbered later."""
    found = []
    for fd in fds:
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            found.append((info.st_dev, info.st_ino, stat.S_ISREG(info.st_mode)))
    return found


def _kill_and_wait(pid: int, dev: int, ino: int, wait: float) -> bool:
    """SIGKILL ``pid`` if (through a pidfd, so that a reused pid is never hit) it still has the file (``dev``,
    ``ino``) open, and wait up to ``wait`` s for it to end. Whether it was killed."""
    from agentd.hostinfo import holds

    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return False
    try:
        if not holds(pid, dev, ino):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        ended = select.poll()  # (not select(): a daemon's descriptors may be numbered past FD_SETSIZE)
        ended.register(pidfd, select.POLLIN)  # (readable once it has ended)
        ended.poll(wait * 1000)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def read_status(task: TaskProcess) -> None:
    """Have a thread read the status of a task launched with ``read=False`` (once for each such task)."""
    _READERS.read(task)


def _fork(zygote: Zygote, keep_fds: Sequence[int], message: bytes) -> ForkedSupervisor | None:
    """A supervisor forked by the zygote and handed its task (with the spec *message* when it fits the hand-over: see
    :attr:`ForkedSupervisor.spec_sent`), or None when there is no working zygote (the caller starts one directly).
    OSError: the fork failed for want of resources (as starting one directly would)."""
    for _attempt in range(2):  # the zygote died since the last task: a fresh one
        control_r, control_w, status_r, status_w = pipes()
        try:
            handed = zygote.fork(control_r, status_w, keep_fds, message)
        except ZygoteGone:
            # A spare it may have forked before dying reads EOF on its channel instead of a task: it starts nothing.
            close_quietly(control_r, control_w, status_r, status_w)
            continue
        except BaseException:
            close_quietly(control_r, control_w, status_r, status_w)
            raise
        close_quietly(control_r, status_w)  # the supervisor's ends: only it holds them now
        try:
            if handed.spec_sent:
                os.set_blocking(control_w, False)  # only control lines go down it (see TaskProcess._send)
            stdin, stdout = os.fdopen(control_w, "wb"), os.fdopen(status_r, "rb")
            return ForkedSupervisor(
                zygote,
                handed.pid,
                handed.generation,
                handed.pidfd,
                stdin,
                stdout,
                spec_sent=handed.spec_sent,
                start=handed.start,
                channel=handed.channel,
            )
        except BaseException:
            handed.channel.close()
            close_quietly(control_w, status_r, handed.pidfd)  # EOF: it exits without starting anything
            zygote.reap(handed.pid, handed.generation)
            raise
    zygote.broken = True
    log.warning("the supervisor zygote died twice in a row: starting each task's supervisor directly from now on")
    return None
