"""Options shared by several commands, in a module light enough for the top-level group to import."""

from __future__ import annotations

from typing import Any

import click


def daemon_options(function: Any) -> Any:
    """The options shared by ``agentd --role`` and ``agentd run``."""
    decorators = [
        click.option("--role", "role", metavar="ROLE", help="The role to run (builder, tester, ...)."),
        click.option("--interval", type=click.FloatRange(min=0, min_open=True), help="Fallback poll, s."),
        click.option("--once", is_flag=True, help="One pass: claim what there is room for, run it, exit."),
        click.option("--drain", is_flag=True, help="Run until nothing is claimable for the role and nothing runs."),
        click.option("--concurrency", type=click.IntRange(min=1), help="Tasks this daemon runs at once (default WIP)."),
        click.option("--instance", metavar="NAME", help="Name this daemon (several daemons of one role on one host)."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function
