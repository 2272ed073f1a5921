"""The [workspaces] table and the roles' merge keys: read from agentd.toml, wrong values named by their key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.errors import ConfigInvalid
from agentd.workspaces import launch
from agentd.workspaces.settings import owner


def build(data: dict[str, Any], tmp_path: Path) -> config_mod.Config:
    return config_mod.build(data, root=tmp_path, path=tmp_path / "agentd.toml")


def test_no_table_means_no_worktrees(tmp_path: Path) -> None:
    """Without [workspaces] tasks run in the project root and no role merges."""
    config = build({}, tmp_path)
    assert not config.workspaces.enabled
    assert config.workspaces.merge_for("integrator") is None


def test_the_integrator_merges_by_default_in_worktree_mode(tmp_path: Path) -> None:
    """mode = worktree: the integrator merges ("merge", to needs_adapt on conflict); the others do not."""
    config = build({"workspaces": {"mode": "worktree", "base": "trunk"}}, tmp_path)
    assert config.workspaces.base == "trunk"
    assert config.workspaces.merge_for("integrator") == ("merge", "needs_adapt")
    assert config.workspaces.merge_for("builder") is None


def test_a_role_sets_its_own_merge_and_on_conflict(tmp_path: Path) -> None:
    """merge = "rebase" / true / false and on_conflict per role."""
    data = {
        "workspaces": {"mode": "worktree"},
        "roles": {
            "builder": {"merge": True, "on_conflict": "blocked"},
            "integrator": {"merge": False},
            "tester": {"merge": "rebase"},
        },
    }
    config = build(data, tmp_path)
    assert config.workspaces.merge_for("builder") == ("merge", "blocked")
    assert config.workspaces.merge_for("integrator") is None
    assert config.workspaces.merge_for("tester") == ("rebase", "needs_adapt")


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"mode": "worktrees"}, "$.workspaces.mode"),
        ({"branch": "agentd/fixed"}, "$.workspaces.branch"),
        ({"branch": "agentd..{task_id}"}, "$.workspaces.branch"),
        ({"path": "/tmp/{task_id}"}, "$.workspaces.path"),
        ({"path": "../{task_id}"}, "$.workspaces.path"),
        ({"base": "has space"}, "$.workspaces.base"),
        ({"setup": "make venv"}, "$.workspaces.setup"),
        ({"keep": "sometimes"}, "$.workspaces.keep"),
        ({"colour": "blue"}, "$.workspaces"),
    ],
)
def test_a_wrong_value_is_a_config_error_naming_its_key(table: dict[str, Any], where: str, tmp_path: Path) -> None:
    """Each wrong [workspaces] value is one ConfigInvalid naming the file and the key's JSON path."""
    with pytest.raises(ConfigInvalid) as caught:
        build({"workspaces": table}, tmp_path)
    assert caught.value.json_path is not None and caught.value.json_path.startswith(where), caught.value
    assert "agentd.toml" in str(caught.value) and "\n" not in str(caught.value)


def test_a_wrong_merge_strategy_names_the_role_key(tmp_path: Path) -> None:
    """merge = "squash" is refused at $.roles.integrator.merge."""
    with pytest.raises(ConfigInvalid) as caught:
        build({"roles": {"integrator": {"merge": "squash"}}}, tmp_path)
    assert str(caught.value.json_path).startswith("$.roles.integrator")


def test_a_subtask_shares_its_parents_workspace_unless_it_has_its_own() -> None:
    """owner() walks up the parents; workspace = "own" stops it; a cycle of parents ends."""
    parents = {"S1": "P1", "S2": "S1", "P1": None, "X": "Y", "Y": "X"}
    fields = {"S2": None, "S1": None, "P1": None}
    assert owner("S2", parents.get, fields.get) == "P1"
    assert owner("S2", parents.get, {"S1": "own"}.get) == "S1"
    assert owner("P1", parents.get, fields.get) == "P1"
    assert owner("X", parents.get, {}.get) in ("X", "Y")


def test_a_task_id_git_refuses_sends_the_task_to_on_failure_with_the_reason(tmp_path: Path) -> None:
    """A task id that makes a bad branch name writes the result file naming on_failure and why; no git runs."""
    config = build({"workspaces": {"mode": "worktree"}}, tmp_path)
    result = tmp_path / "results" / "x.json"
    with pytest.raises(ValueError, match="git refuses"):
        launch.for_run(config, config.role("builder"), "A..B", None, result)
    assert '"status": "blocked"' in result.read_text() and "A..B" in result.read_text()
