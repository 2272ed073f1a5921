"""``agentd service install|uninstall``: systemd user units and launchd agents for the role daemons."""

from __future__ import annotations

import click


@click.group()
def service() -> None:
    """Install role daemons as systemd user services (or launchd agents on macOS)."""
