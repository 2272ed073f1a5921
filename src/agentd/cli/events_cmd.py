"""``agentd events`` and ``agentd queue history``: read the event journal."""

from __future__ import annotations

import click


@click.command()
def events() -> int:
    """Show the event journal (stub).

    \b
    Examples:
      agentd events
    """
    return 0


@click.command()
@click.argument("task_id", metavar="ID")
def history(task_id: str) -> int:
    """Show one task's life (stub).

    \b
    Examples:
      agentd queue history B1
    """
    return 0
