"""The task views one daemon's passes decide from, kept from pass to pass at the cost of what changed.

A pass looks at the queue several times (the look before the lock, the read under it, and again after each step that
changes tasks), and on a big queue nearly every task is final: selection needs only the tasks in a status it
considers, and every task by id (for dependencies and parents). Deriving those from all 10,000 views on every look
cost more than the rest of the pass; here they are derived once and then patched where the views changed: a later
read of the file (its unchanged tasks keep their view objects, see :mod:`agentd.store.file.derived`) or a step of
the pass (:meth:`TaskViews.refreshed`). Patching gives exactly what deriving afresh gives; where it could not (two
tasks with one id, many views changed), they are derived afresh.

The views that changed are found by comparing the new list with the last one, view by view (0.3-0.4 ms for 10,000
views: once or twice a pass). Where the store knows, the new read's list tells instead where it may differ from an
earlier read's (:meth:`agentd.store.base.Snapshot.tasks_changed_since`), and only those places, with the ones the
pass itself changed since that read, are looked at.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from itertools import compress

from agentd.core.model import Task, refreshed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ID, _STATUS, _INDEX = operator.attrgetter("id"), operator.attrgetter("status"), operator.attrgetter("index")
PATCH_LIMIT = 64  # views changed since the last list beyond which deriving afresh is as cheap
# Where a new read's views may differ from an earlier read's (that earlier list given), or None: not known.
Changes = Callable[[list[Task]], "Collection[int] | None"]


class TaskViews:
    """For one list of task views: those in a status selection considers, in order, and every view by id."""

    def __init__(self, considered: Container[str]) -> None:
        self._wanted = considered
        self._tasks: list[Task] | None = None
        self._considered: list[Task] = []
        self._by_id: dict[str, Task] = {}
        # The read's list the last list was made from, when its reader said where later reads differ from it (None:
        # not known), and the places where the last list holds other views than it (the pass's refreshed ones).
        self._read: list[Task] | None = None
        self._since_read: set[int] = set()
        self._own = False  # whether no caller has the dict by id yet (a patch then changes it, not a copy)

    def of(self, tasks: list[Task], changes: Changes | None = None) -> tuple[list[Task], dict[str, Task]]:
        """(the tasks in a considered status, in queue order; every task by id, the last of duplicates).
        ``changes``: given with a read's very list of views, where it may differ from an earlier read's list (see
        :meth:`agentd.store.base.Snapshot.tasks_changed_since`)."""
        found = self._of(tasks, changes)
        self._own = False
        return found

    def _of(self, tasks: list[Task], changes: Changes | None) -> tuple[list[Task], dict[str, Task]]:
        """:meth:`of`, its dict by id kept this object's own (for the refresh that patches it next)."""
        last = self._tasks
        if last is tasks:
            return self._considered, self._by_id
        read, self._read = self._read, None
        if last is not None and len(last) == len(tasks) and len(self._by_id) == len(tasks):
            moved = changes(read) if changes is not None and read is not None and len(read) == len(tasks) else None
            if moved is not None:  # (the places the reads say, and those the pass changed since: the rest are one)
                size = len(tasks)
                places = self._since_read.union(moved)
                changed = sorted(p for p in places if 0 <= p < size and tasks[p] is not last[p])
            else:  # (is_not and compress run in C: on a 10,000-task queue a changed view or two are found at once)
                changed = list(compress(range(len(tasks)), map(operator.is_not, last, tasks)))
            if len(changed) <= PATCH_LIMIT and self._patch(tasks, changed):
                self._read_is(tasks if changes is not None else None)
                return self._considered, self._by_id
        self._derive(tasks)
        self._read_is(tasks if changes is not None else None)
        return self._considered, self._by_id

    def _read_is(self, read: list[Task] | None) -> None:
        """The last list is ``read``, a read's very list (None: another list, or a read that cannot say where later
        ones differ)."""
        self._read = read
        self._since_read = set()

    def refreshed(
        self,
        tasks: list[Task],
        raw_of: Callable[[str], Mapping[str, Any] | None],
        changed: Iterable[str],
        changes: Changes | None = None,
    ) -> list[Task]:
        """:func:`agentd.core.model.refreshed`, finding the changed views by id (not by a look at every task).
        ``changes``: as for :meth:`of`, when ``tasks`` is a read's very list."""
        fresh = {task_id: raw for task_id in set(changed) if (raw := raw_of(task_id)) is not None}
        if not fresh:
            return tasks
        _, by_id = self._of(tasks, changes)
        olds = [by_id.get(task_id) for task_id in fresh]
        if len(by_id) != len(tasks) or not all(_at_its_index(old, tasks) for old in olds):
            return refreshed(tasks, fresh.get, fresh)
        out = list(tasks)
        for old in olds:
            assert old is not None  # (checked above)
            out[old.index] = Task.from_dict(fresh[old.id], index=old.index, path=old.path, parent=old.parent)
        # Patched at the places just changed (``tasks`` is the list last derived, see of()): no look at every view
        # for the ones that differ, which on a 10,000-task queue cost more than the rest of the refresh.
        places = sorted({old.index for old in olds if old is not None})
        read, since = self._read, self._since_read
        if len(olds) > PATCH_LIMIT or not self._patch(out, places):
            self._derive(out)
        self._read = read  # (``out`` differs from that read's list where ``tasks`` did, and at these places)
        self._since_read = since.union(places)
        return out

    def running(self, tasks: list[Task], running: Iterable[str]) -> list[Task]:
        """The views of the ``running`` ids, in queue order (every view when ids repeat: as a look at all would)."""
        _, by_id = self._of(tasks, None)
        if len(by_id) != len(tasks):
            return tasks
        return sorted((by_id[task_id] for task_id in set(running) if task_id in by_id), key=_INDEX)

    def _derive(self, tasks: list[Task]) -> None:
        wanted = map(self._wanted.__contains__, map(_STATUS, tasks))
        self._considered = list(compress(tasks, wanted))
        self._by_id = dict(zip(map(_ID, tasks), tasks, strict=True))
        self._own = True
        self._tasks = tasks

    def _patch(self, tasks: list[Task], changed: list[int]) -> bool:
        """Patch the last derivation where ``tasks`` hold other views (the same ids: else False, nothing changed)."""
        last = self._tasks
        assert last is not None
        swapped: dict[int, Task] = {}
        joining = False
        for position in changed:
            old, new = last[position], tasks[position]
            if old.id != new.id or new.index != position:
                return False
            swapped[id(old)] = new
            joining = joining or (new.status in self._wanted and old.status not in self._wanted)
        if joining:  # (a task back in a considered status: its place among them is found by deriving afresh)
            return False
        # (a copy once the dict was handed out: a caller's view of an earlier look keeps what it was given)
        by_id = self._by_id if self._own else dict(self._by_id)
        self._own = True
        for new in swapped.values():
            by_id[new.id] = new
        wanted = self._wanted
        considered = [swapped.get(id(task), task) for task in self._considered]
        self._considered = [task for task in considered if task.status in wanted]
        self._by_id = by_id
        self._tasks = tasks
        return True


def _at_its_index(task: Task | None, tasks: list[Task]) -> bool:
    return task is not None and 0 <= task.index < len(tasks) and tasks[task.index] is task
