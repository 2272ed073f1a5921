"""Where automation's tasks go into the queue: one locked, format-preserving transaction, as ``agentd queue add``.

The only module of automation that writes the queue (so it moves behind the storage boundary in one place). Each
candidate task is decided under the queue lock, from the document as it is then: a task whose id is already there is
left alone (a firing retried, or fired by another process, adds nothing), a task whose source still has an open task
(``skip_if_open``, ``coalesce``) is not added, any other is added at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentd.core import edits
from agentd.core.model import index_by_id
from agentd.store.file.queuefile import QueueStore

# (task id, status) pairs of the queue -> the id of an open task that stops this one, or None
Blocker = Callable[[Iterable[tuple[str, str]]], str | None]


@dataclass(frozen=True)
class Outcome:
    """What became of one candidate task."""

    task_id: str
    result: Literal["added", "exists", "open"]
    open_task: str | None = None  # result "open": the task still open


def add_tasks(store: QueueStore, candidates: Sequence[tuple[dict[str, Any], Blocker]]) -> list[Outcome]:
    """Add each candidate unless its id exists or its blocker names an open task; one transaction for all."""

    def change(doc: dict[str, Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for task, blocker in candidates:
            index = index_by_id(doc)
            if task["id"] in index:
                outcomes.append(Outcome(task["id"], "exists"))
                continue
            statuses = [(key, str(value.get("status"))) for key, value in index.items()]
            holder = blocker(statuses)
            if holder is not None:
                outcomes.append(Outcome(task["id"], "open", holder))
                continue
            edits.add(doc, dict(task))
            outcomes.append(Outcome(task["id"], "added"))
        return outcomes

    return store.transaction(change)
