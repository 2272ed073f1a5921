"""``agentd queue ...``: validate, list, show, add, update, remove, set-status, retry, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import Group, emit_json, info, table, warn
from agentd.cli.queue_ops import LIST_HEADERS, list_rows, transact
from agentd.core import edits
from agentd.core.listing import task_json
from agentd.errors import ExitCode, TaskNotFound, display_path

pass_app = click.make_pass_decorator(App)


@click.group(
    cls=Group,
    lazy={
        "history": "agentd.cli.events_cmd:history",
        "archive": "agentd.cli.archive_cmd:archive",
        "answer": "agentd.cli.control_cmds:answer",
        "waiting": "agentd.cli.control_cmds:waiting",
        "import": "agentd.cli.transfer_cmd:import_",
        "export": "agentd.cli.transfer_cmd:export",
    },
)
def queue() -> None:
    """Read and change the sprint queue (every change is a locked, atomic, format-preserving transaction)."""


@queue.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def validate(app: App, path: Path | None, as_json: bool) -> int:
    """Check that the queue parses and validates (schema, ids, dependencies, cycles, conflict markers).

    A problem of the file as a whole is one line and exit 4. A task's own problems (its fields, its id, text agentd
    cannot encode, a duplicate id, an unknown dependency, a cycle) are printed one per line, and exit 4: those tasks
    are quarantined (no daemon claims, runs or changes them) while every other task flows.

    \b
    Examples:
      agentd queue validate
      agentd queue validate ../other/SPRINT_QUEUE.json --json
    """
    store = app.store(path.resolve() if path else None)
    snapshot = store.read()
    tasks = snapshot.tasks
    code = ExitCode.BAD_DATA if snapshot.errors else ExitCode.OK
    if as_json:
        emit_json(
            {
                "path": str(store.where),
                "valid": not snapshot.errors,
                "tasks": len(tasks),
                "quarantined": sorted(snapshot.quarantined),
                "errors": [
                    {"path": e.path, "message": e.message, "code": e.code, "task": e.task} for e in snapshot.errors
                ],
                "warnings": [{"path": w.path, "message": w.message, "code": w.code} for w in snapshot.warnings],
            }
        )
        return code
    name = display_path(store.where)
    for finding in snapshot.errors:
        click.echo(f"agentd: {finding.line(name)}", err=True)
    for finding in snapshot.warnings:
        warn(finding.line(name))
    note = f", {len(snapshot.warnings)} warning(s)" if snapshot.warnings else ""
    if snapshot.errors:
        count = len(snapshot.quarantined)
        info(
            f"{name}: {count} task(s) quarantined ({len(snapshot.errors)} problem(s)); the other "
            f"{len(tasks) - count} of {len(tasks)} tasks flow{note}"
        )
    else:
        info(f"{name}: valid ({len(tasks)} tasks{note})")
    return code


@queue.command(name="list")
@click.option("--status", "statuses", multiple=True, help="Only tasks in this status (repeatable).")
@click.option("--role", help="Only tasks this role claims or works on.")
@click.option("--json", "as_json", is_flag=True, help="Print the tasks as JSON.")
@pass_app
def list_(app: App, statuses: tuple[str, ...], role: str | None, as_json: bool) -> int:
    """List tasks in queue order (subtasks included), with status, priority, type and title.

    \b
    Examples:
      agentd queue list
      agentd queue list --status ready --status blocked
      agentd queue list --role tester --json
    """
    snapshot = app.store().read()
    tasks = snapshot.tasks
    if statuses:
        tasks = [t for t in tasks if t.status in statuses]
    if role:
        spec = app.config.role(role)
        tasks = [t for t in tasks if t.status in spec.claims or t.status == spec.working]
    bad = snapshot.quarantined
    if as_json:
        emit_json([task_json(t, bad) for t in tasks])
        return ExitCode.OK
    table(LIST_HEADERS, list_rows(tasks, bad))
    if bad:
        warn(f"{len(bad)} task(s) quarantined: `agentd queue validate` says why")
    return ExitCode.OK


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON (exactly as stored).")
@pass_app
def show(app: App, task_id: str, as_json: bool) -> int:
    """Show one task with every field it has (from the archive when it was archived).

    \b
    Examples:
      agentd queue show P001-B01
      agentd queue show P001-B01 --json | jq .status
    """
    store = app.store()
    raw = store.read().task(task_id)
    archived_at: str | None = None
    if raw is None:
        found = store.archived(task_id)
        if found is None:
            raise TaskNotFound(task_id, store.where)
        raw, archived_at = found[0], found[1] or "an unknown time"
    if as_json:
        emit_json(raw)
        return ExitCode.OK
    if archived_at is not None:
        info(f"(archived at {archived_at} in {display_path(store.archive_where)})")
    width = max(len(key) for key in raw)
    for key, value in raw.items():
        if key == "subtasks" and isinstance(value, list):
            shown = ", ".join(str(sub.get("id")) for sub in value if isinstance(sub, dict))
        else:
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        info(f"{key.ljust(width)}  {shown}")
    shown_branch = _branch(app, task_id)
    if shown_branch:
        info(f"{'(branch)'.ljust(width)}  {shown_branch}")
    return ExitCode.OK


def _branch(app: App, task_id: str) -> str | None:
    """The task's git branch in worktree mode (its parent's for a subtask that shares its worktree)."""
    from agentd.workspaces.settings import branch_of

    snapshot = app.store().read()
    by_id = {task.id: task for task in snapshot.tasks}
    settings = app.config.workspaces
    parent = lambda t: getattr(by_id.get(t), "parent", None)  # noqa: E731
    return branch_of(settings, task_id, parent, lambda t: (snapshot.task(t) or {}).get("workspace"))


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--title", required=True, help="One line saying what the task is.")
@click.option("--type", "task_type", help="Free-form kind (Build, Test, ...); roles may filter on it.")
@click.option("--status", default="ready", show_default=True, help="Initial status.")
@click.option("--priority", type=int, help="Lower runs first; omitted runs last.")
@click.option("--depends-on", "depends_on", multiple=True, metavar="ID", help="A task that must be done first.")
@click.option("--prompt", help="Replaces the role's prompt for this task.")
@click.option("--parent", metavar="ID", help="Add as a subtask of this task.")
@click.option("--force", is_flag=True, help="Accept a status that no role claims, works in or moves to.")
@pass_app
def add(
    app: App,
    task_id: str,
    title: str,
    task_type: str | None,
    status: str,
    priority: int | None,
    depends_on: tuple[str, ...],
    prompt: str | None,
    parent: str | None,
    force: bool,
) -> int:
    """Add a task.

    \b
    Examples:
      agentd queue add B07 --title "Parse the config" --type Build --priority 2
      agentd queue add T07 --title "Test the parser" --status awaiting_test --depends-on B07
      agentd queue add B07-1 --title "Edge cases" --parent B07
    """
    if not force:
        edits.check_status(status, app.config.workflow)
    task = edits.new_task(
        task_id,
        title=title,
        status=status,
        task_type=task_type,
        priority=priority,
        dependencies=depends_on,
        prompt=prompt,
    )
    transact(app, lambda txn: edits.add(txn, dict(task), parent))
    if status not in app.config.workflow.known_statuses():
        warn(f"status {status!r} is not claimed or produced by any role")
    info(f"added {task_id} ({status})")
    return ExitCode.OK


@queue.command(name="set-status")
@click.argument("task_id", metavar="ID")
@click.argument("status")
@click.option("--note", help="Why; stored in the task's status_note.")
@click.option("--token", type=int, help="Refuse unless this is the task's current lease token (for agents).")
@click.option("--force", is_flag=True, help="Accept a status that no role claims, works in or moves to.")
@pass_app
def set_status(app: App, task_id: str, status: str, note: str | None, token: int | None, force: bool) -> int:
    """Set a task's status (only that line of the file changes).

    A status that no role claims, works in or moves to, and that is not final, is refused (exit 2, the closest
    known status suggested) unless --force. Agents running under agentd can fence their own writes with
    --token "$AGENTD_LEASE_TOKEN": the change is refused (exit 7) if their lease has been taken over since.

    \b
    Examples:
      agentd queue set-status B07 ready
      agentd queue set-status B07 needs_adapt --note "tests fail on py3.11"
      agentd queue set-status "$AGENTD_TASK_ID" awaiting_test --token "$AGENTD_LEASE_TOKEN"
    """
    if not force:
        edits.check_status(status, app.config.workflow)
    old = transact(app, lambda txn: edits.set_status(txn, task_id, status, note=note, token=token))
    if status not in app.config.workflow.known_statuses():
        warn(f"status {status!r} is not claimed or produced by any role")
    info(f"{task_id}: {old} -> {status}")
    return ExitCode.OK


def _field(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=JSON", param_hint="'--field'")
    try:
        return key, json.loads(value)
    except ValueError as exc:
        hint = f" (a string needs quotes: {key}='\"{value}\"')" if value and value[0] not in '[{"' else ""
        raise click.BadParameter(f"{key}: {value!r} is not JSON: {exc}{hint}", param_hint="'--field'") from None


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--title", help="A new title.")
@click.option("--priority", type=int, help="A new priority (lower runs first).")
@click.option("--type", "task_type", help="A new type.")
@click.option("--prompt", help="A new prompt (replaces the role's prompt for this task).")
@click.option("--depends-on", "depends_on", multiple=True, metavar="ID", help="Replace the dependencies (repeatable).")
@click.option("--no-depends", is_flag=True, help="Remove every dependency.")
@click.option("--field", "fields", multiple=True, metavar="KEY=JSON", help="Set any other field to a JSON value.")
@pass_app
def update(
    app: App,
    task_id: str,
    title: str | None,
    priority: int | None,
    task_type: str | None,
    prompt: str | None,
    depends_on: tuple[str, ...],
    no_depends: bool,
    fields: tuple[str, ...],
) -> int:
    """Change a task's fields (only their lines of the file change).

    Its status has its own command (set-status); its id, lease and subtasks are not changed here.

    \b
    Examples:
      agentd queue update B07 --title "Parse the config file" --priority 1
      agentd queue update B07 --depends-on B05 --depends-on B06
      agentd queue update B07 --no-depends
      agentd queue update B07 --field estimate=3 --field 'labels=["parser"]'
    """
    if depends_on and no_depends:
        raise click.UsageError("--depends-on and --no-depends exclude each other")
    changes: dict[str, Any] = dict(_field(text) for text in fields)
    given = {"title": title, "priority": priority, "type": task_type, "prompt": prompt}
    changes.update({key: value for key, value in given.items() if value is not None})
    if depends_on or no_depends:
        changes["dependencies"] = list(depends_on)
    if not changes:
        raise click.UsageError(
            "nothing to change: give --title, --priority, --type, --prompt, --depends-on, --no-depends or --field"
        )
    changed = transact(app, lambda txn: edits.update(txn, task_id, changes))
    info(f"{task_id}: updated {', '.join(changed)}" if changed else f"{task_id}: already so, nothing changed")
    return ExitCode.OK


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--force", is_flag=True, help="Remove it even while it runs or others depend on it.")
@pass_app
def remove(app: App, task_id: str, force: bool) -> int:
    """Remove a task and its nested subtasks.

    Refused (exit 7) while it runs or while other tasks depend on it, unless --force, which also drops it from their
    dependencies. A running task's daemon finds it gone and records nothing.

    \b
    Examples:
      agentd queue remove B07
      agentd queue remove B07 --force
    """
    workflow = app.config.workflow
    gone = transact(app, lambda txn: edits.remove(txn, task_id, workflow, force=force))
    info(f"removed {', '.join(gone)}")
    return ExitCode.OK


@queue.command()
@click.argument("task_id", metavar="ID")
@pass_app
def retry(app: App, task_id: str) -> int:
    """Send a task back to its role's claimable status, with attempts and backoff reset.

    \b
    Example:
      agentd queue retry B07
    """
    workflow = app.config.workflow
    status = transact(app, lambda txn: edits.retry(txn, task_id, workflow))
    info(f"{task_id}: back to {status} (attempts reset)")
    return ExitCode.OK


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--note", help="Why; stored in the task's status_note.")
@pass_app
def cancel(app: App, task_id: str, note: str | None) -> int:
    """Cancel a task (it is never claimed again).

    \b
    Example:
      agentd queue cancel B07 --note "superseded by B09"
    """
    workflow = app.config.workflow
    status = transact(app, lambda txn: edits.cancel(txn, task_id, workflow, note))
    info(f"{task_id}: {status}")
    return ExitCode.OK


@queue.command()
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@pass_app
def why(app: App, task_id: str, as_json: bool) -> int:
    """Explain why a task is or is not being claimed, rule by rule, in the scheduler's own order.

    Status and the role that claims it, type filter, each dependency (unknown ids and cycles named), backoff, its
    lease (holder, token, heartbeat, live or stale and why), the role's WIP, and whether a daemon for the role runs.
    It asks the same code the daemons decide with.

    \b
    Examples:
      agentd queue why B07
      agentd queue why B07 --json | jq .verdict
    """
    from agentd import actions
    from agentd.core.clock import SystemClock
    from agentd.core.explain import explain
    from agentd.service import background as service

    config = app.config
    store = app.store()
    snapshot = store.read()
    tasks = snapshot.tasks
    if task_id not in {t.id for t in tasks}:
        raise TaskNotFound(task_id, store.where)
    leases = store.leases()
    running = {role: any(p.running for p in service.daemons(config, [role])) for role in config.roles}
    quarantined = {task: problem.text for task, problem in snapshot.quarantined.items()}
    now = SystemClock().now()
    pauses = actions.project_state(store).pauses
    answer = explain(
        task_id,
        tasks,
        config.workflow,
        leases,
        snapshot.wip_limits,
        now,
        running,
        quarantined,
        archived=snapshot.archived,
        pauses=pauses,
    )
    if as_json:
        emit_json(answer.to_json())
        return ExitCode.OK
    info(f"{answer.task} ({answer.status}): {answer.verdict}")
    for step in answer.steps:
        info(f"  {'ok ' if step.ok else 'NO '} {step.rule:<10} {step.text}")
    return ExitCode.OK
