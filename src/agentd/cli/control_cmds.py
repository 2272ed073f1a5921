"""People in the loop: ``agentd queue answer``, ``agentd queue waiting``, ``agentd pause``, ``agentd resume`` and
``agentd usage``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from agentd import actions
from agentd.cli.app import App
from agentd.cli.output import emit_json, info, table, warn
from agentd.core import control
from agentd.core.clock import SystemClock, format_timestamp
from agentd.core.duration import format_duration, parse_since
from agentd.errors import ExitCode
from agentd.report import usage as usage_mod
from agentd.store.base import Filter

pass_app = click.make_pass_decorator(App)


@click.command()
@click.argument("task_id", metavar="ID")
@click.argument("text", required=False)
@click.option(
    "--file",
    "from_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    help="Read the answer from this file ('-': standard input).",
)
@click.option("--by", help="Who answers (default: your user name).")
@pass_app
def answer(app: App, task_id: str, text: str | None, from_file: str | None, by: str | None) -> int:
    """Answer the question a task's command asked; the task goes back to the role that asked, first in its order.

    The answer is appended to the task's ``feedback`` list with the question, who answered and when; the next run
    gets it as {answer}, {question} and {session} (and AGENTD_ANSWER, AGENTD_QUESTION, AGENTD_SESSION), and runs the
    role's resume_command when it has one. A task with no open question is refused (exit 7).

    \b
    Examples:
      agentd queue answer B07 "Use PostgreSQL 16"
      agentd queue answer B07 --file answer.md --by alice
      echo "yes" | agentd queue answer B07 --file -
    """
    if (text is None) == (from_file is None):
        raise click.UsageError("give the answer as TEXT or with --file (not both)")
    if from_file is not None:
        if from_file == "-":
            text = sys.stdin.read()
        else:
            try:
                text = Path(from_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise click.BadParameter(f"{from_file}: cannot read: {exc}", param_hint="'--file'") from None
    assert text is not None
    text = text.strip()
    if not text:
        raise click.UsageError("the answer is empty")
    done = actions.answer(app.store(), app.config.workflow, task_id, text, by or actions.person(), SystemClock().now())
    status, role = done.status, done.role
    info(f"{task_id}: answered; back to {status} ({role} resumes it first)")
    return ExitCode.OK


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the questions as JSON.")
@pass_app
def waiting(app: App, as_json: bool) -> int:
    """List the open questions, oldest first, with how long each has waited.

    \b
    Examples:
      agentd queue waiting
      agentd queue waiting --json | jq '.[0].question'
    """
    config = app.config
    now = SystemClock().now()
    rows: list[dict[str, Any]] = []
    for task in app.store().read().tasks:
        role = config.roles.get(task.asked_by or "")
        if role is None or task.status != role.waiting or task.answered or task.question is None:
            continue
        asked = task.asked_at
        age = (now - asked).total_seconds() if asked is not None else None
        rows.append(
            {
                "id": task.id,
                "role": role.name,
                "status": task.status,
                "question": task.question.get("text"),
                "session": task.question.get("session"),
                "asked_at": format_timestamp(asked) if asked else None,
                "age_s": round(age, 1) if age is not None else None,
            }
        )
    rows.sort(key=lambda row: row["asked_at"] or "")
    if as_json:
        emit_json(rows)
        return ExitCode.OK
    if not rows:
        info("no open questions")
        return ExitCode.OK
    table(
        ["id", "role", "waiting", "question"],
        [
            [r["id"], r["role"], format_duration(float(r["age_s"])) if r["age_s"] is not None else "?", r["question"]]
            for r in rows
        ],
    )
    return ExitCode.OK


def _roles(app: App, roles: tuple[str, ...]) -> list[str]:
    return actions.check_roles(app.config.workflow, list(roles))  # RoleNotFound (exit 6) naming the known roles


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--for", "for_", metavar="DURATION", help="Pause for this long (90s, 10m, 2h, 1d).")
@click.option("--until", metavar="TIME", help="Pause until this ISO-8601 time (no zone: UTC).")
@click.option("--reason", default="", help="Why (shown in status, why, doctor and the journal).")
@pass_app
def pause(app: App, roles: tuple[str, ...], for_: str | None, until: str | None, reason: str) -> int:
    """Pause roles (no ROLE: every role): a paused role claims nothing; its running tasks go on.

    The pause is kept in the project's state (.agentd/state.json), survives restarts and is seen by every daemon at
    once. Without --for or --until it lasts until `agentd resume`.

    \b
    Examples:
      agentd pause builder --for 2h --reason "usage limit"
      agentd pause --until 2026-12-24T08:00 --reason "holidays"
    """
    names = _roles(app, roles) or [control.ALL]
    now = SystemClock().now()
    try:
        end = actions.pause_end(now, for_, until)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    actions.pause(app.store(), [] if names == [control.ALL] else names, now, end, reason, actions.person())
    shown = "every role" if names == [control.ALL] else ", ".join(names)
    span = f"until {format_timestamp(end)}" if end else "until resumed"
    info(f"paused {shown} {span}" + (f" ({reason})" if reason else ""))
    return ExitCode.OK


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@pass_app
def resume(app: App, roles: tuple[str, ...]) -> int:
    """Lift pauses (no ROLE: every pause, budgets' included): the roles claim again at once.

    \b
    Examples:
      agentd resume builder
      agentd resume
    """
    names = _roles(app, roles)
    done = actions.resume(app.store(), names, SystemClock().now(), actions.person())
    if not done.lifted:
        info("nothing was paused" if not names else f"{', '.join(names)}: not paused")
    else:
        info("resumed " + ", ".join("every role" if p.role == control.ALL else p.role for p in done.lifted))
    if done.everyone is not None:
        warn("a pause of every role is still in force (`agentd resume` with no role lifts it)")
    return ExitCode.OK


@click.command()
@click.option("--since", metavar="WHEN", help="Only runs since then (10m, 2h, 1d, or an ISO-8601 time).")
@click.option("--by", "by", type=click.Choice(usage_mod.GROUPS), default="role", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the sums as JSON.")
@pass_app
def usage(app: App, since: str | None, by: str, as_json: bool) -> int:
    """What the runs cost (cost_usd and tokens, as their commands or output adapters reported), summed.

    Days are calendar days in agentd.toml's timezone (UTC by default). Read from the event journal.

    \b
    Examples:
      agentd usage --since 1d
      agentd usage --by day --json
    """
    config = app.config
    start = None
    if since is not None:
        try:
            start = parse_since(since, SystemClock().now())
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--since'") from None
    found = usage_mod.runs(app.store(), Filter(since=start))
    lines = usage_mod.summarise(found, by, config.timezone)
    if as_json:
        emit_json([line.to_json() for line in lines])
        return ExitCode.OK
    if not lines:
        info("no usage recorded" + (f" since {format_timestamp(start)}" if start else ""))
        return ExitCode.OK
    table(
        [by, "runs", "cost_usd", "input_tokens", "output_tokens"],
        [
            [
                line.key,
                line.runs,
                f"{line.usage.get('cost_usd', 0.0):.2f}",
                int(line.usage.get("input_tokens", 0)),
                int(line.usage.get("output_tokens", 0)),
            ]
            for line in lines
        ],
    )
    return ExitCode.OK
