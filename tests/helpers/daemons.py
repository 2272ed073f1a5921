"""Real daemon processes for integration tests: projects, configs, the recorder command, polling with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

RECORD = Path(__file__).resolve().with_name("record.py")
T = TypeVar("T")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(root: Path, roles: Mapping[str, Mapping[str, Any]], **top: Any) -> None:
    """agentd.toml from plain dicts (``defaults=`` becomes the [defaults] table); the roles given are the whole
    workflow unless ``roles_replace_defaults=False`` is passed."""
    defaults = top.pop("defaults", {})
    if roles:
        top.setdefault("roles_replace_defaults", True)
    lines = [f"{key} = {toml_value(value)}" for key, value in top.items()]
    lines.append("[defaults]")
    lines += [f"{key} = {toml_value(value)}" for key, value in defaults.items()]
    for name, spec in roles.items():
        lines.append(f"[roles.{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in spec.items()]
    (root / "agentd.toml").write_text("\n".join(lines) + "\n")


def write_queue(root: Path, tasks: list[dict[str, Any]], wip: Mapping[str, int] | None = None) -> Path:
    path = root / "SPRINT_QUEUE.json"
    path.write_text(json.dumps({"wip_limits": dict(wip or {}), "tasks": tasks}, indent=2) + "\n")
    return path


def task(task_id: str, status: str = "ready", **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "title": f"task {task_id}",
        "status": status,
        "agent": None,
        "lease": None,
        "dependencies": [],
        **extra,
    }


def recorder(log: Path, *args: str) -> list[str]:
    """A role command that records each execution to ``log``."""
    return [sys.executable, str(RECORD), str(log), *args]


def start(root: Path, role: str, *extra: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real daemon process (its stderr goes to ``<root>/<role>.<pid>.err`` for diagnostics)."""
    err = open(root / f"daemon-{role}-{time.monotonic_ns()}.err", "wb")  # noqa: SIM115
    full_env = {**os.environ, **(env or {})}
    full_env.pop("AGENTD_ROOT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "agentd", "--root", str(root), "--role", role, *extra],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=full_env,
        cwd=root,
    )


def stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=10)


def wait_for(condition: Callable[[], T], timeout: float, what: str, every: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` seconds.

    Between looks it sleeps ``every`` s, or three times what the look took if that is longer (at most 2 s, and never
    past the deadline: a look always starts at it): a look that starts a process (an agentd command, a few hundred ms
    of CPU) then takes a quarter of the time instead of a core that the daemons under test and other tests need."""
    deadline = time.monotonic() + timeout
    while True:
        began = time.monotonic()
        value = condition()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(min(max(every, min(3 * (now - began), 2.0)), deadline - now))


def assert_survives_sighup_storm(setup: str, wake: str, root: Path) -> None:
    """Run, in a python of its own, *setup* (which installs the SIGHUP handler under test, with ``sys.argv[1]`` the
    project *root*) and then, while a thread sends 2,000 real SIGHUPs to the process, *wake* (an object with clear and
    set) cleared and set over and over in the main thread, which the handler interrupts there; it prints "survived"
    once the signals are sent, which this checks. A handler that waits on a lock the interrupted code holds hangs it
    (the timeout) or nests until a RecursionError."""
    script = (
        "import os, signal, sys, threading, time\n" + setup + "\ndone = threading.Event()\n"
        "def send():\n"
        "    for _ in range(2000):\n"
        "        os.kill(os.getpid(), signal.SIGHUP)\n"
        "        time.sleep(0.0002)\n"
        "    done.set()\n"
        "threading.Thread(target=send, daemon=True).start()\n"
        "while not done.is_set():\n"
        f"    {wake}.clear()\n"
        f"    {wake}.set()\n"
        "print('survived')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0 and done.stdout.strip() == "survived", (done.returncode, done.stderr[-2000:])


def events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def queue(root: Path) -> dict[str, Any]:
    return json.loads((root / "SPRINT_QUEUE.json").read_text())


def tasks_by_id(root: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            out[item["id"]] = item
            walk(item.get("subtasks") or [])

    walk(queue(root)["tasks"])
    return out


def lock_held(path: Path) -> bool:
    """Whether a flock on *path* is held by another open file description (a peer's probe is refused)."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def max_concurrency(records: list[dict[str, Any]]) -> int:
    """The largest number of executions running at one instant (from start/end records)."""
    points = []
    for r in records:
        if r["event"] == "start":
            points.append((r["t"], 1))
        elif r["event"] == "end":
            points.append((r["t"], -1))
    running = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        running += delta
        peak = max(peak, running)
    return peak


def drain_in_thread(daemon: Any, timeout: float = 90) -> int:
    """Run ``daemon.run(Mode.DRAIN)`` (an agentd.run.daemon.Daemon) on a thread; its exit code, or an AssertionError
    once ``timeout`` s have passed (the daemon then stopped as by a SIGTERM)."""
    import threading

    from agentd.run.daemon import Mode

    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(daemon.run(Mode.DRAIN)), daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        daemon._signal(signal.SIGTERM, None)  # (as a SIGTERM would: finish and stop)
        runner.join(30)
        raise AssertionError(f"the drain did not end within {timeout:g} s")
    return codes[0]
