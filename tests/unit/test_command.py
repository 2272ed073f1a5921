"""A task's command line: placeholders, and the ones agentd does not know."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.core.clock import FakeClock
from agentd.core.command import unknown_placeholders
from agentd.core.workflow import Role
from agentd.report import doctor
from agentd.run.daemon import Daemon, Mode

ROLE = '[roles.builder]\nclaims = "ready"\nworking = "in_progress"\non_success = "done"\n'


def test_unknown_placeholders_are_named_and_json_braces_are_not() -> None:
    """`{tsk_id}` is a typo worth a warning; `{"a": 1}` and `{}` are text, not placeholders."""
    role = Role(
        name="builder",
        claims=("ready",),
        working="in_progress",
        on_success="done",
        command=("agent", "--task", "{tsk_id}", "--json", '{"a": 1}', "{}", "{role}"),
        prompt="Work on {task_id} in {workdir} ({title}) {{escaped}}",
    )
    assert unknown_placeholders(role) == ["tsk_id", "workdir", "escaped"]


def _project(tmp_path: Path, command: str) -> config_mod.Config:
    (tmp_path / "agentd.toml").write_text(ROLE + f"command = {command}\n", encoding="utf-8")
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n', encoding="utf-8")
    return config_mod.load(root=tmp_path, environ={})


def test_a_daemon_warns_once_at_start_about_unknown_placeholders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning names the role, the placeholder and the known ones; it is logged once, at start."""
    config = _project(tmp_path, '["echo", "{tsk_id}"]')
    daemon = Daemon(config, "builder", watch=False)
    with caplog.at_level(logging.WARNING):
        daemon.run(Mode.ONCE)
        daemon.run(Mode.ONCE)
    warned = [r.getMessage() for r in caplog.records if "{tsk_id}" in r.getMessage()]
    assert len(warned) == 2  # once per start
    assert "builder" in warned[0] and "{task_id}" in warned[0]


def test_doctor_reports_unknown_placeholders(tmp_path: Path) -> None:
    """doctor names the role and the placeholder (a warning: the command still runs, with the braces as written)."""
    config = _project(tmp_path, '["echo", "{tsk_id}"]')
    found = [f for f in doctor.diagnose(config, FakeClock().now(), mount_table="") if f.code == "unknown-placeholder"]
    assert len(found) == 1
    assert found[0].severity == "warning" and found[0].subject == "builder"
    assert "{tsk_id}" in found[0].message
