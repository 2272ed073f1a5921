"""The first hour of a newcomer (issue 12): a fresh `agentd init` project, as the README and the tutorial run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.cli import main
from tests.conftest import run_agentd


def _fresh(tmp_path: Path, commands: dict[str, list[str]]) -> Path:
    """`agentd init` in an empty folder, then one `[roles.NAME]` table with only a command per role (as the README)."""
    root = tmp_path / "fresh"
    root.mkdir()
    assert run_agentd("init", cwd=root).returncode == 0
    with open(root / "agentd.toml", "a", encoding="utf-8") as config:
        for name, argv in commands.items():
            config.write(f"\n[roles.{name}]\ncommand = {json.dumps(argv)}\n")
    return root


def _status(root: Path, task_id: str) -> str:
    tasks = json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"]
    return str(next(task for task in tasks if task["id"] == task_id)["status"])


def test_config_show_names_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """config show: defaults say "default", a role table's keys name the file and table, --queue says "flag"."""
    root = _fresh(tmp_path, {"builder": ["true"]})
    shown = json.loads(run_agentd("config", "show", "--json", cwd=root).stdout)
    builder = shown["roles"]["builder"]
    assert builder["command"] == {"value": ["true"], "from": "agentd.toml [roles.builder]"}
    assert builder["on_success"] == {"value": "awaiting_test", "from": "default"}
    assert list(shown["roles"]) == ["planner", "builder", "tester", "refiner", "integrator"]
    assert shown["settings"]["queue"]["from"] == "agentd.toml"
    for name in ("AGENTD_ROOT", "AGENTD_QUEUE", "AGENTD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(root)
    other = json.loads(in_process(["--queue", "other.json", "config", "show", "--json"], capsys)[1])
    assert other["settings"]["queue"] == {"value": "other.json", "from": "flag --queue"}
    monkeypatch.setenv("AGENTD_QUEUE", "e.json")
    env = json.loads(in_process(["config", "show", "--json"], capsys)[1])
    assert env["settings"]["queue"]["from"] == "env AGENTD_QUEUE"
    monkeypatch.delenv("AGENTD_QUEUE")
    code, out, _ = in_process(["config", "show"], capsys)
    assert code == 0
    assert any(line.split()[:2] == ["builder", "command"] for line in out.splitlines())


def test_default_pipeline_flows_end_to_end_and_doctor_is_quiet(tmp_path: Path) -> None:
    """Fresh init + a command per role: planner -> builder -> tester (exit 1: tests fail) -> refiner -> tester ->
    integrator -> done; doctor reports nothing and exits 0 before and after."""
    tester = [sys.executable, "-c", "import os, sys; sys.exit(0 if os.path.exists('fixed') else 1)"]
    refiner = [sys.executable, "-c", "open('fixed', 'w').close()"]
    ok = ["true"]
    root = _fresh(tmp_path, {"planner": ok, "builder": ok, "tester": tester, "refiner": refiner, "integrator": ok})
    doctor = run_agentd("doctor", cwd=root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert run_agentd("queue", "add", "S1", "--title", "A story", "--status", "needs_plan", cwd=root).returncode == 0
    seen = [_status(root, "S1")]
    for role in ("planner", "builder", "tester", "refiner", "tester", "integrator"):
        result = run_agentd("--role", role, "--drain", cwd=root)
        assert result.returncode == 0, result.stderr
        seen.append(_status(root, "S1"))
    flow = ["needs_plan", "ready", "awaiting_test", "needs_adapt", "awaiting_test", "ready_for_integrator", "done"]
    assert seen == flow
    doctor = run_agentd("doctor", cwd=root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


def test_daemon_flags_before_a_subcommand_are_named(tmp_path: Path) -> None:
    """`agentd --once queue list` says which flag, that it runs a daemon, and which subcommand it cannot precede."""
    root = _fresh(tmp_path, {})
    result = run_agentd("--once", "--interval", "5", "queue", "list", cwd=root)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --interval, --once run a role daemon (`agentd --role ROLE ...`) and cannot come before the "
        "subcommand 'queue'; options of `agentd queue` go after it"
    )


def test_status_on_an_unparsable_queue_shows_unknowns_not_guesses(tmp_path: Path) -> None:
    """status while the queue does not parse: WIP limit unknown (not 1), the error shown, no "attempt None"."""
    from agentd.cli.background import _running_line

    root = _fresh(tmp_path, {"builder": ["true"]})
    (root / "SPRINT_QUEUE.json").write_text('{"wip_limits": {"builder": 3}, "tasks": [\n]\n')
    data = json.loads(run_agentd("status", "builder", "--json", cwd=root).stdout)
    assert data["queue_error"] and data["roles"][0]["wip_limit"] is None and data["roles"][0]["wip"] is None
    plain = run_agentd("status", "builder", cwd=root).stdout
    assert "?/?" in plain and "?/1" not in plain
    line = _running_line({"id": "B1", "title": None, "attempt": None, "token": 4, "runtime_s": 3, "heartbeat_age_s": 1})
    assert "attempt" not in line and line.startswith("B1 ") and "token 4" in line


def test_status_watch_ends_with_130_on_ctrl_c(tmp_path: Path) -> None:
    """status --watch interrupted by SIGINT (Ctrl-C) exits 130, as the exit-code page says."""
    root = _fresh(tmp_path, {"builder": ["true"]})
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentd", "status", "--watch", "--every", "0.2"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline()  # it is up and drawing
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


INTERRUPT_AT_IMPORT = """
import os, signal, sys


class _InterruptAt:
    \"\"\"Ctrl-C (a real SIGINT to this process) the moment the named module starts to load.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("AGENTD_TEST_SIGINT_AT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, _InterruptAt())
"""


@pytest.mark.parametrize(
    ("module", "argv"),
    [("agentd.cli.fast", ["queue", "list"]), ("agentd.cli.root", ["config", "show"])],
    ids=["while-the-fast-path-loads", "while-click-loads"],
)
def test_ctrl_c_while_the_command_loads_says_interrupted_and_exits_130(
    tmp_path: Path, module: str, argv: list[str]
) -> None:
    """Ctrl-C that lands while agentd's modules are still loading ends with the one line and exit code 130 that it
    gets once the command runs, not with Python's traceback."""
    root = _fresh(tmp_path, {"builder": ["true"]})
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT_AT_IMPORT)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(hook), "AGENTD_TEST_SIGINT_AT": module}
    env.pop("AGENTD_ROOT", None)
    done = subprocess.run(
        [sys.executable, "-m", "agentd", *argv], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (130, "agentd: interrupted\n"), done.stderr[-2000:]


def test_help_lists_every_exit_code_and_cuts_no_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--help on a narrow terminal: command summaries whole (no "…"), exit codes 8 and 130 listed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    for args in ((), ("queue",), ("leases",), ("service",), ("config",)):
        code, out, _ = in_process([*args, "--help"], capsys)
        assert code == 0
        assert "…" not in out and "..." not in out.split("Commands:")[-1], args
    top = run_agentd("--help", cwd=tmp_path, env={"COLUMNS": "80"}).stdout
    assert "8 cannot read or write a file" in top and "130 interrupted" in top
    assert "…" not in top


def test_version_is_the_package_version(tmp_path: Path) -> None:
    """agentd --version works anywhere (no project needed) and prints the package's version."""
    from agentd import __version__

    result = run_agentd("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"agentd, version {__version__}"


def in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI's own entry point in this process (the error boundary and exit codes included): exit code, out, err."""
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_outside_a_project_every_command_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No agentd.toml and no queue: each command exits 6 with one line saying so; init, help, completion still work."""
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    line = "agentd: no agentd project here (no agentd.toml or queue): run `agentd init`, or pass --root"
    real = run_agentd("queue", "list", cwd=empty)  # once as a real process; the rest through the same entry point
    assert (real.returncode, real.stderr.strip()) == (6, line)
    for name in ("AGENTD_ROOT", "AGENTD_QUEUE", "AGENTD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(empty)
    commands = [
        ["queue", "list"],
        ["queue", "add", "A", "--title", "t"],
        ["status"],
        ["start"],
        ["stop"],
        ["doctor"],
        ["leases", "prune"],
        ["events"],
        ["config", "show"],
        ["--role", "builder", "--once"],
        ["service", "install", "builder"],
    ]
    for args in commands:
        code, _, err = in_process(args, capsys)
        assert (code, err.strip()) == (6, line), args
    assert list(empty.iterdir()) == []
    monkeypatch.chdir(tmp_path)
    code, _, err = in_process(["--root", "nothing-here", "queue", "list"], capsys)
    assert code == 6 and err.strip() == "agentd: nothing-here: " + line.removeprefix("agentd: ")
    monkeypatch.chdir(empty)
    for args in (["--help"], ["completion", "bash"], ["queue", "--help"], ["--version"]):
        assert in_process(args, capsys)[0] == 0, args
    assert in_process(["init"], capsys)[0] == 0
    assert in_process(["queue", "list"], capsys)[0] == 0


def test_make_agents_targets_need_a_project(tmp_path: Path) -> None:
    """make agents-* refuse without PROJECT=DIR (exit 2, nothing created in the checkout) and act on PROJECT."""
    checkout = Path(__file__).resolve().parents[2]
    had_state = (checkout / ".agentd").exists()
    make = ["make", "--no-print-directory", "-o", ".venv/.installed", "-C", str(checkout)]
    refused = subprocess.run([*make, "agents-start"], capture_output=True, text=True, check=False, timeout=60)
    assert refused.returncode == 2
    assert "agents-* act on your project, not on this checkout" in refused.stderr
    assert (checkout / ".agentd").exists() == had_state
    root = _fresh(tmp_path, {})
    status = subprocess.run(
        [*make, "agents-status", f"PROJECT={root}"], capture_output=True, text=True, check=False, timeout=60
    )
    assert status.returncode != 0 and "planner" in status.stdout and "stopped" in status.stdout
