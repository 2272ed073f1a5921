"""``agentd init``: agentd.toml with every default written out and commented, and an empty queue."""

from __future__ import annotations

from pathlib import Path

import click

from agentd.cli.app import App
from agentd.cli.output import info
from agentd.config import CONFIG_NAME
from agentd.core.workflow import DEFAULT_OUTCOMES, DEFAULT_PIPELINE
from agentd.errors import ExitCode

TEMPLATE = """\
# agentd.toml — the workflow agentd runs over the sprint queue.
# Every key is optional: the values shown are the defaults. Reference: docs/reference/config.md

queue = "SPRINT_QUEUE.json"               # the queue file, relative to this folder
done_statuses = ["done", "completed"]     # statuses that satisfy dependencies
final_statuses = ["cancelled"]            # other statuses that end a task's life
lock_timeout = 30                         # s to wait for the queue lock
unblock = {{ from = "blocked", to = "ready" }} # blocked tasks whose dependencies are done move on; false = off
roles_replace_defaults = false            # true: only your [roles.NAME] tables, the five defaults dropped
timezone = "UTC"                          # whose calendar days budgets count in

[defaults]                                # any role may override any of these
interval = 60                             # s between polls (queue changes wake the daemon at once)
lease_ttl = 5400                          # s without a heartbeat before a lease is stale
heartbeat = 60                            # s between heartbeats
timeout = 3600                            # s a task command may run
max_attempts = 3                          # failed attempts before on_failure
backoff = {{ initial = 30, factor = 2, max = 1800 }}
grace = 15                                # s running tasks get to finish on shutdown
kill_after = 5                            # s between SIGTERM and SIGKILL of a task's process group
# fence_margin = 1080                     # a run is killed after lease_ttl - this s without a renewal (default 20 %)
max_repeats = 10                          # runs in a row that leave a task's status unchanged; then on_failure
pause_for = 3600                          # s a role pauses itself for (pause_on_exit, a result file's pause)
# pause_on_exit = [75]                    # exit codes that pause the role (a usage limit): no attempt spent
# max_waiting = 3                         # with this many tasks waiting for answers, take no new task
# waiting_expiry = "3d"                   # an unanswered question sends its task to on_failure
# budget = {{ cost_usd_per_day = 20 }}     # spend per day; reached, the role pauses until the next day
# output = "claude-json"                  # read session id, cost and errors from the agent's own output

[log]
max_bytes = 10485760                      # rotate a role's log at this size
backups = 5                               # rotated logs kept
keep_task_logs = 20                       # task output logs kept per task
keep_task_log_days = 14
max_task_log = 10485760                   # bytes of one task log: over it, the head and tail are kept (0: no cap)

# Worktree mode: each task in a git worktree and branch of its own, merged back into base by the integrator
# (docs/howto/parallel-agents.md). Uncomment to turn it on.
# [workspaces]
# mode = "worktree"
# base = "main"
# setup = ["make", "venv"]                # run once in each new worktree
# keep = "on-failure"                     # "never", "on-failure", "always"

# The five-role pipeline, as built in (shown commented). A [roles.NAME] table for one of these roles inherits the
# keys below and overrides only the ones it sets; the other roles stay. Give each role a command (an argv list,
# never a shell unless you write one), e.g.
#   [roles.builder]
#   command = ["claude", "-p", "{{prompt}}"]
# Placeholders: {{task_id}} {{role}} {{title}} {{prompt}} {{attempt}} {{root}} {{queue}} {{field:NAME}}
# and, when a run resumes an answered question, {{answer}} {{question}} {{session}} (see resume_command)
{roles}"""

ROLE_TEMPLATE = """
# [roles.{name}]
# claims = "{claims}"
# working = "{working}"
# on_success = "{on_success}"
# on_failure = "blocked"
# outcomes = {outcomes}{pad}# exit code -> status
# wip = 1                                 # else the queue's wip_limits.{name}, else 1
# types = ["Build"]                       # only claim tasks of these types
# command = ["claude", "-p", "{{prompt}}"]
# prompt = "You are the {name}. Work on task {{task_id}}: {{title}}."
# waiting = "needs_feedback"              # where a task waits after its command asked a question
# resume_command = ["claude", "--resume", "{{session}}", "-p", "{{answer}}"]
"""


def _outcomes(name: str) -> str:
    pairs = DEFAULT_OUTCOMES.get(name, {})
    return "{ " + ", ".join(f'{code} = "{status}"' for code, status in pairs.items()) + " }" if pairs else "{}"


def config_text() -> str:
    """The commented agentd.toml ``agentd init`` writes (it parses to the defaults)."""
    roles = "".join(
        ROLE_TEMPLATE.format(
            name=name,
            claims=claims,
            working=working,
            on_success=success,
            outcomes=_outcomes(name),
            pad=" " * max(1, 29 - len(_outcomes(name))),
        )
        for name, claims, working, success in DEFAULT_PIPELINE
    )
    return TEMPLATE.format(roles=roles)


def empty_queue() -> dict[str, object]:
    """A queue with the default WIP limits and no tasks."""
    limits = {"planner": 1, "builder": 3, "tester": 2, "refiner": 1, "integrator": 1}
    return {"wip_limits": limits, "tasks": []}


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing agentd.toml (the queue is never overwritten).")
@click.pass_obj
def init(app: App, force: bool) -> int:
    """Write agentd.toml (defaults, commented), an empty queue and .leases/ where they are missing.

    \b
    Examples:
      agentd init
      agentd --root ~/src/myproject init
    """
    root = Path(app.root).resolve() if app.root else Path.cwd()
    config_file = root / CONFIG_NAME
    if config_file.exists() and not force:
        info(f"{CONFIG_NAME}: exists, left as it is")
    else:
        config_file.write_text(config_text(), encoding="utf-8")
        info(f"{CONFIG_NAME}: written")
    app.root = str(root)
    cfg = app.config
    store = app.store()
    created = store.create(empty_queue())
    name = cfg.queue_path.name if cfg.store == "file" else f"{store.where} (queue)"
    info(f"{name}: {'created' if created else 'exists, left as it is'}")
    return ExitCode.OK
