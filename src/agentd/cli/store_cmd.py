"""``agentd store init``: create or migrate a database store's schema (versioned migrations, idempotent)."""

from __future__ import annotations

import click

from agentd.cli.app import App
from agentd.cli.output import info
from agentd.errors import ExitCode

pass_app = click.make_pass_decorator(App)


@click.group("store", cls=click.Group)
def store() -> None:
    """The store itself: create or migrate a database store's schema."""


@store.command("init")
@pass_app
def init(app: App) -> int:
    """Create the schema of the store named by --store, AGENTD_STORE or agentd.toml, or migrate it to this agentd's
    version. Safe to run again: it says what it did, and does nothing when the schema is up to date.

    \b
    Examples:
      agentd --store postgresql://agentd@db/agentd store init
      AGENTD_STORE=postgresql:///agentd agentd store init && agentd init
    """
    config = app.settings()
    kind = config.store.strip()
    if kind == "file":
        info("store 'file': nothing to create (agentd init writes the queue file)")
        return ExitCode.OK
    if not kind.lower().startswith(("postgresql://", "postgres://")):
        from agentd.store import open_store

        open_store(config)  # an unknown kind: its one-line refusal
    from agentd.store.postgres import migrations
    from agentd.store.postgres.connect import connect, display

    where = display(kind)
    with connect(kind, purpose="store init") as conn:
        found, applied = migrations.migrate(conn, where)
        has_queue = conn.execute("SELECT 1 FROM agentd_queue").fetchone() is not None
    latest = migrations.latest()
    if not applied:
        info(f"{where}: schema version {latest}, up to date; nothing to do")
    elif found == 0:
        info(f"{where}: schema version {latest} created")
    else:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        info(f"{where}: schema migrated from version {found} to {latest} ({names})")
    if not has_queue:
        info(f"{where}: no queue yet: run agentd init (an empty queue) or agentd queue import FILE")
    return ExitCode.OK
