"""Background daemons: start (detached, and only "started" once really up), stop (drain, then kill), status, logs.

A detached daemon runs in its own session with no controlling terminal, stdin from /dev/null and its output in its
log file. ``start`` hands it the write end of a pipe; the daemon writes one JSON line there once its PID file is
locked and its first pass is done (or the error that stopped it), then closes it. So ``start`` never says "started"
for a process that died a moment later, and two ``start``\\ s at once give one daemon (the PID file lock decides).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence

from agentd.config import Config
from agentd.core.record import Record, set_field
from agentd.errors import ExitCode
from agentd.hostinfo import process_start
from agentd.service.probes import AUTOMATION as AUTOMATION  # (re-exported: what `agentd status` looks at lives there)
from agentd.service.probes import WEB as WEB
from agentd.service.probes import automation_active_file as automation_active_file
from agentd.service.probes import automation_log_path as automation_log_path
from agentd.service.probes import automation_probe as automation_probe
from agentd.service.probes import daemons as daemons
from agentd.service.probes import display as display
from agentd.service.probes import run_folder as run_folder
from agentd.service.probes import web_log_path as web_log_path
from agentd.service.probes import web_probe as web_probe
from agentd.store import open_store
from agentd.store.file.journal import follow as follow  # (tails role logs too)
from agentd.store.file.pidfile import PidInfo, Probe, probe, role_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # (imported where a daemon is started: `agentd status` starts none)
    import subprocess
    from pathlib import Path
    from typing import Any

START_TIMEOUT = 60.0


def run_dir(config: Config) -> Path:
    return config.state_dir / "run"


def log_path(config: Config, role: str, instance: str | None = None) -> Path:
    """``.agentd/logs/<role>[.<instance>].log``."""
    return config.state_dir / "logs" / (role + (f".{instance}" if instance else "") + ".log")


class StartResult(Record):
    """What ``start`` did for one daemon."""

    _fields = ("name", "state", "pid", "log", "error", "exit_code", "url", "login")

    name: str
    state: str  # started | running | failed
    pid: int | None = None
    log: str | None = None
    error: str | None = None
    exit_code: int = 0
    url: str | None = None  # a web server's address
    login: str | None = None  # a web server's login link (it carries the token: shown, never logged)

    def __init__(
        self,
        name: str,
        state: str,
        pid: int | None = None,
        log: str | None = None,
        error: str | None = None,
        exit_code: int = 0,
        url: str | None = None,
        login: str | None = None,
    ) -> None:
        set_field(self, "name", name)
        set_field(self, "state", state)
        set_field(self, "pid", pid)
        set_field(self, "log", log)
        set_field(self, "error", error)
        set_field(self, "exit_code", exit_code)
        set_field(self, "url", url)
        set_field(self, "login", login)

    def line(self) -> str:
        if self.state == "started" and self.url:
            return f"{self.name} started on {self.url} (pid {self.pid}, log {self.log})"
        if self.state == "started":
            return f"{self.name} started (pid {self.pid}, log {self.log})"
        if self.state == "running":
            return f"{self.name} is already running (pid {self.pid})"
        return f"{self.name} failed to start: {self.error}"


def _read_ready(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, object] | None:
    """The daemon's readiness line, or None when it died or closed the pipe without one."""
    import select

    buffer = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()  # (not select, which refuses a descriptor numbered 1,024 or more: one inherited that many)
    poller.register(fd, select.POLLIN)
    while time.monotonic() < deadline:
        if poller.poll(200):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            if b"\n" in buffer:
                break
        elif proc.poll() is not None:
            break
    line = buffer.split(b"\n", 1)[0]
    if not line:
        return None
    try:
        message: dict[str, object] = json.loads(line)
    except ValueError:
        return None
    return message


def _tail_text(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Pending:
    """A daemon spawned in the background, not yet known to be up."""

    def __init__(
        self, name: str, proc: subprocess.Popen[bytes] | None, read_end: int, log: str, done: StartResult | None = None
    ) -> None:
        self.name = name
        self.proc = proc
        self.read_end = read_end
        self.log = log
        self.done = done

    def wait(self, timeout: float = START_TIMEOUT) -> StartResult:
        """Wait for the daemon's readiness line (or its death) and say what happened."""
        if self.done is not None:
            return self.done
        assert self.proc is not None
        try:
            message = _read_ready(self.read_end, self.proc, timeout)
        finally:
            os.close(self.read_end)
        name, proc, shown = self.name, self.proc, self.log
        if message is not None and message.get("status") == "ready":
            address, login = message.get("url"), message.get("login")
            return StartResult(
                name,
                "started",
                int(str(message.get("pid", proc.pid))),
                shown,
                url=str(address) if address else None,
                login=str(login) if login else None,
            )
        if message is not None and message.get("status") == "running":  # another start won the race
            pid = message.get("pid")
            return StartResult(name, "running", int(str(pid)) if pid is not None else None)
        if message is None and proc.poll() is None:
            proc.kill()
            return StartResult(name, "failed", proc.pid, shown, f"not up after {timeout:g} s; see {shown}", 1)
        code = proc.wait(timeout=30)
        from pathlib import Path

        log_file = Path(shown) if Path(shown).is_absolute() else None
        error = str(message.get("error")) if message else (_tail_text(log_file) if log_file else "") or f"exit {code}"
        exit_code = int(str(message.get("code"))) if message and message.get("code") else code or int(ExitCode.FAILURE)
        return StartResult(name, "failed", proc.pid, shown, error, exit_code)


def spawn(
    config: Config,
    role: str,
    *,
    instance: str | None = None,
    interval: float | None = None,
    log_format: str = "text",
    verbose: int = 0,
    concurrency: int | None = None,
) -> Pending:
    """Start one role's daemon detached; :meth:`Pending.wait` tells when it is really up."""
    config.role(role)
    name = role + (f".{instance}" if instance else "")
    seen = next((p for p in open_store(config).daemons() if role_of(p.path) == (role, instance) and p.running), None)
    if seen is not None:
        return Pending(name, None, -1, "", StartResult(name, "running", seen.info.pid if seen.info else None))
    log = log_path(config, role, instance)
    tail = ["run", "--role", role, "--log-file", str(log), "--log-format", log_format]
    if interval is not None:
        tail += ["--interval", str(interval)]
    if concurrency is not None:
        tail += ["--concurrency", str(concurrency)]
    if instance:
        tail += ["--instance", instance]
    return _detached(config, name, tail, log, verbose)


def _detached(config: Config, name: str, tail: list[str], log: Path, verbose: int = 0) -> Pending:
    """``agentd --root ROOT ... <tail> --ready-fd N`` in its own session, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "agentd", "--root", str(config.root)]
    if config.path is not None:
        argv += ["--config", str(config.path)]
    argv += ["--queue", str(config.queue_path)]
    argv += ["-v"] * verbose
    argv += [*tail, "--ready-fd", str(write_end)]
    inherited = ("AGENTD_ROOT", "AGENTD_QUEUE", "AGENTD_CONFIG")  # the argv says which project: nothing else may
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    import subprocess

    try:
        with open(log, "ab") as output:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=config.root,
                env=env,
                start_new_session=True,
                pass_fds=(write_end,),
            )
    finally:
        os.close(write_end)
    return Pending(name, proc, read_end, str(log))


def web_pid_path(config: Config) -> Path:
    """The background web server's PID file, ``.agentd/run/web/server.pid`` (a folder of its own: never taken for
    a role's)."""
    return run_dir(config) / "web" / "server.pid"


def spawn_web(
    config: Config, *, host: str, port: int, read_only: bool = False, verbose: int = 0, extra: Sequence[str] = ()
) -> Pending:
    """Start ``agentd web`` detached, holding ``web_pid_path``; :meth:`Pending.wait` tells when it listens."""
    seen = web_probe(config)
    if seen.running:
        return Pending(WEB, None, -1, "", StartResult(WEB, "running", seen.info.pid if seen.info else None))
    tail = ["web", "--host", host, "--port", str(port), "--pid-file", str(web_pid_path(config))]
    tail += ["--read-only"] if read_only else []
    return _detached(config, WEB, [*tail, *extra], web_log_path(config), verbose)


def automation_pid_path(config: Config) -> Path:
    """The background automation process's PID file, ``.agentd/run/automation/process.pid`` (beside the active lock,
    ``active.pid``, which whichever automation process is active holds)."""
    return run_dir(config) / AUTOMATION / "process.pid"


def automation_active_path(config: Config) -> Path:
    """The active lock, ``.agentd/run/automation/active.pid``: held by the one automation process that runs the
    schedules, rules and hooks (the others stand by)."""
    return run_dir(config) / AUTOMATION / "active.pid"


def spawn_automation(config: Config, *, verbose: int = 0) -> Pending:
    """Start ``agentd automation`` detached, holding ``automation_pid_path``; :meth:`Pending.wait` tells when it is
    up (active, or standby behind another automation process)."""
    seen = automation_probe(config)
    if seen.running:
        return Pending(
            AUTOMATION, None, -1, "", StartResult(AUTOMATION, "running", seen.info.pid if seen.info else None)
        )
    log = automation_log_path(config)
    tail = ["automation", "--pid-file", str(automation_pid_path(config)), "--log-file", str(log)]
    return _detached(config, AUTOMATION, tail, log, verbose)


def start(config: Config, role: str, **options: Any) -> StartResult:
    """Start one role's daemon in the background and wait until it is really up."""
    return spawn(config, role, **options).wait()


class StopResult(Record):
    """What ``stop`` did for one daemon."""

    _fields = ("name", "state", "pid", "took")

    name: str
    state: str  # stopped | killed | not-running
    pid: int | None = None
    took: float = 0.0

    def __init__(self, name: str, state: str, pid: int | None = None, took: float = 0.0) -> None:
        set_field(self, "name", name)
        set_field(self, "state", state)
        set_field(self, "pid", pid)
        set_field(self, "took", took)

    def line(self) -> str:
        if self.state == "not-running":
            return f"{self.name} is not running"
        if self.state == "killed":
            return f"{self.name} did not drain in time; killed its process group (pid {self.pid})"
        return f"{self.name} stopped (pid {self.pid}, drained in {self.took:.1f} s)"


def flags_of(info: PidInfo) -> dict[str, Any]:
    """The options a background daemon was started with (from its PID file's argv), to start it again alike:
    ``interval``, ``concurrency``, ``log_format``, ``verbose``."""
    argv = info.argv
    flags: dict[str, Any] = {"verbose": sum(1 for arg in argv if arg == "-v")}
    names: dict[str, tuple[str, Any]] = {
        "--interval": ("interval", float),
        "--concurrency": ("concurrency", int),
        "--log-format": ("log_format", str),
    }
    for position, arg in enumerate(argv[:-1]):
        if arg in names:
            key, kind = names[arg]
            with contextlib.suppress(ValueError):
                flags[key] = kind(argv[position + 1])
    if "interval" not in flags and info.interval is not None and "--interval" in argv:
        flags["interval"] = info.interval
    return flags


def _exited(pid: int, started: int | None) -> bool:
    """Whether the process is gone: no such process, a zombie waiting to be reaped, or a new process with its PID."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            data = handle.read()
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0] == "Z" or (started is not None and int(fields[19]) != started)


def _wait_gone(path: Path, pid: int, started: int | None, deadline: float) -> bool:
    """Wait until the PID file's lock is free and the process itself has exited (it releases the lock a moment
    before it ends)."""
    while time.monotonic() < deadline:
        if not probe(path).running and _exited(pid, started):
            return True
        time.sleep(0.05)
    return not probe(path).running and _exited(pid, started)


def stop(seen: Probe, timeout: float, name: str | None = None) -> StopResult:
    """SIGTERM the daemon (it drains), wait up to ``timeout``, then SIGKILL its process group."""
    name = name or ".".join(part for part in role_of(seen.path) if part)
    if not seen.running or seen.info is None:
        return StopResult(name, "not-running")
    pid = seen.info.pid
    if seen.info.proc_start is not None and process_start(pid) not in (None, seen.info.proc_start):
        return StopResult(name, "not-running")  # the lock holder is not the process the file names: leave it
    import signal  # (here: `agentd status` imports this module and stops nothing)

    began = time.monotonic()
    started = seen.info.proc_start
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(seen.path, pid, started, began + timeout):
        return StopResult(name, "stopped", pid, time.monotonic() - began)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    _wait_gone(seen.path, pid, started, time.monotonic() + 10)
    return StopResult(name, "killed", pid, time.monotonic() - began)


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file (read from the end, so large logs are cheap)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = 8192
            data = b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                handle.seek(size)
                data = handle.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:] if lines else []
