"""A task's command line, environment and result file (pure, except reading the result file)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentd import schema
from agentd.core.clock import parse_timestamp
from agentd.core.workflow import Role
from agentd.errors import ConfigError, ResultInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KNOWN = (
    "task_id",
    "role",
    "title",
    "prompt",
    "attempt",
    "root",
    "queue",
    "workspace",
    "branch",
    "answer",
    "question",
    "session",
)
FIELD = "field:"  # {field:NAME}: a top-level field of the task, JSON-encoded unless it is a string
PLACEHOLDER = re.compile(r"\{(" + "|".join(KNOWN) + r"|field:[A-Za-z_][A-Za-z0-9_.-]*)\}")
ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # what looks like one (JSON braces do not)
DEFAULT_PROMPT = "You are the {role}. Work on task {task_id}: {title}."


def field_value(task: Mapping[str, Any], name: str) -> str:
    """``{field:NAME}``: the task's top-level field as text (a string as is, else JSON; missing: empty)."""
    value = task.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def fill(template: str, values: Mapping[str, str], task: Mapping[str, Any] | None = None) -> str:
    """Replace the known ``{placeholders}`` (``{field:NAME}`` from ``task``); any other braces are left as written
    (JSON in a prompt is fine)."""
    if "{" not in template:
        return template  # (most argv parts: no placeholder, no regex pass)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith(FIELD):
            return field_value(task or {}, name[len(FIELD) :]) if task is not None else match.group(0)
        return values.get(name, match.group(0))

    return PLACEHOLDER.sub(value, template)


def unknown_placeholders(role: Role) -> list[str]:
    """Names in ``{braces}`` in the role's command, resume_command or prompt that agentd does not fill (left as
    written: a typo?)."""
    texts = [*(role.command or ()), *(role.resume_command or ()), role.prompt or ""]
    found: list[str] = []
    for text in texts:
        for name in ANY_PLACEHOLDER.findall(text):
            if name not in KNOWN and name not in found:
                found.append(name)
    return found


def resuming(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The answered question a run of ``task`` resumes (None: a fresh run)."""
    question = task.get("question")
    if isinstance(question, dict) and isinstance(question.get("answer"), str):
        return question
    return None


def _question_values(task: Mapping[str, Any]) -> dict[str, str]:
    question = resuming(task) or {}
    return {
        key: str(question.get(name) or "")
        for key, name in (("answer", "answer"), ("question", "text"), ("session", "session"))
    }


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
    """The argv to run: the task's own ``command`` if it has one, else the role's (its ``resume_command`` when the run
    resumes an answered question), placeholders filled (``{workspace}`` is the project root and ``{branch}`` empty
    unless the task has a worktree)."""
    template: Sequence[str] | None = task.get("command") or (
        role.resume_command if role.resume_command and resuming(task) else role.command
    )
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
        **_question_values(task),
    }
    if any("{prompt}" in part for part in template):  # (filled only when the command uses it)
        prompt_template = task.get("prompt") if isinstance(task.get("prompt"), str) else role.prompt or DEFAULT_PROMPT
        values["prompt"] = fill(str(prompt_template), {**values, "prompt": ""}, task)
    return [fill(part, values, task) for part in template]


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
    task: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """What agentd adds to the command's environment (``{field:NAME}`` in the role's env values filled from
    ``task``; AGENTD_ANSWER, AGENTD_QUESTION and AGENTD_SESSION when the run resumes an answered question)."""
    extra = {"AGENTD_CONFIG": str(config)} if config is not None else {}
    if task is not None and resuming(task) is not None:
        values = _question_values(task)
        extra |= {"AGENTD_ANSWER": values["answer"], "AGENTD_QUESTION": values["question"]}
        extra |= {"AGENTD_SESSION": values["session"]}
    env = {key: fill(value, {}, task) if task is not None else value for key, value in role.env.items()}
    return {
        **extra,
        **env,
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
    until = data.get("pause", {}).get("until")
    if until is not None:
        try:
            parse_timestamp(until)
        except ValueError:
            raise ResultInvalid(path, "$.pause.until", f"{until!r} is not an ISO-8601 time") from None
    result: dict[str, Any] = data
    return result
