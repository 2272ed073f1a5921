"""The daemon's side of the supervisor factory (the "zygote", ``_shim.zygote``): one per daemon process.

Starting a per-task supervisor as a fresh ``python -I -S`` costs an interpreter's start-up (~12 ms of CPU, more on a
loaded machine).  The zygote is that interpreter, started once per daemon with the shim's code loaded; each task then
costs a ``fork`` of it, made ahead of the task: the zygote forks *spares* (as many as :attr:`Zygote.spares`), each
waiting on a socket pair of its own whose other end the daemon holds; a task is handed to one of them with its
descriptors (SCM_RIGHTS) and its spec in one message (one wake-up of the spare; a spec too big for one message
follows on the control pipe).  The supervisor is the same shim, with every guarantee (``_shim.py``):
the leader of its own session, a child subreaper, the holder of the lease's descriptor, EOF on its control pipe when
the daemon dies.  Which process holds which end:

    daemon   control pipe write end, status pipe read end (both close-on-exec), the zygote socket's own end, and
             (while it is being handed a task) the spare's channel
    zygote   nothing of a task: the daemon hands the task's descriptors to the spare directly
    shim     control pipe read end (fd 0), status pipe write end (fd 1), the kept descriptors at their numbers

A spare runs nothing unless the daemon hands it a task, and the daemon hands each task to one spare whose pid it
knows: a spare whose zygote or daemon died before its task came reads EOF on its channel and exits, so the fallback
(a fresh zygote, else a directly started interpreter) can never run the command twice.

A supervisor whose run ended cleanly says so in its report and waits on its channel for another task; once the daemon
has recorded the run and released its lease it gives it back (:meth:`Zygote.take_back`), and :meth:`Zygote.fork`
hands the next task to it before any spare (no fork, none of a fresh fork's page copies, no exit). Otherwise the
daemon closes its end of the channel and the supervisor exits (see ``_shim._spare``).

The zygote reaps a supervisor only when told (:meth:`Zygote.reap`, sent once the daemon saw it exit through a
pidfd): until then its pid, which is its process group's id, cannot be reused and the daemon may signal the group.
A running daemon starts it as soon as its configuration is read (:meth:`Zygote.boot`) and asks for the first spares
before its first pass (:meth:`Zygote.prestart`): the interpreter starts while the daemon is built and registered and
that pass claims the first task. A zygote that dies is replaced at the next task (said once in the log each time); the
supervisors it had forked run on, re-parented to init.
"""

from __future__ import annotations

import _socket  # (not socket: its enums cost a daemon's start 1-2 ms, and the zygote needs none)
import array
import collections
import contextlib
import errno
import fcntl
import logging
import marshal
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, NamedTuple

__all__ = ["ForkedSupervisor", "Handed", "Zygote", "ZygoteGone", "close_quietly", "default_zygote", "pipes"]

log = logging.getLogger(__name__)

# The largest marshalled spec handed to a spare in its hand-over message (the spare reads at most HAND_OVER_MAX bytes
# of it, _shim.py): a bigger one (a huge environment) is written to the control pipe, as for a fresh interpreter.
INLINE_SPEC_MAX = 48 * 1024
REPLY_TIMEOUT = 30.0  # s: a zygote that does not answer a fork request by then is taken for hung and replaced
SPARES_MAX = 8  # spares kept forked ahead at most, whatever a daemon may start at once
RELEASE_TIMEOUT = 2.0  # s: the longest a daemon's end waits for its unused spares to drop their log folders
REAPS_PER_MESSAGE = 400  # pids in one b"R" request (each at most 7 digits and a space: within _shim.REQUEST_MAX)
_USABLE = hasattr(os, "pidfd_open") and hasattr(_socket, "SCM_RIGHTS") and hasattr(_socket, "SOCK_SEQPACKET")


def _spares(wanted: int) -> int:
    """How many spares to keep forked ahead for a daemon that may start *wanted* tasks in one pass."""
    return max(1, min(int(wanted), SPARES_MAX))


class ZygoteGone(Exception):
    """The zygote died or hung before answering: the caller falls back (its pipes may be held by an orphan)."""


if TYPE_CHECKING:

    class Handed(NamedTuple):
        """A spare handed its task (:meth:`Zygote.fork`)."""

        pid: int
        generation: int  # the zygote's that forked it
        pidfd: int
        spec_sent: bool  # its spec came with its descriptors (else the caller writes it to the control pipe)
        start: int | None  # its start time (agentd.hostinfo.process_start's), read by the zygote after the fork
        channel: _socket.socket  # the daemon's end of its channel (kept: it may serve another task, take_back)

else:  # the same tuple, without importing typing for its NamedTuple
    Handed = collections.namedtuple("Handed", ["pid", "generation", "pidfd", "spec_sent", "start", "channel"])
    Handed.__doc__ = "A spare handed its task (:meth:`Zygote.fork`)."


class Zygote:
    """A supervisor factory, started ahead (:meth:`prestart`) or at the first fork; thread-safe. :meth:`fork`
    returns a :class:`ForkedSupervisor`."""

    def __init__(self, executable: str = sys.executable, reply_timeout: float = REPLY_TIMEOUT) -> None:
        self._executable = executable
        self._reply_timeout = reply_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: _socket.socket | None = None
        self.generation = 0  # bumped at each (re)start: a supervisor is reaped only by the zygote that forked it
        self._asked = 0  # spares asked for whose replies are not yet read
        self.spares = 1  # how many spares to keep asked for (prestart(): as many as the daemon starts at once)
        self.broken = not _USABLE
        self._log_root: str | None = None  # where the spares prepare a task's log folder and file (prepare_logs)
        self._log_root_given: str | None = None  # (as the caller gave it: compared by identity, once per task)
        self._log_root_sent: str | None = None  # what the running zygote was told
        self._reaps: tuple[int, list[int]] | None = None  # (generation, pids): reaps held for one message
        # Supervisors whose task is over and that wait on their channel for another one (take_back), newest last:
        # (pid, generation, pidfd, start, the daemon's end of its channel). Handed a task before any new spare.
        self._idle: list[tuple[int, int, int, int | None, _socket.socket]] = []

    @property
    def pid(self) -> int | None:
        """The running zygote's pid (None before the first task, or after it died)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _start(self) -> _socket.socket:
        from agentd.run.runner import SHIM_BOOT, shim_code  # (runner imports this module)

        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [self._executable, "-I", "-S", "-c", SHIM_BOOT, "agentd-zygote", str(theirs.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # no signal for the daemon's process group or terminal reaches it
                pass_fds=[theirs.fileno()],
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        assert proc.stdin is not None
        code = shim_code()
        resize = getattr(fcntl, "F_SETPIPE_SZ", None)  # (Linux's)
        if resize is not None:
            with contextlib.suppress(OSError):  # (refused over the user's pipe limits: the write waits, as it did)
                # The code (~68 kB) in the pipe at once, rather than a write waiting for the interpreter's start (~15
                # ms, more on a loaded machine) to read past the 64 kB a pipe holds: the first pass runs meanwhile.
                fcntl.fcntl(proc.stdin.fileno(), resize, len(code))
        try:
            proc.stdin.write(code)
            proc.stdin.close()
        except OSError:
            pass  # it died at once: the first request finds out
        ours.settimeout(self._reply_timeout)
        self._proc, self._sock = proc, ours
        self._asked = 0
        self._log_root_sent = None
        self.generation += 1
        log.debug("supervisor zygote %d started", proc.pid)
        return ours

    def prestart(self, spares: int = 1) -> None:
        """Start the zygote now rather than at the first task: its interpreter boots (a process of its own) while the
        daemon's first pass reads the queue and claims. ``spares``: how many supervisors to keep forked ahead (as
        many as the daemon may start in one pass, at most 8). Here, not in a thread: the descriptors it takes for a
        moment never race the pass's under a low ``ulimit -n``. A failure is only logged: the first task tries
        again and reports it."""
        with self._lock:
            self.spares = _spares(spares)
            sock = self._sock
            if sock is None and not self.broken:
                try:
                    sock = self._start()
                except OSError as exc:
                    log.debug("supervisor zygote not started ahead of the first task: %s", exc)
                    return
            if sock is not None and self._asked < self.spares:
                self._ask(sock)  # the first tasks' spares (booted before: none asked for yet)

    def keep_ahead(self, spares: int) -> None:
        """Keep *spares* supervisors forked ahead from now on (at least 1, at most 8): as many as the daemon may start
        in one pass, which its role's WIP limit in the queue may change. Nothing is asked for now (the next
        :meth:`replenish` asks for the missing ones; spares asked for beyond a lowered number are used first)."""
        with self._lock:
            self.spares = _spares(spares)

    def boot(self) -> None:
        """Start the zygote's interpreter now, asking it for nothing yet (:meth:`prestart` asks for the first spares
        once the daemon knows how many, and where their logs go): for a process about to become a daemon, as soon as
        it knows it is to be one (agentd.cli.fast, before the daemon's modules load; else once its configuration is
        read), so that the interpreter's start (about 20 ms, on the other core) is over before the first claim rather
        than waited for by it. A failure is only logged (the first task tries again)."""
        with self._lock:
            if self._sock is None and not self.broken:
                try:
                    self._start()
                except OSError as exc:
                    log.debug("supervisor zygote not booted ahead: %s", exc)

    def prepare_logs(self, root: str) -> None:
        """The spares forked from now on prepare a task's log folder and log file in *root* (the folder of the task
        logs, one folder per task: ``<root>/<task id>/<token>.log``) while they wait for their task, so that the
        hand-over only renames and links them (``_shim._prepare``); a log elsewhere is made as before. Told to the
        zygote with the next request for spares."""
        if root is not self._log_root_given:
            self._log_root_given = root
            self._log_root = os.path.abspath(root)  # (the spec's log path is absolute: the spare compares the two)

    def _tell_log_root(self, sock: _socket.socket) -> None:
        """``P<root>``: the log root for the spares the zygote forks from now on (a path too long is not sent)."""
        root = self._log_root
        if root is not None and root != self._log_root_sent:
            name = os.fsencode(root)
            if len(name) < 4096:
                sock.send(b"P" + name)
            self._log_root_sent = root

    def _drop(self, why: str) -> None:
        proc, sock = self._proc, self._sock
        self._proc = self._sock = None
        if sock is not None:
            sock.close()
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            log.warning("supervisor zygote %d %s (exit %s): starting a new one", proc.pid, why, proc.returncode)

    def fork(self, control: int, status: int, keep_fds: Sequence[int], spec: bytes | None = None) -> Handed:
        """A supervisor with ``control`` (read end) as its fd 0, ``status`` (write end) as its fd 1 and ``keep_fds``
        at their numbers (:class:`Handed`: its pid and start time, the zygote's generation, a pidfd of it, and
        whether its spec was sent). It is the spare the zygote forked ahead (asked for after the previous tasks were
        started, or now), handed these descriptors over its own channel (:meth:`replenish` asks for the next one), and
        ``spec`` (the marshalled spec) in the same message when it fits one (``spec_sent``: one wake-up of the spare
        per task); when it is not sent so, the caller writes its frame to the control pipe, where the supervisor then
        reads it. OSError: fork failed there (e.g. EAGAIN); ZygoteGone: no answer (the zygote is replaced at the next
        call)."""
        inline = spec if spec is not None and len(spec) <= INLINE_SPEC_MAX else None
        with self._lock:
            fds = array.array("i", [control, status, *keep_fds])
            while self._idle:
                handed = self._hand_to_idle(keep_fds, inline, fds)
                if handed is not None:
                    return handed
            sock = self._sock if self._sock is not None else self._start()
            for attempt in range(2):
                pid, chan, generation, start = self._spare(sock)
                try:
                    pidfd = os.pidfd_open(pid)  # before the hand-over: the spare holds its pid until then
                except OSError:
                    chan.close()  # (EOF: it exits unused)
                    self._reap_now(sock, pid)
                    raise
                try:
                    sent = self._hand(chan, keep_fds, inline, fds)
                except OSError as exc:
                    os.close(pidfd)  # the spare is gone (killed): another one, once
                    chan.close()
                    self._reap_now(sock, pid)
                    if attempt:
                        raise OSError(exc.errno or errno.EAGAIN, f"supervisor spare {pid}: {exc.strerror}") from exc
                    log.warning("supervisor spare %d is gone (%s): asking for another", pid, exc.strerror or exc)
                    continue
                return Handed(pid, generation, pidfd, sent, start, chan)
            raise AssertionError("unreachable")

    def _hand_to_idle(self, keep_fds: Sequence[int], inline: bytes | None, fds: array.array[int]) -> Handed | None:
        """Hand the task to the idle supervisor that came back last (:meth:`take_back`); None when it is gone
        (exited, killed: then dropped, and reaped by its zygote when that is ours): the caller tries the next."""
        pid, generation, pidfd, start, chan = self._idle.pop()
        if not _readable([pidfd], 0):  # (not exited: a supervisor that died after its report is not handed a task)
            try:
                sent = self._hand(chan, keep_fds, inline, fds)
            except OSError:
                pass
            else:
                return Handed(pid, generation, pidfd, sent, start, chan)
        self._let_go(pid, generation, pidfd, chan)
        return None

    def _let_go(self, pid: int, generation: int, pidfd: int, chan: _socket.socket) -> None:
        """Drop an idle supervisor: EOF on its channel (it exits, if it has not), reaped by its zygote when that is
        ours (a zombie until then: its pid is not reused meanwhile), else by init."""
        chan.close()
        os.close(pidfd)
        if self._sock is not None and generation == self.generation:
            self._reap_now(self._sock, pid)

    def take_back(self, pid: int, generation: int, pidfd: int, start: int | None, chan: _socket.socket) -> bool:
        """Keep a supervisor whose task is over, and that said it waits for another (its report's ``reuse``), to be
        handed the next task (:meth:`fork`): False when this zygote is stopped or keeps :attr:`spares` of them
        already (the caller then lets it go: EOF on its channel, and it exits)."""
        with self._lock:
            if self._sock is None or len(self._idle) >= self.spares:
                return False
            self._idle.append((pid, generation, pidfd, start, chan))
            return True

    @staticmethod
    def _hand(chan: _socket.socket, keep_fds: Sequence[int], spec: bytes | None, fds: array.array[int]) -> bool:
        """The hand-over message (``_shim._spare``): the kept descriptors' numbers and the spec (or None), with the
        descriptors themselves; whether the spec went with it (one the socket's buffer refuses, EMSGSIZE: a limit
        raised over the buffer, is sent without it, and the caller writes it to the control pipe)."""
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)]
        if spec is not None:
            try:
                chan.sendmsg([b"G" + marshal.dumps((list(keep_fds), spec))], rights)
                return True
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
        chan.sendmsg([b"G" + marshal.dumps((list(keep_fds), None))], rights)
        return False

    def replenish(self) -> None:
        """Ask for the spares of the next tasks (a daemon asks as its next pass begins: see
        :meth:`agentd.run.execution.Executor.replenish`), all in one request (one wake-up of the zygote, however many
        tasks were started); a zygote found dead is replaced now."""
        with self._lock:
            if self._sock is not None and self._asked + len(self._idle) < self.spares:
                self._ask(self._sock)

    def _ask(self, sock: _socket.socket) -> None:
        try:
            self._request(sock)
        except OSError:
            self._drop("died" if self._proc is not None and self._proc.poll() is not None else "did not answer")
            with contextlib.suppress(OSError):
                self._request(self._start())

    def _request(self, sock: _socket.socket) -> None:
        """One request for as many spares as are missing (``S<count>``: one message)."""
        missing = self.spares - self._asked - len(self._idle)
        if missing > 0:
            self._tell_log_root(sock)
            sock.send(b"S%d" % missing)
            self._asked += missing

    def _spare(self, sock: _socket.socket) -> tuple[int, _socket.socket, int, int | None]:
        """The spare asked for (now, if it was not yet): its pid, the daemon's end of its channel, its generation,
        its start time (as the zygote read it from /proc right after the fork; None if it could not)."""
        try:
            if self._asked:
                self._asked -= 1  # its reply comes first
            else:
                self._tell_log_root(sock)
                sock.send(b"S")
            reply, ancillary, flags, _addr = sock.recvmsg(32, _socket.CMSG_SPACE(4))
        except (OSError, TimeoutError):
            reply, ancillary, flags = b"", [], 0
        fds = [
            fd
            for level, kind, data in ancillary
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
            for fd in array.array("i", data[: len(data) - len(data) % 4])
        ]
        if len(reply) != 16 or len(fds) > 1:
            close_quietly(*fds)
            self._drop("died" if self._proc is not None and self._proc.poll() is not None else "did not answer")
            raise ZygoteGone
        pid = int.from_bytes(reply[:8], "big", signed=True)
        start = int.from_bytes(reply[8:], "big", signed=True)
        if pid <= 0:
            close_quietly(*fds)
            raise OSError(-pid or errno.EIO, f"supervisor zygote: fork: {os.strerror(-pid or errno.EIO)}")
        if not fds:  # its channel did not reach this process (out of descriptors: the kernel dropped it)
            self._reap_now(sock, pid)
            code = errno.EMFILE if flags & _socket.MSG_CTRUNC else errno.EIO
            raise OSError(code, f"supervisor spare {pid}: its channel was not received: {os.strerror(code)}")
        return pid, _socket.socket(fileno=fds[0]), self.generation, start if start >= 0 else None

    @staticmethod
    def _reap_now(sock: _socket.socket, pid: int) -> None:
        """Have the zygote reap a spare that will run nothing (gone, or reading EOF on its channel: it exits at
        once), so that no zombie of it is left."""
        with contextlib.suppress(OSError):
            sock.send(b"R%d" % pid)

    def keep(self, fd: int) -> bool:
        """Have the zygote keep a copy of *fd* until it exits, or until the next call (``K``, with the descriptor; no
        reply): for a daemon that ends, whose last close of it would wait (an inotify instance: the kernel's release
        of its watches waits for an SRCU grace period, 7-20 ms measured). The zygote reads EOF once the daemon's
        process is gone and exits then, waited for by no one. False (the caller's close is then the last): no zygote,
        or the message was not sent."""
        with self._lock:
            sock = self._sock
            if sock is None:
                return False
            timeout = sock.gettimeout()
            sock.setblocking(False)  # (a zygote that does not read never holds up a daemon's end)
            try:
                sock.sendmsg([b"K"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array.array("i", [fd]))])
            except OSError:
                return False
            finally:
                sock.settimeout(timeout)
            return True

    def reap(self, pid: int, generation: int) -> None:
        """Let the zygote reap its exited child *pid* (when it is still the zygote that forked it): now, or at the end
        of :meth:`reaping_together`."""
        with self._lock:
            if self._sock is None or generation != self.generation:
                return  # that zygote is gone: init reaped its children
            if self._reaps is not None and self._reaps[0] == generation:
                self._reaps[1].append(pid)
                return
            with contextlib.suppress(OSError, TimeoutError):
                self._sock.send(b"R%d" % pid)

    @contextlib.contextmanager
    def reaping_together(self) -> Iterator[None]:
        """The reaps asked for meanwhile (:meth:`reap`) go to the zygote in one message at the end (``R<pid> <pid>``):
        one wake-up of it rather than one each, each of which could take the caller's core from it (a daemon letting
        the supervisors of the runs a pass recorded be reaped)."""
        with self._lock:
            outer = self._reaps is None
            if outer:
                self._reaps = (self.generation, [])
        try:
            yield
        finally:
            if outer:
                with self._lock:
                    batch, self._reaps = self._reaps, None
                    if batch is not None and batch[1] and self._sock is not None and batch[0] == self.generation:
                        pids = batch[1]
                        for start in range(0, len(pids), REAPS_PER_MESSAGE):
                            with contextlib.suppress(OSError, TimeoutError):
                                self._sock.send(
                                    b"R" + b" ".join(b"%d" % pid for pid in pids[start : start + REAPS_PER_MESSAGE])
                                )

    def alive(self, generation: int) -> bool:
        """Is the zygote of that generation still running (so its children are reaped only when we say)?"""
        proc = self._proc
        return generation == self.generation and proc is not None and proc.poll() is None

    def release_spares(self, timeout: float = RELEASE_TIMEOUT) -> None:
        """Let the spares asked for and never used go, and wait (at most *timeout* seconds) until they are gone: each
        reads EOF on its channel, removes the log folder it made ahead of its task (:meth:`prepare_logs`) and exits.
        For a daemon about to return: no folder of its spares then appears or vanishes under whatever the caller does
        next (``shutil.rmtree`` of the project fails on either). The supervisors waiting for another task
        (:meth:`take_back`) go too. Only when they prepared something, or some wait; the zygote stays (a later task
        asks for spares again)."""
        with self._lock:
            sock = self._sock
            if sock is None or (self._log_root_sent is None and not self._idle):
                return
            deadline = time.monotonic() + timeout
            gone: list[tuple[int, int]] = []  # (pid, pidfd)
            for pid, generation, pidfd, _start, chan in self._idle:  # (each prepared for its next task too)
                chan.close()  # EOF: it drops what it prepared and exits
                if generation == self.generation:
                    gone.append((pid, pidfd))
                else:
                    os.close(pidfd)  # (init reaps it)
            self._idle.clear()
            sock.settimeout(timeout)  # (a hung zygote does not hold the daemon's end for a reply's 30 s)
            try:
                while self._asked:
                    try:
                        pid, chan, _generation, _start = self._spare(sock)
                    except (ZygoteGone, OSError):
                        break
                    try:
                        gone.append((pid, os.pidfd_open(pid)))  # (before its EOF: it is reaped only when told)
                    except OSError:
                        self._reap_now(sock, pid)
                    chan.close()  # EOF: it drops what it prepared and exits
            finally:
                with contextlib.suppress(OSError):  # (closed if the zygote was dropped)
                    sock.settimeout(self._reply_timeout)
            waiting = [pidfd for _pid, pidfd in gone]
            while waiting:
                left = deadline - time.monotonic()
                ready = _readable(waiting, left) if left > 0 else []
                if not ready:
                    break
                waiting = [fd for fd in waiting if fd not in ready]
            for pid, pidfd in gone:
                os.close(pidfd)
                self._reap_now(sock, pid)

    def close(self) -> None:
        """Stop the zygote (its supervisors run on)."""
        with self._lock:
            proc, sock = self._proc, self._sock
            self._proc = self._sock = None
            for _pid, _generation, pidfd, _start, chan in self._idle:
                chan.close()  # EOF: each exits (reaped by the zygote as it exits, else by init)
                os.close(pidfd)
            self._idle.clear()
            if sock is not None:
                sock.close()  # EOF: it exits
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)


class ForkedSupervisor:
    """A supervisor the zygote forked, with what :class:`agentd.run.runner.TaskProcess` uses of a ``Popen``."""

    def __init__(
        self,
        zygote: Zygote,
        pid: int,
        generation: int,
        pidfd: int,
        stdin: IO[bytes],
        stdout: IO[bytes],
        *,
        spec_sent: bool = False,
        start: int | None = None,
        channel: _socket.socket | None = None,
    ) -> None:
        self.pid = pid
        self.spec_sent = spec_sent  # its spec came with its descriptors (else: it reads it from its control pipe)
        self.start = start  # its start time as the zygote read it (None: unknown)
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._zygote = zygote
        self._generation = generation
        self._pidfd: int | None = pidfd  # opened before the spare was handed its task (see Zygote.fork)
        self._channel = channel  # the daemon's end of its channel: it may be handed another task (reuse)

    def unreaped(self) -> bool:
        """May the daemon still signal the supervisor's process group (its pid cannot have been reused)?"""
        if self.returncode is not None or self._pidfd is None:
            return False
        if self._zygote.alive(self._generation):
            return True
        try:  # the zygote died: init reaps the supervisor as soon as it exits
            signal.pidfd_send_signal(self._pidfd, 0)
        except OSError:
            return False
        return True

    def reuse(self) -> bool:
        """Its task over, and reported with ``reuse`` (it waits on its channel for another): give it back to the
        zygote, which hands it the next task (:meth:`Zygote.take_back`). True: this handle is done with it (as once
        reaped: its process group is never signalled through it again); False: :meth:`wait` lets it go and exit."""
        if self.returncode is not None or self._pidfd is None or self._channel is None:
            return False
        if not self._zygote.take_back(self.pid, self._generation, self._pidfd, self.start, self._channel):
            return False
        self._pidfd = self._channel = None
        self.returncode = 0
        return True

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the supervisor exited (subprocess.TimeoutExpired after *timeout*), then have it reaped. One
        that would wait for another task is let go first (EOF on its channel: it exits)."""
        if self.returncode is not None:
            return self.returncode
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        assert self._pidfd is not None
        if not _readable([self._pidfd], timeout):
            raise subprocess.TimeoutExpired(f"supervisor {self.pid}", timeout or 0.0)
        os.close(self._pidfd)
        self._pidfd = None
        self._zygote.reap(self.pid, self._generation)
        self.returncode = 0  # (its parent, the zygote, sees the status; the exit report came on the status pipe)
        return 0


def _readable(fds: list[int], timeout: float | None) -> list[int]:
    """Those of ``fds`` readable within ``timeout`` s (None: no limit), a pidfd once its process exited. With poll:
    ``select`` refuses a descriptor numbered 1,024 or more, and a daemon may hold that many (inherited, or several per
    running task under a high ``ulimit -n``)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait = None if timeout is None else max(0.0, timeout) * 1000  # (ms; poll rounds a fraction up, never to 0)
    return [fd for fd, _ in poller.poll(wait)]


_default: Zygote | None = None
_default_lock = threading.Lock()


def default_zygote() -> Zygote:
    """This process's zygote (one per daemon process), created on first use; ``AGENTD_ZYGOTE=0`` turns it off."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Zygote()
            if os.environ.get("AGENTD_ZYGOTE", "1") == "0":
                _default.broken = True
        return _default


def pipes() -> tuple[int, int, int, int]:
    """(control read, control write, status read, status write), all close-on-exec."""
    control_r, control_w = os.pipe()
    try:
        status_r, status_w = os.pipe()
    except OSError:
        os.close(control_r)
        os.close(control_w)
        raise
    return control_r, control_w, status_r, status_w


def close_quietly(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
