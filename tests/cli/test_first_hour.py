"""The first hour of a newcomer (issue 12): a fresh `agentd init` project, as the README and the tutorial run it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
    return str(json.loads(run_agentd("queue", "show", task_id, "--json", cwd=root).stdout)["status"])


def test_config_show_names_where_each_value_came_from(tmp_path: Path) -> None:
    """config show: defaults say "default", a role table's keys name the file and table, --queue says "flag"."""
    root = _fresh(tmp_path, {"builder": ["true"]})
    shown = json.loads(run_agentd("config", "show", "--json", cwd=root).stdout)
    builder = shown["roles"]["builder"]
    assert builder["command"] == {"value": ["true"], "from": "agentd.toml [roles.builder]"}
    assert builder["on_success"] == {"value": "awaiting_test", "from": "default"}
    assert list(shown["roles"]) == ["planner", "builder", "tester", "refiner", "integrator"]
    assert shown["settings"]["queue"]["from"] == "agentd.toml"
    other = json.loads(run_agentd("--queue", "other.json", "config", "show", "--json", cwd=root).stdout)
    assert other["settings"]["queue"] == {"value": "other.json", "from": "flag --queue"}
    env = json.loads(run_agentd("config", "show", "--json", cwd=root, env={"AGENTD_QUEUE": "e.json"}).stdout)
    assert env["settings"]["queue"]["from"] == "env AGENTD_QUEUE"
    plain = run_agentd("config", "show", cwd=root)
    assert plain.returncode == 0
    assert any(line.split()[:2] == ["builder", "command"] for line in plain.stdout.splitlines())


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
