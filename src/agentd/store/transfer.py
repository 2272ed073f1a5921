"""A whole queue into or out of any store: ``agentd queue import`` and ``agentd queue export``.

Both speak only the :class:`~agentd.store.base.Store` protocol, so they move a queue between the file store and a
database store alike. The file side is the file store's own: an input file is read and validated exactly as the file
store reads its queue (:class:`~agentd.store.file.queuefile.QueueStore`, read-only), and an export is the bytes a new
queue file holding that queue has (:func:`~agentd.store.file.queuefile.render`: keys in their order, two-space
indentation, unknown fields kept), written atomically.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.core.scheduler import judge
from agentd.core.validate import Finding
from agentd.core.workflow import Workflow
from agentd.errors import Conflict, FileAccessError, QueueInvalid, display_path
from agentd.store.base import Store, Txn
from agentd.store.file.atomic import replace_file
from agentd.store.file.queuefile import QueueStore, render

LEASE_TTL = 3600.0  # s: a lease that says no ttl counts as held this long after its last heartbeat


@dataclass(frozen=True)
class Imported:
    """What an import did: how many tasks the store holds now, how many it replaced, and the input's warnings."""

    tasks: int
    replaced: int | None  # None: the store was empty (or had no queue)
    warnings: list[Finding]


def read_input(path: Path, workflow: Workflow | None = None) -> tuple[dict[str, Any], list[Finding], int]:
    """The queue in the file ``path``, validated as the file store validates its own (statuses against ``workflow``:
    warnings only); (document, warnings, number of tasks).

    A problem of the file as a whole, or of any one task (which the file store would quarantine), raises
    :class:`QueueInvalid` naming the file and the JSON path: a store is never given a queue it would refuse to write.
    """
    try:
        os.stat(path)
    except FileNotFoundError:
        raise FileAccessError(path, "cannot read", "no such file") from None
    except OSError as exc:
        raise FileAccessError(path, "cannot read", exc.strerror or str(exc)) from None
    reader = QueueStore(path, workflow=workflow)
    reader.parse_retry = 0  # (nobody writes this file under us: a torn file is simply bad)
    snapshot = reader.read()
    if snapshot.errors:
        first = snapshot.errors[0]
        more = len(snapshot.errors) - 1
        also = f" (and {more} more problem(s): `agentd queue validate {display_path(path)}` lists them)" if more else ""
        raise QueueInvalid(path, first.path, f"refusing to import: {first.message}{also}")
    data = snapshot.data
    return data, list(snapshot.warnings), len(snapshot.tasks)


def import_queue(store: Store, path: Path, *, replace: bool = False, force: bool = False) -> Imported:
    """Make the queue in the file ``path`` the store's queue, in one transaction.

    Into an empty store (no queue yet, or one without tasks) unless ``replace``: then the store's whole queue is
    swapped for the file's. A replace is refused while any lease is held (a task running now would finish into a queue
    that may no longer have it, or have it in another state) unless ``force``; a lease whose holder is gone (its lock
    released, or no heartbeat within its ttl) holds nothing. Nothing changes when it is refused.
    """
    data, warnings, count = read_input(path, store.workflow)
    if store.create(data):
        return Imported(count, None, warnings)

    def change(txn: Txn) -> int:
        had = len(txn.ids())
        if had and not replace:
            raise Conflict(
                None,
                f"{display_path(store.where)}: the store holds {had} task(s) already; "
                f"`agentd queue import --replace {display_path(path)}` "
                "swaps its whole queue for the file's",
            )
        if had and not force:
            held = sorted(task_id for task_id, seen in txn.leases().items() if judge(seen, txn.now, LEASE_TTL).live)
            if held:
                shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
                raise Conflict(
                    None,
                    f"{display_path(store.where)}: refusing to replace the queue while {len(held)} lease(s) are "
                    f"held ({shown}): their runs would finish into a queue that may not have their tasks; "
                    "stop the daemons "
                    "(`agentd stop`) and try again, or pass --force",
                )
        txn.replace(data)
        return had

    had = store.transaction(change)
    return Imported(count, had if had else None, warnings)


def export_bytes(store: Store) -> bytes:
    """The bytes of a queue file holding the store's queue now (what a file store holding it would have)."""
    snapshot = store.read()
    try:
        return render(snapshot.data)
    except UnicodeEncodeError as exc:
        text = exc.object[exc.start : exc.end]
        raise QueueInvalid(store.where, None, f"refusing to export: text no file can hold ({text!r})") from None


def write_file(target: Path, payload: bytes) -> None:
    """Replace ``target`` with ``payload`` atomically: readers see the old file or the new one, never part of one."""
    replace_file(target, payload)


def export_queue(store: Store, target: Path | None) -> bytes:
    """The store's queue as a file's bytes, written atomically to ``target`` when given (never onto the store's own
    queue file: that would bypass its lock)."""
    if target is not None:
        with contextlib.suppress(OSError):
            if target.resolve() == Path(store.where).resolve():
                raise Conflict(None, f"{display_path(target)}: is the store's own queue file; export to another file")
    payload = export_bytes(store)
    if target is not None:
        write_file(target, payload)
    return payload
