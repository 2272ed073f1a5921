"""scripts/agents-cli.sh as a real bash process: usage, finding agentd, colour, exit codes, all roles in one call."""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import write_config, write_queue

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "agents-cli.sh"
VENV_BIN = Path(sys.executable).parent  # the venv of the running interpreter holds the dev agentd
BASH = shutil.which("bash") or "/bin/bash"
ESCAPE = re.compile(r"\x1b\[")
FIVE = ("planner", "builder", "tester", "refiner", "integrator")
PIPELINE = {
    "planner": ("needs_plan", "planning", "ready"),
    "builder": ("ready", "in_progress", "awaiting_test"),
    "tester": ("awaiting_test", "testing", "awaiting_refine"),
    "refiner": ("awaiting_refine", "refining", "awaiting_integration"),
    "integrator": ("awaiting_integration", "integrating", "done"),
}
FAKE_AGENTD = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$AGENTS_CLI_CALLS"
echo "fake agentd: $*"
exit "${FAKE_RC:-0}"
"""


def env_for(path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_") and k != "NO_COLOR"}
    return {**env, "PATH": path, **extra}


def run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The script under bash, stdout a pipe (not a terminal)."""
    return subprocess.run(
        [BASH, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_on_a_terminal(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The script with stdout and stderr on a pseudo-terminal; its exit code and everything it wrote."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [BASH, str(SCRIPT), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
        )
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError as exc:  # EIO: every writer has closed the terminal
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        code = proc.wait(timeout=60)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A project whose .venv/bin/agentd only records its arguments (and exits with $FAKE_RC)."""
    root = tmp_path / "fake-project"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "agentd.toml").write_text("")
    agentd = root / ".venv" / "bin" / "agentd"
    agentd.write_text(FAKE_AGENTD)
    agentd.chmod(0o755)
    return root


def calls(root: Path) -> list[str]:
    path = root / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def fake_env(root: Path, **extra: str) -> dict[str, str]:
    """PATH with the dev agentd too: the project's own .venv/bin/agentd must still win."""
    return env_for(f"{VENV_BIN}:{os.environ['PATH']}", AGENTS_CLI_CALLS=str(root / "calls.txt"), **extra)


# --- usage ----------------------------------------------------------------------------------------------------


def test_help_prints_usage_and_exits_0(tmp_path: Path) -> None:
    """--help and -h: usage with examples on stdout, exit 0."""
    for flag in ("--help", "-h"):
        result = run(flag, cwd=tmp_path, env=env_for(os.environ["PATH"]))
        assert result.returncode == 0
        assert result.stdout.startswith("Usage: agents-cli.sh COMMAND [ROLE ...]")
        assert "Examples:" in result.stdout


def test_unknown_or_missing_command_exits_2(tmp_path: Path) -> None:
    """An unknown command or none: a message on stderr, exit 2, nothing on stdout."""
    unknown = run("launch", cwd=tmp_path, env=env_for(os.environ["PATH"]))
    assert unknown.returncode == 2
    assert "unknown command 'launch'" in unknown.stderr and unknown.stdout == ""
    missing = run(cwd=tmp_path, env=env_for(os.environ["PATH"]))
    assert missing.returncode == 2 and "Usage:" in missing.stderr


def test_no_agentd_anywhere_exits_127(tmp_path: Path) -> None:
    """No .venv/bin/agentd in the project and none on PATH: a clear message, exit 127."""
    path = "/usr/bin:/bin"
    if shutil.which("agentd", path=path):
        pytest.skip(f"an agentd is installed in {path}")
    (tmp_path / "agentd.toml").write_text("")
    result = run("status", cwd=tmp_path, env=env_for(path))
    assert result.returncode == 127
    assert "agentd not found" in result.stderr and str(tmp_path / ".venv" / "bin" / "agentd") in result.stderr


# --- forwarding, with a recording agentd -------------------------------------------------------------------------


def test_the_projects_own_agentd_wins_and_is_found_from_a_subfolder(fake: Path) -> None:
    """Run from two folders down: the project's .venv/bin/agentd gets the command and every role, in one call."""
    result = run("start", *FIVE, "--interval", "30", cwd=fake / "sub" / "deeper", env=fake_env(fake))
    assert result.returncode == 0, result.stderr
    assert calls(fake) == [f"start {' '.join(FIVE)} --interval 30"]
    assert result.stdout == f"fake agentd: start {' '.join(FIVE)} --interval 30\n"


@pytest.mark.parametrize("code", [1, 3, 6])
def test_agentds_exit_code_is_passed_through(fake: Path, code: int) -> None:
    """Whatever agentd exits with, the script exits with (status 3: a role is not running)."""
    result = run("status", cwd=fake, env=fake_env(fake, FAKE_RC=str(code)))
    assert result.returncode == code


def test_logs_goes_through_every_role_with_its_options(fake: Path) -> None:
    """logs with five roles calls agentd five times (no counter stops the loop early), options passed to each."""
    result = run("logs", *FIVE, "-n", "5", cwd=fake, env=fake_env(fake))
    assert result.returncode == 0, result.stderr
    assert calls(fake) == [f"logs {role} -n 5" for role in FIVE]
    assert [line for line in result.stdout.splitlines() if line.startswith("==>")] == [f"==> {r} <==" for r in FIVE]


def test_logs_keeps_the_worst_exit_code_and_needs_a_role(fake: Path) -> None:
    """logs: agentd's non-zero code comes back after every role was shown; no role at all is a usage error."""
    failing = run("logs", "builder", "tester", cwd=fake, env=fake_env(fake, FAKE_RC="6"))
    assert failing.returncode == 6 and len(calls(fake)) == 2
    none = run("logs", cwd=fake, env=fake_env(fake))
    assert none.returncode == 2 and "logs needs a ROLE" in none.stderr
    several = run("logs", "builder", "tester", "-f", cwd=fake, env=fake_env(fake))
    assert several.returncode == 2


# --- colour ---------------------------------------------------------------------------------------------------


def test_no_escape_codes_when_not_on_a_terminal(fake: Path) -> None:
    """stdout a pipe: agentd's output as it is, no escape codes, not even for a failure."""
    for rc in ("0", "3"):
        result = run("status", cwd=fake, env=fake_env(fake, FAKE_RC=rc))
        assert not ESCAPE.search(result.stdout + result.stderr)
        assert result.stdout == "fake agentd: status\n"


def test_colour_on_a_terminal_unless_no_color(fake: Path) -> None:
    """On a terminal: a bold header and a red exit line; with NO_COLOR set (even empty) none at all."""
    code, coloured = run_on_a_terminal("status", "builder", cwd=fake, env=fake_env(fake, FAKE_RC="3", TERM="xterm"))
    assert code == 3
    assert ESCAPE.search(coloured) and "a role asked about is not running" in coloured
    for no_color in ("1", ""):
        env = fake_env(fake, FAKE_RC="3", TERM="xterm", NO_COLOR=no_color)
        code, plain = run_on_a_terminal("status", "builder", cwd=fake, env=env)
        assert code == 3
        assert "fake agentd: status builder" in plain and not ESCAPE.search(plain)


# --- real daemons ---------------------------------------------------------------------------------------------


def _background_commands_exist() -> str | None:
    """Why the real-daemon tests cannot run yet, or None."""
    agentd = VENV_BIN / "agentd"
    if not agentd.exists():
        return f"no agentd console script at {agentd}"
    for command in ("start", "stop", "status"):
        probe = subprocess.run([str(agentd), command, "--help"], capture_output=True, timeout=60, check=False)
        if probe.returncode != 0:
            return f"`agentd {command} --help` exits {probe.returncode}: background commands not there yet"
    return None


@pytest.fixture
def five(tmp_path: Path) -> Iterator[Path]:
    """A project with the five roles, each running `sleep 0.1`, and an empty queue; every daemon stopped after."""
    reason = _background_commands_exist()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "five"
    (root / "sub").mkdir(parents=True)
    roles = {
        name: {"claims": claims, "working": working, "on_success": success, "command": ["sleep", "0.1"]}
        for name, (claims, working, success) in PIPELINE.items()
    }
    write_config(root, roles, defaults={"grace": 1, "kill_after": 1})
    write_queue(root, [])
    yield root
    with contextlib.suppress(subprocess.TimeoutExpired):
        run_agentd("stop", cwd=root, timeout=120)


def dev_env() -> dict[str, str]:
    return env_for(f"{VENV_BIN}:{os.environ['PATH']}")


def running_roles(status_output: str) -> set[str]:
    return {line.split()[0] for line in status_output.splitlines() if re.match(r"^\S+\s+running\s", line)}


@pytest.mark.slow
def test_five_roles_start_status_stop_status(five: Path) -> None:
    """No role given: start starts all five, status exits 0 listing five, stop stops five, status then exits 3."""
    env, here = dev_env(), five / "sub"
    started = run("start", cwd=here, env=env)
    assert started.returncode == 0, started.stderr
    assert sorted(line.split()[0] for line in started.stdout.splitlines() if " started (pid " in line) == sorted(FIVE)
    status = run("status", cwd=here, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert running_roles(status.stdout) == set(FIVE)
    stopped = run("stop", cwd=here, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(line.split()[0] for line in stopped.stdout.splitlines() if " stopped" in line) == sorted(FIVE)
    after = run("status", cwd=here, env=env)
    assert after.returncode == 3
    assert running_roles(after.stdout) == set()


@pytest.mark.slow
def test_five_named_roles_in_one_call_all_act(five: Path) -> None:
    """`start planner builder tester refiner integrator`: all five come up, not only the first."""
    env = dev_env()
    started = run("start", *FIVE, cwd=five, env=env)
    assert started.returncode == 0, started.stderr
    assert sorted(line.split()[0] for line in started.stdout.splitlines() if " started (pid " in line) == sorted(FIVE)
    assert run("status", *FIVE, cwd=five, env=env).returncode == 0
    again = run("start", *FIVE, cwd=five, env=env)
    assert again.returncode == 0 and again.stdout.count("is already running") == 5
    stopped = run("stop", *FIVE, cwd=five, env=env)
    assert stopped.stdout.count(" stopped") == 5, stopped.stdout
    assert run("status", "builder", cwd=five, env=env).returncode == 3
