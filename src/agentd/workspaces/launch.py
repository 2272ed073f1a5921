"""What the daemon adds to a task's run in worktree mode (pure: no git, no disk).

The daemon never runs git itself while it starts a task: it names the task's branch and folder up front and wraps
the command's argv in the workspace step (:mod:`agentd.workspaces.step`), which runs inside the task's supervised
process tree (so cancel, timeouts and the kill of a dead daemon's tasks cover it too): it makes the worktree, runs
``setup`` once, runs the command there and, for a role that merges, merges the branch back after a success.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agentd.core.record import Record, set_field
from agentd.workspaces.settings import WorkspaceSettings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentd.config import Config
    from agentd.core.workflow import Role

STEP_MODULE = "agentd.workspaces.step"


class Plan(Record):
    """A task's workspace for one run: where, on which branch, and the argv that runs the command there."""

    _fields = ("owner", "branch", "path", "prefix")

    owner: str  # the task whose worktree this is (a subtask shares its parent's)
    branch: str
    path: Path
    prefix: tuple[str, ...]  # argv before ``--`` and the command

    def __init__(self, owner: str, branch: str, path: Path, prefix: tuple[str, ...]) -> None:
        set_field(self, "owner", owner)
        set_field(self, "branch", branch)
        set_field(self, "path", path)
        set_field(self, "prefix", prefix)

    def wrap(self, argv: list[str]) -> list[str]:
        """The command's argv, run by the workspace step."""
        return [*self.prefix, "--", *argv]

    def environment(self) -> dict[str, str]:
        return {"AGENTD_WORKSPACE": str(self.path), "AGENTD_BRANCH": self.branch}


def settings_dict(settings: WorkspaceSettings) -> dict[str, Any]:
    """The ``[workspaces]`` table as the step reads it back (WorkspaceSettings.from_config)."""
    return {
        "mode": settings.mode,
        "base": settings.base,
        "branch": settings.branch,
        "path": settings.path,
        "setup": list(settings.setup),
        "keep": settings.keep.value,
        "delete_branch": settings.delete_branch,
    }


def plan(
    settings: WorkspaceSettings,
    *,
    root: Path,
    state_dir: Path,
    role: str,
    on_success: str,
    task_id: str,
    owner: str | None = None,
    unblock_from: str | None = None,
) -> Plan:
    """The run's workspace; ValueError (saying why) when the task's id makes a branch name git refuses."""
    owner = owner or task_id
    branch = settings.branch_for(owner)
    path = Path(root) / settings.path_for(owner)
    spec: dict[str, Any] = {
        "root": str(root),
        "state_dir": str(state_dir),
        "role": role,
        "task": task_id,
        "owner": owner,
        "settings": settings_dict(settings),
    }
    merge = settings.merge_for(role)
    if merge is not None:
        spec.update(merge=merge[0], on_conflict=merge[1], on_success=on_success)
        if merge[1] == unblock_from:  # say why, or the unblock rule would send it straight back
            spec["hold"] = True
    prefix = (sys.executable, "-m", STEP_MODULE, json.dumps(spec, separators=(",", ":")))
    return Plan(owner, branch, path, prefix)


def for_run(config: Config, role: Role, task_id: str, owner: str | None, result_path: Path) -> Plan | None:
    """The run's plan in worktree mode (None otherwise). A task id git refuses as a branch is the task's own
    problem: its result file sends it to the role's on_failure with the reason, and ValueError ends the start."""
    settings = config.workspaces
    if not settings.enabled:
        return None
    try:
        return plan(
            settings,
            root=config.root,
            state_dir=config.state_dir,
            role=role.name,
            on_success=role.on_success,
            task_id=task_id,
            owner=owner,
            unblock_from=config.workflow.unblock.from_status if config.workflow.unblock else None,
        )
    except ValueError as exc:
        # blocked_reason: a task the unblock rule would move on (blocked -> ready) stays where it is sent
        result = {"status": role.on_failure, "note": str(exc), "fields": {"blocked_reason": str(exc)}}
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result) + "\n", "utf-8")
        raise
