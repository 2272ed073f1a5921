"""``agentd workspace list|path|clean``: the git worktrees of tasks in worktree mode."""

from __future__ import annotations

from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import Group, emit_json, info, table
from agentd.errors import ExitCode, TaskNotFound

pass_app = click.make_pass_decorator(App)


def _human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _tasks(app: App) -> tuple[dict[str, str], dict[str, Any]]:
    """Task id -> status, and task id -> (parent, workspace field), from the queue."""
    from agentd.core.model import walk

    snapshot = app.store().read()
    statuses = {task.id: task.status for task in snapshot.tasks}
    shape: dict[str, Any] = {}
    for _path, raw, parent in walk(snapshot.data.get("tasks") or []):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            shape[raw["id"]] = (parent or raw.get("parent"), raw.get("workspace"))
    return statuses, shape


def _off(app: App) -> bool:
    if app.config.workspaces.enabled:
        return False
    click.echo('agentd: worktree mode is off ([workspaces] mode = "none"): tasks run in the project root', err=True)
    return True


@click.group(cls=Group)
def workspace() -> None:
    """The git worktrees of tasks (worktree mode: [workspaces] mode = "worktree")."""


@workspace.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_app
def list_(app: App, as_json: bool) -> int:
    """List each task's worktree: task, branch, path, state, size on disk, and its task's status.

    State is ready, half-made (a run died making it: the next run makes it again) or missing (its folder is gone:
    the next run makes it again). Status "-" means the task is no longer in the queue (`agentd workspace clean`).

    \b
    Examples:
      agentd workspace list
      agentd workspace list --json | jq '.[] | select(.status == null) | .path'
    """
    from agentd.workspaces import inventory

    if _off(app):
        return ExitCode.FAILURE
    statuses, _ = _tasks(app)
    entries = inventory.inventory(app.config, statuses)
    if as_json:
        emit_json([entry.to_dict() for entry in entries])
        return ExitCode.OK
    if not entries:
        info("no worktrees")
        return ExitCode.OK
    rows = [(e.task_id, e.branch or "-", e.path, e.state, _human(e.size), e.status or "-") for e in entries]
    table(["task", "branch", "path", "state", "size", "status"], rows)
    return ExitCode.OK


@workspace.command("path")
@click.argument("task_id")
@pass_app
def path(app: App, task_id: str) -> int:
    """Print the folder TASK_ID works in (a subtask may share its parent's).

    Exit 6 when there is no such task, or its worktree is not made yet (it is, when the task is first claimed).

    \b
    Examples:
      cd "$(agentd workspace path B1)"
      git -C "$(agentd workspace path B1)" log --oneline main..
    """
    from agentd.workspaces.settings import owner

    if _off(app):
        return ExitCode.FAILURE
    statuses, shape = _tasks(app)
    if task_id not in statuses:
        raise TaskNotFound(task_id, app.config.queue_path)
    whose = owner(task_id, lambda t: shape.get(t, (None, None))[0], lambda t: shape.get(t, (None, None))[1])
    folder = app.config.root / app.config.workspaces.path_for(whose)
    if not folder.is_dir():
        click.echo(
            f"agentd: {task_id} has no worktree yet at {folder} (it is made when the task is first claimed)", err=True
        )
        return ExitCode.NOT_FOUND
    info(str(folder))
    return ExitCode.OK


@workspace.command("clean")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--force", is_flag=True, help="Remove worktrees with uncommitted changes too (those changes are lost).")
@pass_app
def clean(app: App, dry_run: bool, force: bool) -> int:
    """Remove the worktrees of tasks that are final (done, cancelled, ...) or no longer in the queue.

    Worktrees that `keep` kept are removed too; a worktree whose task is still in flight never is, nor one with
    uncommitted changes unless --force. Branches stay unless [workspaces] delete_branch = true.

    \b
    Examples:
      agentd workspace clean --dry-run
      agentd workspace clean
    """
    from agentd.workspaces import inventory

    if _off(app):
        return ExitCode.FAILURE
    statuses, _ = _tasks(app)
    workflow = app.config.workflow
    final = set(workflow.done_statuses) | set(workflow.final_statuses)
    entries = inventory.inventory(app.config, statuses, sizes=False)
    chosen = [entry for entry in entries if inventory.why_cleanable(entry, final)]
    if not chosen:
        info("nothing to clean")
        return ExitCode.OK
    for line in inventory.clean(app.config, chosen, dry_run=dry_run, force=force):
        info(line)
    return ExitCode.OK
