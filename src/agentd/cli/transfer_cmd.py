"""``agentd queue import`` and ``agentd queue export``: a whole queue into or out of the project's store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentd.cli.app import App
from agentd.cli.output import info, warn
from agentd.errors import ExitCode, display_path

pass_app = click.make_pass_decorator(App)


@click.command(name="import")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Swap the store's whole queue for the file's (one transaction).")
@click.option("--force", is_flag=True, help="With --replace: replace even while leases are held.")
@pass_app
def import_(app: App, path: Path, replace: bool, force: bool) -> int:
    """Load a queue file (SPRINT_QUEUE.json format) into the project's store, whatever the store is.

    The file is validated first, as the file store validates its queue: a problem of the file or of any task is one
    line naming the file and the JSON path, exit 4, and the store is left as it was. Without --replace the store must
    be empty (no tasks; exit 7 otherwise). --replace swaps the whole queue in one transaction, and is refused (exit 7)
    while any lease is held, since a running task would finish into a queue that may not have it; --force replaces
    anyway. Leases, the journal, the archive and project state are left as they are.

    \b
    Examples:
      agentd queue import SPRINT_QUEUE.json
      agentd --store "$AGENTD_STORE" queue import backup.json --replace
    """
    from agentd.store.transfer import import_queue

    store = app.store()
    done = import_queue(store, path, replace=replace, force=force)
    name = display_path(path)
    for finding in done.warnings:
        warn(finding.line(name))
    swapped = f", replacing {done.replaced} task(s)" if done.replaced is not None else ""
    info(f"{name}: imported {done.tasks} task(s) into {display_path(store.where)}{swapped}")
    return ExitCode.OK


@click.command()
@click.argument("path", metavar="FILE", required=False, type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def export(app: App, path: Path | None) -> int:
    """Write the project's queue as a queue file: to FILE (atomically), or to standard output.

    The bytes are those of a file store holding that queue (keys in their order, two-space indentation, every field
    kept), so `agentd queue import` of the export gives the same queue back, and a file store can use it as it is.

    \b
    Examples:
      agentd queue export backup.json
      agentd queue export | jq '.tasks | length'
    """
    from agentd.store.transfer import export_queue

    payload = export_queue(app.store(), path)
    if path is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
    return ExitCode.OK
