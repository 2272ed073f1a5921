"""``agentd doctor``: check the whole project and say how to fix each finding."""

from __future__ import annotations

import click


@click.command()
def doctor() -> int:
    """Check the project (stub).

    \b
    Examples:
      agentd doctor
    """
    return 0
