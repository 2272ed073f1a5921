"""A task's command line, environment and result file (pure, except reading the result file)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentd import schema
from agentd.core.workflow import Role
from agentd.errors import ConfigError, ResultInvalid

KNOWN = ("task_id", "role", "title", "prompt", "attempt", "root", "queue", "workspace", "branch")
PLACEHOLDER = re.compile(r"\{(" + "|".join(KNOWN) + r")\}")
ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # what looks like one (JSON braces do not)
DEFAULT_PROMPT = "You are the {role}. Work on task {task_id}: {title}."


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{placeholders}``; any other braces are left as written (JSON in a prompt is fine)."""
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def unknown_placeholders(role: Role) -> list[str]:
    """Names in ``{braces}`` in the role's command or prompt that agentd does not fill (left as written: a typo?)."""
    texts = [*(role.command or ()), role.prompt or ""]
    found: list[str] = []
    for text in texts:
        for name in ANY_PLACEHOLDER.findall(text):
            if name not in KNOWN and name not in found:
                found.append(name)
    return found


def describe_unknown(role: Role, names: Sequence[str]) -> str:
    """One line about a role's unknown placeholders."""
    listed = ", ".join("{" + name + "}" for name in names)
    known = ", ".join("{" + name + "}" for name in KNOWN)
    return (
        f"role {role.name!r}: unknown placeholder(s) {listed} in its command or prompt are passed as written"
        f" (known: {known})"
    )


def argv_for(
    task: Mapping[str, Any],
    role: Role,
    *,
    attempt: int,
    root: Path,
    queue: Path,
    config_path: Path | None = None,
    workspace: Path | None = None,
    branch: str = "",
) -> list[str]:
    """The argv to run: the task's own ``command`` if it has one, else the role's, placeholders filled
    (``{workspace}`` is the project root and ``{branch}`` empty unless the task has a worktree)."""
    template: Sequence[str] | None = task.get("command") or role.command
    if not template:
        where = config_path or "agentd.toml"
        raise ConfigError(where, f"role {role.name!r} has no command; set [roles.{role.name}] command = [...]")
    values = {
        "task_id": str(task["id"]),
        "role": role.name,
        "title": str(task.get("title") or ""),
        "attempt": str(attempt),
        "root": str(root),
        "queue": str(queue),
        "workspace": str(workspace or root),
        "branch": branch,
    }
    prompt_template = task.get("prompt") if isinstance(task.get("prompt"), str) else role.prompt or DEFAULT_PROMPT
    values["prompt"] = fill(str(prompt_template), {**values, "prompt": ""})
    return [fill(part, values) for part in template]


def environment(
    task_id: str,
    role: Role,
    *,
    attempt: int,
    token: int,
    root: Path,
    queue: Path,
    result: Path,
    config: Path | None = None,
) -> dict[str, str]:
    """What agentd adds to the command's environment."""
    extra = {"AGENTD_CONFIG": str(config)} if config is not None else {}
    return {
        **extra,
        **role.env,
        "AGENTD_TASK_ID": task_id,
        "AGENTD_ROLE": role.name,
        "AGENTD_ATTEMPT": str(attempt),
        "AGENTD_LEASE_TOKEN": str(token),
        "AGENTD_ROOT": str(root),
        "AGENTD_QUEUE": str(queue),
        "AGENTD_RESULT": str(result),
    }


def read_result(path: Path) -> dict[str, Any] | None:
    """The result file a command wrote, validated; None when it wrote none. ResultInvalid when it is bad."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResultInvalid(path, None, f"cannot read: {exc.strerror}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultInvalid(path, None, f"not valid JSON ({exc})") from None
    problem = schema.first_error(data, "result")
    if problem is not None:
        raise ResultInvalid(path, problem[0], problem[1])
    result: dict[str, Any] = data
    return result
