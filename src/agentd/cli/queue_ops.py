"""What `agentd queue` and its click-free fast path (:mod:`agentd.cli.fast`) share, without importing click."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agentd.errors import TaskNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentd.cli.app import App
    from agentd.core.model import Task
    from agentd.core.validate import Finding
    from agentd.store.base import Txn


def transact(app: App, change: Callable[[Txn], Any]) -> Any:
    """Run a change on the project's queue; an unknown task id names the file, as every read command does."""
    store = app.store()
    try:
        return store.transaction(change)
    except TaskNotFound as exc:
        raise TaskNotFound(exc.task_id, store.where) from None


LIST_HEADERS = ["id", "status", "prio", "type", "agent", "title"]


def list_rows(tasks: Sequence[Task], quarantined: Mapping[str, Finding]) -> list[list[Any]]:
    """The rows of `agentd queue list` (under :data:`LIST_HEADERS`)."""
    return [
        [
            ("  " if t.parent and t.path.count("subtasks") else "") + t.id,
            f"{t.status} (quarantined)" if t.id in quarantined else t.status,
            t.priority,
            t.type,
            t.agent,
            t.title,
        ]
        for t in tasks
    ]


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Tab-free aligned columns (stable for grep and awk): the lines of a table printed where rich is not used."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines
