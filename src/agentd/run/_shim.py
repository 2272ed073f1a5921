"""agentd task supervisor ("shim"): one tiny process per task.  STDLIB ONLY.

This file is run as a program, never imported by the daemon.  The daemon compiles it once and sends the code as
the first frame on the shim's stdin (``runner.SHIM_BOOT`` reads it and runs it as ``__main__``)::

    [sys.executable, "-I", "-S", "-c", SHIM_BOOT, "agentd-shim"]   # start_new_session=True

(``python -I -S _shim.py`` runs it too, at the cost of compiling it: a script's bytecode is never cached).

Usually it is not started so: the daemon starts that interpreter once, as the supervisor "zygote" (``agentd-zygote
FD``, :func:`zygote`), and each task's shim is a fork of it, forked ahead of the task as a spare (:func:`_spare`;
the daemon's side is ``agentd.run.zygote``).  Either way the shim runs :func:`main` with the same pipes on its stdin
and stdout.

The shim is a session and process-group leader (pgid == shim pid) and the command it starts
shares that process group.  It must not import anything from agentd (``-I -S``: no site, no cwd).

The task's process tree ends with the task.  The shim makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so a descendant that escapes (``setsid cmd &``, a double fork) is re-parented
to the shim, not to init, when its parent exits.  The tree is every process whose parent chain leads to
the shim, or that is in a process group or session one of them leads (found in /proc).  It is stopped
as a whole on every end: the command's exit with processes left behind, the timeout, TERM and KILL from
the daemon, and EOF on the control pipe (the daemon died).  Each process is signalled through a pidfd
after re-checking its start time (immune to pid reuse), again until none is left (a process forking at
that moment is caught too).  The shim reaps every child, orphans included.

Self-fencing.  The spec may carry ``fence: [since, after]``: the command's tree must be gone once ``after`` seconds
passed without a lease renewal, counted from ``since`` and then from each ``BEAT <t>`` line the daemon sends after a
successful renewal (``since`` and ``t`` are ``CLOCK_BOOTTIME`` readings the daemon took *before* the renewal it
reports, so a beat delayed on its way -- a daemon stopped between renewing and telling -- never buys time the lease
does not have).  Past the deadline the shim kills the whole tree (the path of ``KILL``), reports ``killed_by: "fence"``
and exits: the daemon (stopped, hung, partitioned from the store) may no longer hold the lease, and a peer may take
the task over once ``lease_ttl`` has passed, ``fence_margin`` seconds later.  The deadline is kept on
``CLOCK_BOOTTIME``, which goes on counting through a suspend (``CLOCK_MONOTONIC`` does not, and a peer's clock does);
``select`` sleeps on the monotonic clock, so while a fence is pending no sleep is longer than ``FENCE_RECHECK``.
A fence is final: a beat that comes later does not revive the run.

Protocol (frames are a 4-byte big-endian length and a ``marshal`` payload: the daemon and the shim are
always the same interpreter, and ``marshal`` is built in, where ``json`` would cost its import on every task)
--------
stdin  (control, the daemon holds the only write end):
    frame 1: spec {"argv", "cwd", "env", "log", "timeout", "kill_after", "keep_fds", "fence", "report_start"}
            (not sent here to a forked spare that got it with its descriptors: see _spare)
    later:  lines ``TERM`` (SIGTERM the tree, SIGKILL after kill_after), ``KILL`` (SIGKILL now) or ``BEAT <t>``
            (the lease was renewed: the fence deadline moves to ``t + after``)
    EOF:    the daemon died -> SIGTERM the tree, wait <= 1 s for the command, SIGKILL the whole tree,
            wait (<= 2 s) until it is gone, so the lease's lock is free, then exit 137.
stdout (status frames):
    {"event": "started", "pid", "pgid", "started", "subreaper"}  (unless the spec's report_start is false)
    {"event": "exited", "returncode", "signal", "timed_out", "killed_by", "error", "not_started", "started", "ended",
     "reuse"}  (reuse: a forked supervisor that will wait on its channel for another task: see _spare)

Start-up cost matters (one shim per task run): only built-in modules are imported (no ``subprocess``,
``json``, ``shlex``, ``contextlib``, ``ctypes``, or the ``signal`` wrapper and its ``enum``); the command
is started with ``os.posix_spawn``; ``prctl`` is called through the built-in ``_ctypes``.

A command killed by a signal is reported as ``returncode: null, signal: N``.  A command that
cannot be started is reported with returncode 127 (not found) or 126 (anything else, including
an unusable log file) and a one-line ``error``; ``not_started`` is true when the cause was agentd's
own lack of resources (EMFILE, ENFILE, EAGAIN, ENOMEM), not the command.
"""

from __future__ import annotations

import errno
import marshal
import os
import select
import sys
import time

TYPE_CHECKING = False  # no `typing` import at run time: it costs ~4 ms of start-up
if TYPE_CHECKING:
    import signal
    from typing import Any, NoReturn
else:
    try:
        import _signal as signal  # the C module: `signal` adds IntEnum wrappers, and `enum` costs ~4 ms of start-up
    except ImportError:  # pragma: no cover - every CPython has it
        import signal

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM)  # agentd's failure, not the command's
POLL_INTERVAL = 0.02  # s, for waits that have no fd to select on
EOF_GRACE = 1.0  # s, between SIGTERM and SIGKILL once the daemon is gone
GIVE_UP_AFTER_SIGKILL = 2.0  # s, stop waiting for unkillable (D-state) leftovers
FENCE_RECHECK = 1.0  # s, the longest sleep while a fence is pending (select's timeout stops during a suspend)
_HAVE_PIDFD = hasattr(os, "pidfd_open")
_HAVE_PIDFD_SIGNAL = hasattr(signal, "pidfd_send_signal")
_HAVE_PROC = os.path.exists("/proc/self/stat")

_pending_signals: list[int] = []
_SUBREAPER = False  # set in main(): is the shim a child subreaper?
# Tasks a forked supervisor runs at most before it exits (see _spare); AGENTD_SUPERVISOR_REUSE=0: one each, as a fresh
# fork per task did before (read by the zygote as it starts).
REUSE_MAX = 1 if os.environ.get("AGENTD_SUPERVISOR_REUSE", "1").strip() == "0" else 1000
_REUSE: list[Any] = [False, None]  # [may this supervisor serve another task after this one, the folder to go back to]


def _on_signal(signum: int, _frame: object) -> None:
    _pending_signals.append(signum)


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def _boot() -> float:
    """``CLOCK_BOOTTIME`` (it counts a suspend), ``CLOCK_MONOTONIC`` where there is none: agentd.core.clock.boottime."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


def _iso_now() -> str:
    """UTC ISO-8601 time with milliseconds (no `datetime` import: start-up cost)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}+00:00"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _proc_stat(pid: int) -> tuple[bytes, int, int, int, int] | None:
    """(state, ppid, pgrp, session, start time) of *pid* from /proc, or None if it is gone."""
    try:  # (os.open and os.read: no file objects, whose Python code a forked supervisor would copy pages for)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)  # (one read: the file is far shorter)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(b")") + 2 :].split(None, 20)  # (the 21 fields up to the start time, not all 50)
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _tree(root: int) -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process of *root*'s tree, *root* excluded: {pid: (start time, pgrp)}, parents first
    (:func:`_members` on a scan of /proc)."""
    procs: dict[int, tuple[bytes, int, int, int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None:
                procs[int(name)] = st
    return _members(procs, root)


def _members(procs: dict[int, tuple[bytes, int, int, int, int]], root: int) -> dict[int, tuple[int, int]]:
    """*root*'s tree in *procs* ({pid: (state, ppid, pgrp, session, start time)}), *root* and zombies excluded:
    {pid: (start time, pgrp)}, each parent before its children.

    A process belongs to the tree when its parent does (the shim is a child subreaper, so orphans of the tree,
    escaped ones included, become its children), or when it is in a process group or session a member leads (the
    kernel never reuses a pid still in use as a group or session id, so these are the tree's own).

    Parents come first because a shell signalled after its child could, woken by the child's death, run its next
    command before its own signal arrives; signalled first, it cannot (a fatal signal ends a process at once)."""
    members = {root}
    grown = True
    while grown:
        grown = False
        for pid, (_state, ppid, pgrp, sid, _start) in procs.items():
            if pid not in members and (ppid in members or pgrp in members or sid in members):
                members.add(pid)
                grown = True
    children: dict[int, list[int]] = {}
    for pid in members:
        if pid != root:
            children.setdefault(procs[pid][1], []).append(pid)
    ordered = [root]
    for parent in ordered:  # grows while it is walked: breadth first
        ordered.extend(sorted(children.pop(parent, ())))
    walked = set(ordered)
    ordered.extend(sorted(pid for pid in members if pid not in walked))  # linked by group or session only
    return {pid: (procs[pid][4], procs[pid][2]) for pid in ordered if pid != root and procs[pid][0] not in (b"Z", b"X")}


def _signal_member(pid: int, start: int, sig: int) -> None:
    """Signal *pid* only if it is still the process seen (same start time; through a pidfd: immune to pid reuse)."""
    if _HAVE_PIDFD and _HAVE_PIDFD_SIGNAL:
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:
            st = _proc_stat(pid)
            if st is not None and st[4] == start:
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)
        return
    st = _proc_stat(pid)
    if st is not None and st[4] == start:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


_PRCTL: list[tuple[Any, int]] = []  # (_ctypes.call_function, the C function prctl's address), once looked up (the
# zygote does it before forking)


def _prctl() -> tuple[Any, int] | None:
    """The address of the C function ``prctl``, through the built-in ``_ctypes`` (``ctypes`` itself costs several
    ms); looked up once per process, and by the zygote before it forks, so that a forked supervisor pays neither the
    loading of ``_ctypes`` and libffi nor the lookup. None where there is none."""
    if not _PRCTL:
        if not sys.platform.startswith("linux"):
            return None
        try:
            import _ctypes

            address = _ctypes.dlsym(_ctypes.dlopen(None, 2), "prctl")  # type: ignore[arg-type]  # None: the program; 2: RTLD_NOW
            _PRCTL.append((_ctypes.call_function, address))
        except (ImportError, OSError, AttributeError, TypeError, ValueError):
            return None
    return _PRCTL[0]


# The scheduling policy a forked supervisor's command gets back (see _yield_on_wakeup); empty: the command inherits its
# supervisor's, which is the daemon's.
_COMMAND_POLICY: list[int] = []


def _yield_on_wakeup() -> None:
    """The zygote, and so every supervisor it forks, in ``SCHED_BATCH``; the command each supervisor starts back in
    ``SCHED_OTHER`` (:meth:`Shim.spawn`).

    Under ``SCHED_OTHER`` a process that wakes up preempts the one running on its core when it has slept longer: a
    spare handed its task, or the zygote asked for spares, took the core from the daemon in the middle of its pass
    (the daemon's hand-over of a task waited 1-2 ms for one start in five, on 2 cores). A ``SCHED_BATCH`` process
    wakes without preempting; it is otherwise scheduled as before (same weight, same nice value), and a process may
    switch between the two policies without privileges. Only from ``SCHED_OTHER``: a daemon started in another policy
    (``chrt --batch``, ``--idle``, a real-time one) keeps it for all its processes, commands included. Where the switch
    is refused (a seccomp filter), nothing changes."""
    if not hasattr(os, "SCHED_BATCH"):
        return
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError:
        return
    _COMMAND_POLICY[:] = [os.SCHED_OTHER]


def _set_child_subreaper() -> bool:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants become the shim's children, not init's."""
    prctl = _prctl()
    if prctl is None:
        return False
    call, address = prctl
    try:
        return bool(call(address, (36, 1)) == 0)  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError, TypeError, ValueError):
        return False


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def _quote(arg: str) -> str:
    """shlex.quote without importing shlex (and its re)."""
    if arg and all(c in _SAFE for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _which(name: str, env: dict[str, str] | None) -> str:
    """The executable ``name`` names, looked up on the PATH of the command's environment (as subprocess does)."""
    if os.sep in name:
        return name
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    for folder in path.split(os.pathsep):  # (os.path.isfile's and join's work, without their Python code)
        candidate = folder + name if folder.endswith(os.sep) else (folder or os.curdir) + os.sep + name
        try:
            mode = os.stat(candidate).st_mode
        except (OSError, ValueError):
            continue
        if mode & 0o170000 == 0o100000 and os.access(candidate, os.X_OK):  # a regular file (S_ISREG), executable
            return candidate
    raise FileNotFoundError(2, "No such file or directory", name)


# Read once, when the code is loaded (by the zygote, or a supervisor started alone): a forked supervisor's environment
# is the zygote's, and a look-up in os.environ runs os's and _collections_abc's Python code (pages it would copy).
_CRASH_AT = os.environ.get("AGENTD_CRASH_AT")


def _crash_point(name: str) -> None:
    """A crash point of the supervisor's (agentd.faults.SUPERVISOR_POINTS; stdlib only): ``AGENTD_CRASH_AT=name``
    exits 86 here, ``name:kill`` SIGKILLs the process, ``name:stop`` SIGSTOPs it (it goes on after SIGCONT)."""
    spec = _CRASH_AT
    if not spec or spec.partition(":")[0] != name:
        return
    action = spec.partition(":")[2]
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    os._exit(86)


def _frame(obj: dict[str, Any]) -> bytes:
    data = marshal.dumps(obj)
    return len(data).to_bytes(4, "big") + data


class Shim:
    def __init__(self, spec: dict[str, Any], ctrl_rest: bytes) -> None:
        self.argv = [str(a) for a in spec["argv"]]
        cwd = spec.get("cwd")
        self.cwd: str | None = str(cwd) if cwd is not None else None
        env = spec.get("env")
        self.env: dict[str, str] | None = {str(k): str(v) for k, v in env.items()} if env is not None else None
        self.log_path = str(spec["log"])
        timeout = spec.get("timeout")
        self.timeout: float | None = float(timeout) if timeout is not None else None
        self.kill_after = max(0.0, float(spec.get("kill_after", 5.0)))
        self.keep_fds = [int(fd) for fd in spec.get("keep_fds", ())]
        fence = spec.get("fence")
        self.fence_after: float | None = float(fence[1]) if fence is not None else None
        self.fence_at: float | None = float(fence[0]) + float(fence[1]) if fence is not None else None  # boot clock
        self.fenced = False
        self.report_start = bool(spec.get("report_start", True))

        self.mypid = os.getpid()
        self.pgid = os.getpgrp()
        self.ctrl_buf = ctrl_rest
        self.ctrl_open = True
        self.log_fd = -1
        self.pid: int | None = None  # the command's
        self.pidfd: int | None = None
        self.status: int | None = None  # Popen returncode once reaped
        self.started = 0.0
        self.ended = 0.0
        self.timed_out = False
        self.killed_by: str | None = None
        self.term_sent = False
        self.kill_deadline: float | None = None  # monotonic: escalate to SIGKILL
        self.sigkill_sent: float | None = None  # monotonic time of the first SIGKILL
        self.eof_deadline: float | None = None  # monotonic: daemon gone, kill everything
        self.not_started = False  # out of descriptors, processes or memory: agentd's failure, not the command's
        self.childless = False  # the last reap found no child at all (see leftovers)

    # -- output -----------------------------------------------------------------------------
    @staticmethod
    def emit(obj: dict[str, Any]) -> None:
        data = _frame(obj)
        try:
            while data:
                data = data[os.write(1, data) :]
        except OSError:
            pass  # the daemon is gone; EOF on the control pipe will tell us

    def log(self, text: str) -> None:
        if self.log_fd < 0:
            return
        try:
            os.write(self.log_fd, f"agentd: {_iso_now()} {text}\n".encode(errors="replace"))
        except OSError:
            pass

    # -- process control -----------------------------------------------------------------------
    def killpg(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except OSError:
            pass

    def signal_tree(self, sig: int, outside_group_only: bool = False) -> None:
        """Send *sig* to every process of the task's tree (the shim excluded); ``outside_group_only``: to those
        that left the shim's process group (setsid, setpgid), when the group itself already got it."""
        if not _HAVE_PROC:
            if not outside_group_only:
                self.killpg(sig)
            return
        for pid, (start, pgrp) in _tree(self.mypid).items():
            if not (outside_group_only and pgrp == self.pgid):
                _signal_member(pid, start, sig)

    def request_term(self, cause: str, send: bool) -> None:
        """Graceful termination of the tree; escalate to SIGKILL after kill_after. ``send=False``: the group got
        SIGTERM from outside (then only the members that left the group are sent it)."""
        if self.term_sent:
            return
        self.term_sent = True
        if self.status is None and self.killed_by is None:
            self.killed_by = cause
        self.kill_deadline = time.monotonic() + self.kill_after
        self.signal_tree(signal.SIGTERM, outside_group_only=not send)

    def kill_members(self) -> None:
        """SIGKILL every process of the task's tree except the shim itself, again until none is left (a process
        forking at that moment is caught too)."""
        if self.sigkill_sent is None:
            self.sigkill_sent = time.monotonic()
        self.kill_deadline = None
        if self.status is None and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # safe: not reaped yet
            except OSError:
                pass
        if not _HAVE_PROC:
            return
        done: set[tuple[int, int]] = set()
        for _ in range(50):
            fresh = [(pid, start) for pid, (start, _pgrp) in _tree(self.mypid).items() if (pid, start) not in done]
            if not fresh:
                break
            for pid, start in fresh:
                _signal_member(pid, start, signal.SIGKILL)
            done.update(fresh)

    def die(self) -> NoReturn:
        """The daemon is gone: SIGKILL the whole tree and wait (bounded) until it is gone, so that the lease's
        lock is free when the shim exits; then exit."""
        self.log("control pipe closed (daemon gone): killing the task's process tree")
        self.kill_members()
        give_up = time.monotonic() + GIVE_UP_AFTER_SIGKILL
        while True:
            self.reap()
            left = self.leftovers()
            if not left or time.monotonic() >= give_up:
                break
            for pid, start in left.items():
                _signal_member(pid, start, signal.SIGKILL)
            time.sleep(POLL_INTERVAL)
        self.killpg(signal.SIGKILL)  # the shim too (and whatever is left of its group without /proc)
        os._exit(137)

    def reap(self) -> None:
        """Reap every ended child: the command (its status is kept) and orphans of the tree (subreaper)."""
        self.childless = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.childless = True
                return
            if pid == 0:
                return
            if pid == self.pid and self.status is None:
                self.status = os.waitstatus_to_exitcode(status)  # negative: killed by that signal (as Popen)
                self.ended = time.time()
                if self.pidfd is not None:
                    os.close(self.pidfd)
                    self.pidfd = None

    def leftovers(self) -> dict[int, int]:
        """{pid: start time} of the task's tree still alive.

        Nothing, without a look at every process, when the shim is a subreaper that was left without a child by its
        last reap: every descendant would be its child or a child's descendant (orphans come back to it), and only
        descendants can be in its session or process group; with no child, none can appear any more."""
        if _SUBREAPER and self.childless and self.status is not None:
            return {}
        return {pid: start for pid, (start, _pgrp) in _tree(self.mypid).items()} if _HAVE_PROC else {}

    # -- control pipe --------------------------------------------------------------------------
    def read_control(self) -> None:
        try:
            chunk = os.read(0, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.on_eof()
            return
        self.ctrl_buf += chunk
        self.handle_control_lines()

    def handle_control_lines(self) -> None:
        while b"\n" in self.ctrl_buf:
            line, self.ctrl_buf = self.ctrl_buf.split(b"\n", 1)
            cmd = line.strip().upper()
            if cmd == b"TERM":
                self.request_term("term", send=True)
            elif cmd == b"KILL":
                if self.status is None:
                    self.killed_by = "kill"
                self.kill_members()
            elif cmd.startswith(b"BEAT ") and self.fence_at is not None and not self.fenced:
                try:
                    renewed = float(cmd[5:])
                except ValueError:
                    continue
                self.fence_at = max(self.fence_at, renewed + (self.fence_after or 0.0))

    def fence_due(self) -> bool:
        """Whether the fence deadline has passed (no lease renewal for ``after`` seconds)."""
        return self.fence_at is not None and not self.fenced and _boot() >= self.fence_at

    def fence(self) -> None:
        """No lease renewal for ``after`` seconds: kill the whole tree now (its daemon may have lost the lease)."""
        self.fenced = True
        if self.status is None:
            self.killed_by = "fence"
        self.log(
            f"no lease renewal from the daemon for {self.fence_after:g} s (lease_ttl - fence_margin): killing the "
            "task's process tree before a peer may take the task over (self-fencing)"
        )
        self.kill_members()

    def on_eof(self) -> None:
        self.ctrl_open = False
        if self.eof_deadline is None:
            self.eof_deadline = time.monotonic() + EOF_GRACE
            if not self.term_sent:
                self.term_sent = True
                self.signal_tree(signal.SIGTERM)

    # -- main ------------------------------------------------------------------------------------
    def start(self) -> str | None:
        """Open the log and start the command; return an error line on failure (None and no pid: fenced)."""
        try:
            self.log_fd = _prepared_log(self.log_path) if _PREPARED else -1
            if self.log_fd < 0:
                self.make_log_folder()
                self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.not_started = exc.errno in _OUT_OF_RESOURCES
            return _one_line(f"cannot open log {self.log_path!r}: {type(exc).__name__}: {exc}")
        if self.fence_due():  # the lease may be lost already (the daemon hung before starting us): never start
            self.fenced = True
            self.log(f"no lease renewal for {self.fence_after:g} s before the command started: not starting it")
            return None
        self.log(f"exec {' '.join(_quote(a) for a in self.argv)}")
        try:
            self.pid = self.spawn()
        except (OSError, ValueError, TypeError) as exc:
            self.not_started = isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES
            error = _one_line(f"{type(exc).__name__}: {exc}")
            self.log(f"cannot start command: {error}")
            return error
        self.started = time.time()
        if _HAVE_PIDFD:
            try:
                self.pidfd = os.pidfd_open(self.pid)
            except OSError:
                self.pidfd = None
        return None

    def make_log_folder(self) -> None:
        """Make the log's folder unless it exists: one mkdir when the folder above it exists (a task's first run makes
        it, a later run finds it), else ``os.makedirs``, which makes the missing ones too (its checks cost more system
        calls and its Python code more pages copied, on every run)."""
        parent = self.log_path.rpartition("/")[0] if self.log_path.startswith("/") else ""
        if parent:
            try:
                os.mkdir(parent)
                return
            except FileExistsError:
                return  # (not a folder: opening the log fails and says so)
            except FileNotFoundError:
                pass  # a folder above it is missing too
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)

    def spawn(self) -> int:
        """Start the command in the shim's process group: stdin /dev/null, stdout and stderr to the log, the
        descriptors in keep_fds inherited (every other descriptor of the shim is close-on-exec)."""
        executable = _which(self.argv[0], self.env)
        if self.cwd is not None:
            os.chdir(self.cwd)  # the shim's own folder does not matter: the command inherits it
        for fd in self.keep_fds:
            os.set_inheritable(fd, True)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, self.log_fd, 1),
            (os.POSIX_SPAWN_DUP2, self.log_fd, 2),
        ]
        # As subprocess does: signals Python ignores for itself go back to their defaults for the command.
        defaults = [getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)]
        env = self.env if self.env is not None else dict(os.environ)
        if _COMMAND_POLICY:  # the daemon's own policy for the command (its supervisor's: see _yield_on_wakeup)
            # (never scheduler=None: CPython 3.11 takes it for a tuple and raises SystemError)
            policy = (_COMMAND_POLICY[0], os.sched_param(0))
            return os.posix_spawn(
                executable, self.argv, env, file_actions=actions, setsigdef=defaults, scheduler=policy
            )
        return os.posix_spawn(executable, self.argv, env, file_actions=actions, setsigdef=defaults)

    def run(self) -> int:
        t0 = time.time()
        reuse_allowed, _REUSE[0] = _REUSE[0], False  # (True again only at a clean end: see reusable)
        try:
            wake_r, wake_w = os.pipe()  # before the command exists: a failure here is agentd's, not the command's
        except OSError as exc:
            self.not_started = exc.errno in _OUT_OF_RESOURCES
            error: str | None = _one_line(f"cannot start the supervisor's loop: {type(exc).__name__}: {exc}")
        else:
            error = self.start()
            if _PREPARED:
                _drop_prepared()  # (what the hand-over did not use: off the task's way, its command has started)
            if error is None and self.pid is None:  # fenced before it started
                self.emit(
                    {
                        "event": "exited",
                        "returncode": None,
                        "signal": None,
                        "timed_out": False,
                        "killed_by": "fence",
                        "error": None,
                        "started": t0,
                        "ended": time.time(),
                    }
                )
                return 0
        if error is not None:
            code = 127 if error.startswith("FileNotFoundError") else 126
            self.emit(
                {
                    "event": "exited",
                    "returncode": code,
                    "signal": None,
                    "timed_out": False,
                    "killed_by": None,
                    "error": error,
                    "not_started": self.not_started,
                    "started": t0,
                    "ended": time.time(),
                }
            )
            return 0
        assert self.pid is not None
        if self.report_start:  # (a daemon does not ask: the report would wake its reader thread for nothing)
            started = {"event": "started", "pid": self.pid, "pgid": self.pgid, "started": self.started}
            self.emit({**started, "subreaper": _SUBREAPER})
        os.set_blocking(0, False)
        if _pending_signals:  # arrived before the command existed: it did not get them, pass them on
            _pending_signals.clear()
            self.request_term("term", send=True)
        self.handle_control_lines()  # anything that arrived together with the spec

        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        timeout_at = time.monotonic() + self.timeout if self.timeout is not None else None

        while True:
            while _pending_signals:  # SIGTERM/SIGINT/SIGHUP sent to the group by someone else
                _pending_signals.pop()
                self.request_term("term", send=False)
            self.reap()
            now = time.monotonic()
            if self.eof_deadline is not None and (self.status is not None or now >= self.eof_deadline):
                self.die()
            if self.status is None and timeout_at is not None and now >= timeout_at:
                timeout_at = None
                if not self.term_sent and self.sigkill_sent is None:  # else: already being stopped
                    self.timed_out = True
                    self.log(f"timeout after {self.timeout}s: terminating the task's process tree")
                    self.request_term("timeout", send=True)
            if self.fence_due():
                self.fence()
            if self.kill_deadline is not None and now >= self.kill_deadline:
                self.kill_members()
            if self.status is not None:
                members = self.leftovers()
                if not members:
                    break
                if self.sigkill_sent is not None:
                    if now - self.sigkill_sent > GIVE_UP_AFTER_SIGKILL:
                        self.log(f"giving up on unkillable processes {sorted(members)}")
                        break
                    for pid, start in members.items():
                        _signal_member(pid, start, signal.SIGKILL)
                elif not self.term_sent:
                    self.log(f"command exited; terminating the processes it left {sorted(members)}")
                    self.request_term("cleanup", send=True)

            deadlines = [d for d in (self.kill_deadline, self.eof_deadline) if d is not None]
            if timeout_at is not None and self.status is None:
                deadlines.append(timeout_at)
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            if self.fence_at is not None and not self.fenced:
                left = max(0.0, self.fence_at - _boot())
                wait = min(left, FENCE_RECHECK) if wait is None else min(wait, left, FENCE_RECHECK)
            if self.status is not None or self.pidfd is None:
                wait = POLL_INTERVAL if wait is None else min(wait, POLL_INTERVAL)
            fds = [wake_r]
            if self.ctrl_open:
                fds.append(0)
            if self.pidfd is not None:
                fds.append(self.pidfd)
            ready, _, _ = select.select(fds, [], [], wait)
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except OSError:
                    pass
            if 0 in ready:
                self.read_control()

        assert self.status is not None
        rc, sig = (self.status, None) if self.status >= 0 else (None, -self.status)
        self.log(f"exited returncode={rc} signal={sig} timed_out={self.timed_out} killed_by={self.killed_by}")
        _REUSE[0] = reuse = reuse_allowed and self.reusable()
        self.emit(
            {
                "event": "exited",
                "returncode": rc,
                "signal": sig,
                "timed_out": self.timed_out,
                "killed_by": self.killed_by,
                "error": None,
                "started": self.started,
                "ended": self.ended,
                "reuse": reuse,
            }
        )
        _crash_point("supervisor.after-report")
        return 0

    def reusable(self) -> bool:
        """May this supervisor serve another task once this one's report is sent (see :func:`_spare`)? Only after
        a run that ended by itself with nothing of its tree left: the command reaped, no child at all (a subreaper:
        every descendant would be one, orphans included), no signal sent or pending, no fence, the daemon still
        there; and back in the folder it came from."""
        if not (_SUBREAPER and self.childless and self.ctrl_open and self.pid is not None):
            return False
        if self.term_sent or self.sigkill_sent is not None or self.fenced or self.eof_deadline is not None:
            return False
        if _pending_signals or self.killed_by is not None or self.timed_out:
            return False
        if self.cwd is not None:
            try:
                os.chdir(_REUSE[1])  # (TypeError: the folder it came from is unknown)
            except (OSError, TypeError):
                return False
        return True


def _read_exactly(count: int, buf: bytes) -> tuple[bytes, bytes] | None:
    """``count`` bytes from stdin (after what is in ``buf``), and what came after them; None at EOF."""
    while len(buf) < count:
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        buf += chunk
    return buf[:count], buf[count:]


def _read_spec(given: bytes | None = None) -> tuple[dict[str, Any], bytes] | None:
    """The spec (``given``: the marshalled spec a spare was handed with its descriptors; else its frame, read from
    the control pipe) and what the pipe held after it; None at EOF."""
    if given is not None:
        body: tuple[bytes, bytes] | None = (given, b"")
    else:
        head = _read_exactly(4, b"")
        if head is None:
            return None
        body = _read_exactly(int.from_bytes(head[0], "big"), head[1])
    if body is None:
        return None
    spec = marshal.loads(body[0])  # noqa: S302 - a private pipe from the daemon, the same interpreter
    if not isinstance(spec, dict) or not spec.get("argv"):
        raise ValueError("spec must be a dict with a non-empty argv")
    return spec, body[1]


def _on_child(_signum: int, _frame: object) -> None:
    """SIGCHLD only wakes the loop (through the wake-up fd), which reaps."""


_LOADED: list[Any] = []  # [_socket, fcntl]: imported by the zygote once (a forked supervisor runs no import statement)


def _modules() -> list[Any]:
    """[_socket, fcntl], imported once per process."""
    if not _LOADED:
        import _socket
        import fcntl

        _LOADED.extend((_socket, fcntl))
    return _LOADED


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors an SCM_RIGHTS message carried (C ints, native byte order)."""
    _socket = _modules()[0]
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder, signed=True) for i in range(0, usable, 4)]
    return fds


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, max(low + 1, os.sysconf("SC_OPEN_MAX")))


_LOG_ROOT: list[str] = []  # the folder of the task logs, one folder per task (the daemon's b"P" request to the zygote)
_PREPARED: list[Any] = []  # a spare's [log root, its spare folder's name or "", its unnamed log file's fd or -1]


def _prepare() -> None:
    """Made by a spare while it waits for its task, off the task's way (creating an inode, a folder most, is a
    file system's costliest step: up to a millisecond of kernel time): a folder in the log root under a name no task
    id can have (ids never start with a dot), ``.spare-PID``, and the log file as an unnamed inode (``O_TMPFILE``)
    on the same file system. The hand-over then only renames and links them (:func:`_prepared_log`).

    Nothing here can be left half made: a SIGKILLed spare's unnamed file vanishes with it, and its empty folder, a
    name no reader of the task logs takes for a task's, is removed by ``agentd.service.logsetup.prune_task_logs``.
    A refusal (no root given, the root missing, no O_TMPFILE) only leaves that part unprepared."""
    if not _LOG_ROOT:
        return
    root = _LOG_ROOT[0]
    name = f".spare-{os.getpid()}"
    try:
        os.mkdir(f"{root}/{name}")
    except OSError:  # (EEXIST too: only a folder this spare made is ever renamed to a task's)
        name = ""
    try:
        fd = os.open(root, os.O_TMPFILE | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except (OSError, AttributeError):  # (AttributeError: a system without O_TMPFILE)
        fd = -1
    _PREPARED[:] = [root, name, fd]


def _prepared_log(path: str) -> int:
    """The log file at *path*, opened for appending, from what this spare prepared (:func:`_prepare`), or -1: the
    caller then opens it as a supervisor that prepared nothing does (its folder made if missing, the file created or
    appended to).

    Only for a log of a task's folder in the prepared root: the spare folder is renamed to the task's folder unless
    that exists with something in it (a later run; a rename is atomic: the folder is there whole or not at all, and
    an empty one is replaced by another empty one), then the unnamed file is linked there as the log. The link
    refuses to replace a file (EEXIST: a log of this run's token exists), and anything else that fails (no unnamed
    file, no /proc, EXDEV, the folder gone, ...) falls back, never half done: a folder renamed is only found there."""
    fd: int
    root, name, fd = _PREPARED
    folder, _, _file = path.rpartition("/")
    parent, _, task = folder.rpartition("/")
    if parent != root or not task or task[0] == ".":
        return -1
    if name:
        try:
            os.rename(f"{root}/{name}", folder)
            _PREPARED[1] = ""  # (it is the task's folder now)
        except OSError:
            pass  # the task's folder exists (a later run), or anything else: the spare folder is dropped after
    if fd < 0:
        return -1
    try:
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd)  # (a dir fd: linkat with AT_SYMLINK_FOLLOW, which
        # follows the magic link to the file; plain link() would not. An absolute path: the dir fd is not used.)
    except OSError:
        return -1
    _PREPARED[2] = -1
    return fd


def _drop_prepared() -> None:
    """Remove what the hand-over did not use (the spare folder: an empty folder only; close the unnamed file)."""
    root, name, fd = _PREPARED
    _PREPARED[1:] = ["", -1]
    if name:
        try:
            os.rmdir(f"{root}/{name}")
        except OSError:
            pass  # (removed meanwhile by a prune: nothing left to do)
    if fd >= 0:
        _close_quietly(fd)


def _close_quietly(*fds: int) -> None:
    """Close each descriptor, one already closed or never valid included (what is left of a task's, the zygote's)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


HAND_OVER_MAX = 64 * 1024  # bytes of a spare's hand-over message read (zygote.INLINE_SPEC_MAX: a spec fits)


def _spare(sock_fd: int, chan: Any) -> NoReturn:
    """A spare supervisor the zygote forked ahead of a task: its own session, nothing open but *chan* (its end of a
    SOCK_SEQPACKET pair whose other end the daemon holds) until the daemon hands it a task, in one message:

        b"G" + marshal((list of kept fd numbers, marshalled spec or None)),
        with SCM_RIGHTS [control read end, status write end, *kept fds]

    Then the control pipe goes on 0, the status pipe on 1, the kept descriptors at the numbers the daemon gave them,
    nothing else open but *chan*, and the shim's ``main`` runs with that spec (None: a spec too big for the message,
    which it reads from the control pipe). EOF on *chan* (the daemon is gone, or dropped it unused): it exits without
    starting anything, having removed what it prepared while it waited (:func:`_prepare`: a task's log folder and
    file, which the hand-over only renames and links).

    Reuse. A run that ended cleanly (:meth:`Shim.reusable`: its command reaped, nothing of its tree left, no signal,
    no fence) is reported with ``reuse: true``; the supervisor then closes every descriptor of that task (the pipes,
    the kept ones, the log: as its exit would), puts its signal handlers back and waits on *chan* for another task,
    exactly as a spare does. A task then costs no fork, none of the pages a fresh fork copies on its way to the
    command, and no exit. The daemon hands it another task only once it recorded the run and released its lease
    (``TaskProcess.let_reap``); else it closes *chan* and the supervisor exits. At most :data:`REUSE_MAX` tasks."""
    code = 2
    try:
        _socket, fcntl = _modules()
        os.close(sock_fd)
        _close_quietly(*_KEPT)  # (the zygote's to keep, not a spare's)
        os.setsid()
        try:
            _REUSE[1] = os.getcwd()
        except OSError:
            _REUSE[1] = None  # (its folder removed: a task with a folder of its own is its last)
        for served in range(REUSE_MAX):
            _prepare()
            data, ancillary, flags, _addr = chan.recvmsg(HAND_OVER_MAX, _socket.CMSG_SPACE(256 * 4))
            fds = _received_fds(ancillary)
            if not data:
                if _PREPARED:
                    _drop_prepared()
                os._exit(0)  # never used (again)
            if data[:1] != b"G" or flags & (_socket.MSG_CTRUNC | _socket.MSG_TRUNC):
                raise ValueError(f"bad hand-over: {data[:1]!r}, {len(data)} bytes, flags {flags:#x}")
            kept, spec = marshal.loads(data[1:])  # noqa: S302 - our own daemon
            targets = [int(fd) for fd in kept]
            if len(fds) != 2 + len(targets) or not isinstance(spec, bytes | None):
                raise ValueError(f"bad hand-over: {len(fds)} descriptors for {len(targets)} kept")
            _crash_point("supervisor.after-fds")
            base = max(2, chan.fileno(), *fds, *targets) + 1
            moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]  # out of the way of the targets
            keep = {0, 1, 2, *targets}
            if _PREPARED and _PREPARED[2] >= 0:  # the unnamed log file: out of the way of 0, 1 and the targets too
                unnamed, _PREPARED[2] = _PREPARED[2], -1
                try:
                    _PREPARED[2] = fcntl.fcntl(unnamed, fcntl.F_DUPFD_CLOEXEC, base)
                    keep.add(_PREPARED[2])
                except OSError:
                    pass  # (out of descriptors: the log is made as without it)
                os.close(unnamed)  # (before 0, 1 or a target may take its number)
            os.dup2(moved[0], 0)
            os.dup2(moved[1], 1)
            if chan.fileno() in targets:  # the channel too (a target's dup2 would close it)
                chan = _socket.socket(fileno=fcntl.fcntl(chan.detach(), fcntl.F_DUPFD_CLOEXEC, base))
            keep.add(chan.fileno())
            for fd, target in zip(moved[2:], targets, strict=True):
                os.dup2(fd, target, inheritable=False)
            _close_all_but(keep)
            _REUSE[0] = served + 1 < REUSE_MAX
            code = main(spec)
            if not _REUSE[0] or code != 0:
                break
            _between_tasks(chan.fileno())
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # the process ends here whatever happened
        try:
            os.write(2, f"agentd shim: {type(exc).__name__}: {exc}\n".encode(errors="replace"))
        except OSError:
            pass
        code = 1
    finally:
        if _PREPARED:
            _drop_prepared()
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)


def _between_tasks(chan_fd: int) -> None:
    """A reused supervisor, its task reported: as a spare again (:func:`_spare`): every descriptor of that task
    closed (those left are its stderr, its channel, and /dev/null on 0 and 1, which keeps what it opens next off
    the numbers the hand-over puts the task's pipes on), the signal handlers and the wake-up fd of :func:`main` and
    :meth:`Shim.run` undone, nothing pending."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    _pending_signals.clear()
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    os.dup2(null, 0, inheritable=False)
    os.dup2(null, 1, inheritable=False)
    _close_all_but({0, 1, 2, chan_fd})


_KEPT: list[int] = []  # descriptors the daemon asked the zygote to keep until it exits (b"K")
REQUEST_MAX = 4097  # bytes of a request read by the zygote (b"S64", b"R<pid> <pid>...": a few; b"P<path>": PATH_MAX)


def zygote(sock_fd: int) -> int:
    """The daemon's long-lived supervisor factory ("zygote"): started once per daemon with this code loaded, it forks
    spare supervisors ahead of the tasks, so a task pays neither an interpreter's start nor, on its way to its
    command, a fork.

    Requests come on the SOCK_SEQPACKET socket ``sock_fd`` (the daemon holds the other end):

        b"S" [+ count, ASCII]  -> fork that many spare supervisors (:func:`_spare`; 1 without a count, at most 64),
                 all forked first, then each answered, in order (:func:`_fork_spares`): its pid (8 bytes,
                 big-endian, signed; a negative errno if the fork failed) and its start time (8 bytes, as
                 ``agentd.hostinfo.process_start`` reads it, which the lease records: -1 if unknown) with
                 SCM_RIGHTS [the daemon's end of the spare's own channel]
        b"R" + pids (ASCII, space-separated) -> reap those children (they have exited: the daemon saw it through
                 their pidfds)
        b"P" + path         -> the folder of the task logs: each spare forked from now on makes a task's log folder
                 and log file there while it waits (:func:`_prepare`); no reply
        b"K" with SCM_RIGHTS [fds] -> keep those descriptors, unused, until this process exits or the next b"K"
                 (which closes them: a process that runs daemon after daemon leaves one at most); no reply. Sent by
                 a daemon as it ends, so that its own close of one is not the last (the last close of an inotify
                 instance waits for the kernel's release of its watches: the zygote, which nobody waits for, pays it)

    The zygote never holds a task's descriptors: the daemon hands them to the spare over its channel, so a supervisor
    sees EOF on its control pipe when the daemon dies, as when the daemon started it directly.  A child is reaped
    only when the daemon says so: until then its pid (its process group's id) cannot be reused, so the daemon may
    signal the group.  EOF on the socket (the daemon is gone): the zygote exits, leaving its children to init (its
    spares read EOF on their channels and exit).

    Before its first fork it loads what a supervisor needs, runs a supervisor's per-task code on nothing
    (:func:`_warm`) and freezes its heap out of the garbage collector: a spare shares all of it, copying only the pages
    it writes. It and its spares wake up without preempting the daemon (:func:`_yield_on_wakeup`)."""
    import gc

    _socket = _modules()[0]  # (fcntl too: loaded here once, not in every supervisor forked; see _spare)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _prctl()  # _ctypes and libffi loaded, prctl looked up: once, here
    _yield_on_wakeup()  # (its spares inherit it)
    _warm()  # before the freeze: what it set up is shared, never collected or copied
    gc.freeze()  # what is loaded now is never collected: a forked supervisor's collections do not touch (copy) it
    sock = _socket.socket(fileno=sock_fd)
    room = _socket.CMSG_SPACE(256 * 4)
    while True:
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(REQUEST_MAX, room)
        except OSError:
            return 0
        if not data:
            return 0  # the daemon is gone
        received = _received_fds(ancillary)
        if data[:1] == b"K":  # kept until this process exits, never used; the ones kept before are closed now
            _close_quietly(*_KEPT)
            _KEPT[:] = received
            continue
        _close_quietly(*received)  # (none expected)
        if data[:1] == b"P":  # the log root for the spares forked from now on (see _prepare); empty: none
            _LOG_ROOT[:] = [os.fsdecode(data[1:])] if len(data) > 1 else []
        elif data[:1] == b"R":
            for pid in data[1:].split():
                try:
                    os.waitpid(int(pid), 0)
                except (ChildProcessError, ValueError, OSError):
                    pass
        elif data[:1] == b"S":
            try:
                count = min(max(int(data[1:] or b"1"), 1), 64)
            except ValueError:
                count = 1
            if not _fork_spares(sock, sock_fd, count):
                return 0


WARM_RUNS = 9  # CPython 3.11 specialises a function's bytecode at its 8th call


def _warm() -> None:
    """Run what a supervisor runs for each task, a few times, in the zygote before it freezes its heap and forks: on a
    spec of its own, /dev/null for the log and a command that cannot be found (its name holds a NUL: never started;
    posix_spawn, called apart, refuses an empty argv once it has parsed its arguments). What CPython sets up at a first
    use -- a function's specialised bytecode, a type's attribute cache and version tag, a C function's keyword parser
    -- is then in the heap the spares share: no supervisor does that work again, nor copies the pages it writes.

    Nothing here has an effect outside the zygote (no process started, no signal handler set, every descriptor opened
    is closed), and a failure only ends the warm-up."""
    spec: dict[str, Any] = {"argv": ["agentd-warm-up\0", "a b"], "cwd": None, "env": {"PATH": "/nonexistent"}}
    spec |= {"log": os.devnull, "timeout": 1.0, "kill_after": 1.0, "keep_fds": [], "fence": [_boot(), 3600.0]}
    message = marshal.dumps(([], marshal.dumps({**spec, "report_start": False})))
    try:
        for _ in range(WARM_RUNS):
            _warm_once(message)
    except Exception:  # a cost, never a fault: the spares then do that work themselves
        return


def _warm_once(message: bytes) -> None:
    _socket, fcntl = _modules()
    _kept, given = marshal.loads(message)  # noqa: S302 - our own
    _received_fds([(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"")])
    parsed = _read_spec(given)
    if parsed is None:
        return
    shim = Shim(*parsed)
    wake_r, wake_w = os.pipe()
    try:
        os.close(fcntl.fcntl(wake_r, fcntl.F_DUPFD_CLOEXEC, 3))
        os.dup2(wake_r, wake_w, inheritable=False)  # (closes wake_w's pipe end: both are wake_r's now)
        if shim.start() is None:  # the log (/dev/null) opened, "exec" logged, the command not found
            raise AssertionError("the warm-up's command was found")
        try:
            os.posix_spawn(os.devnull, [], {}, file_actions=[(os.POSIX_SPAWN_DUP2, 1, 2)], setsigdef=[])
        except ValueError:
            pass
        os.set_blocking(wake_r, False)
        select.select([wake_r], [], [], 0)
        shim.handle_control_lines()
        shim.fence_due()
        shim.log(f"exited returncode={0} signal={None} timed_out={False} killed_by={None}")
        exited = {"event": "exited", "returncode": 0, "signal": None, "timed_out": False, "killed_by": None}
        _frame({**exited, "error": None, "started": time.time(), "ended": time.time()})
        _frame({"event": "started", "pid": 1, "pgid": 1, "started": time.time(), "subreaper": True})
        os.waitstatus_to_exitcode(0)
        _crash_point("agentd-warm-up")
    finally:
        _close_quietly(*(fd for fd in (wake_r, wake_w, shim.log_fd) if fd >= 0))


def _fork_spares(sock: Any, sock_fd: int, count: int) -> bool:
    """Fork *count* spares, then answer the daemon on *sock* for each, in order (see :func:`zygote`); False: the
    daemon is gone.

    All the forks first, then the answers: after a fork every page the zygote writes is copied (its spares share
    them), so the work of the answers (the start time read, the messages) copies its pages once for the batch rather
    than once per spare. A spare closes, first thing, the daemon's ends of the channels forked before it in the batch
    (still in the zygote's hands until answered): each channel's other end is held by the zygote, then the daemon
    only, so a spare dropped unused reads EOF."""
    _socket = _modules()[0]
    forked: list[tuple[int, Any]] = []  # (pid, or a negative errno; the daemon's end of its channel, or None)
    try:
        for _ in range(count):
            try:
                ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
            except OSError as exc:
                forked.append((-(exc.errno or errno.EMFILE), None))
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                ours.close()
                forked.append((-(exc.errno or errno.EAGAIN), None))
            else:
                if pid == 0:
                    try:
                        ours.close()
                        for _pid, other in forked:
                            if other is not None:
                                other.close()
                    finally:
                        _spare(sock_fd, theirs)  # (never returns)
                forked.append((pid, ours))
            finally:
                theirs.close()
        _crash_point("zygote.after-fork")  # (the batch forked, none answered: each reads EOF if the zygote dies)
        while forked:
            reply, ours = forked.pop(0)
            if not _answer(sock, reply, ours):
                return False
    finally:
        for _pid, ours in forked:  # (the daemon is gone)
            if ours is not None:
                ours.close()
    return True


def _answer(sock: Any, reply: int, ours: Any) -> bool:
    """Tell the daemon about a spare forked (see :func:`zygote`), and close our end of its channel; False: the daemon
    is gone."""
    _socket = _modules()[0]
    try:
        stat = _proc_stat(reply) if ours is not None else None  # read here, off the daemon's way to a task
        start = stat[4] if stat is not None else -1
        answer = reply.to_bytes(8, "big", signed=True) + start.to_bytes(8, "big", signed=True)
        if ours is not None:
            rights = ours.fileno().to_bytes(4, sys.byteorder, signed=True)
            sock.sendmsg([answer], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        else:
            sock.send(answer)
    except OSError:
        return False
    finally:
        if ours is not None:
            ours.close()
    return True


def main(spec: bytes | None = None) -> int:
    """Supervise one task: its spec is *spec* (marshalled, handed to a spare with its descriptors), else the first
    frame on the control pipe."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    signal.signal(signal.SIGCHLD, _on_child)
    global _SUBREAPER
    _SUBREAPER = _set_child_subreaper()
    try:
        parsed = _read_spec(spec)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        sys.stderr.write(f"agentd shim: bad spec: {exc}\n")
        return 2
    if parsed is None:
        return 2  # the daemon went away before sending the spec
    return Shim(*parsed).run()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[-2] == "agentd-zygote":
        sys.exit(zygote(int(sys.argv[-1])))
    sys.exit(main())
