"""``agentd config show``: the effective workflow, each value with where it came from (default, file, env, flag)."""

from __future__ import annotations

import json
from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import Group, emit_json, info, table
from agentd.config import DEFAULT, TUNABLES, Config
from agentd.core.workflow import Role
from agentd.errors import ExitCode, display_path
from agentd.workspaces.launch import settings_dict

pass_app = click.make_pass_decorator(App)

SETTINGS = (
    "queue",
    "store",
    "done_statuses",
    "final_statuses",
    "lock_timeout",
    "leases_dir",
    "state_dir",
    "unblock",
    "workspaces",
    "timezone",
)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else list(value)
        return json.dumps([str(item) for item in items], ensure_ascii=False)
    if isinstance(value, dict):
        return json.dumps({str(k): v for k, v in value.items()}, ensure_ascii=False)
    return str(value)


def _role_values(role: Role) -> dict[str, Any]:
    values: dict[str, Any] = {
        "claims": list(role.claims),
        "working": role.working,
        "on_success": role.on_success,
        "on_failure": role.on_failure,
        "outcomes": {str(code): status for code, status in role.outcomes.items()},
        "types": list(role.types) if role.types is not None else None,
        "wip": role.wip,
        "command": list(role.command) if role.command is not None else None,
        "prompt": role.prompt,
        "env": dict(role.env),
        "allow_loop": role.allow_loop,
        "waiting": role.waiting,
        "resume_command": list(role.resume_command) if role.resume_command is not None else None,
        "max_waiting": role.max_waiting,
        "waiting_expiry": role.waiting_expiry,
        "pause_on_exit": list(role.pause_on_exit),
        "pause_for": role.pause_for,
        "budget": {"cost_usd_per_day": role.budget_usd_per_day} if role.budget_usd_per_day is not None else None,
        "output": role.output,
    }
    values.update({name: getattr(role, name) for name in TUNABLES})
    values["fence_margin"] = role.margin  # the effective one (derived from lease_ttl when not set)
    values["backoff"] = {"initial": role.backoff.initial, "factor": role.backoff.factor, "max": role.backoff.max}
    return values


def effective(config: Config) -> dict[str, Any]:
    """The effective configuration as JSON-ready data: every value and its origin."""
    wf = config.workflow
    settings = {
        "queue": display_path(config.queue_path),
        "store": config.store.split("://", 1)[0] + "://…" if "://" in config.store else config.store,  # no password
        "done_statuses": sorted(wf.done_statuses),
        "final_statuses": sorted(wf.final_statuses),
        "lock_timeout": config.lock_timeout,
        "leases_dir": display_path(config.leases_dir),
        "state_dir": display_path(config.state_dir),
        "unblock": {"from": wf.unblock.from_status, "to": wf.unblock.to_status} if wf.unblock else False,
        "workspaces": settings_dict(config.workspaces),
        "timezone": config.timezone,
    }
    roles: dict[str, dict[str, Any]] = {
        name: {
            key: {"value": value, "from": config.sources.get(f"roles.{name}.{key}", DEFAULT)}
            for key, value in _role_values(role).items()
        }
        for name, role in config.roles.items()
    }
    for name, keys in roles.items():  # worktree mode: which roles merge the task's branch back, and how
        merge = config.workspaces.merge_for(name)
        if config.workspaces.enabled:
            keys["merge"] = {
                "value": merge[0] if merge else False,
                "from": config.sources.get(f"roles.{name}.merge", DEFAULT),
            }
        if merge:
            keys["on_conflict"] = {"value": merge[1], "from": config.sources.get(f"roles.{name}.on_conflict", DEFAULT)}
    return {
        "root": str(config.root),
        "config": display_path(config.path) if config.path else None,
        "settings": {key: {"value": settings[key], "from": config.sources.get(key, DEFAULT)} for key in SETTINGS},
        "roles": roles,
    }


@click.group(name="config", cls=Group)
def config_group() -> None:
    """Show the configuration agentd runs with."""


@config_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
@pass_app
def show(app: App, as_json: bool) -> int:
    """Print the effective workflow and settings, each value with where it came from.

    Origins: "default" (the built-in five-role pipeline and schema defaults), the file and table that set it
    ("agentd.toml [roles.builder]", "agentd.toml [defaults]"), "env AGENTD_QUEUE" or "flag --queue".

    \b
    Examples:
      agentd config show
      agentd config show --json | jq '.roles.builder.command'
    """
    data = effective(app.config)
    if as_json:
        emit_json(data)
        return ExitCode.OK
    info(f"root: {data['root']}")
    info(f"config: {data['config'] or 'none (every value is a default)'}")
    rows: list[list[str]] = [["", key, _shown(item["value"]), item["from"]] for key, item in data["settings"].items()]
    for name, keys in data["roles"].items():
        rows.extend([name, key, _shown(item["value"]), item["from"]] for key, item in keys.items())
    table(["role", "key", "value", "from"], rows)
    return ExitCode.OK
