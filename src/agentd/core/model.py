"""The queue's tasks as the core sees them: typed, read-only views over the raw JSON dicts.

The raw dicts stay the truth (unknown fields are never dropped); the views are rebuilt from them at the file boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from itertools import compress
from operator import attrgetter

from agentd.core.clock import parse_timestamp
from agentd.core.lazyre import LazyPattern
from agentd.core.record import Record, set_field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TASK_ID = LazyPattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # used with fullmatch only: "$" would allow a final "\n"
TASK_ID_RULE = "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


def valid_task_id(task_id: object) -> bool:
    """Whether ``task_id`` is a valid task id: the one definition, used by the schemas (``x-agentd-task-id``), the
    CLI and the lease files (an id becomes a file name)."""
    return isinstance(task_id, str) and TASK_ID.fullmatch(task_id) is not None


def view_id(task: Any, path: str) -> str:
    """The id a task is known by: its ``id`` when that is a string, else its JSON path (a task without a usable id
    is quarantined and still has to be named; a path is never a valid id, so the two cannot collide)."""
    task_id = task.get("id") if isinstance(task, dict) else None
    return task_id if isinstance(task_id, str) else path


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


class InQueueLease(Record):
    """The ``lease`` object inside a task (agentd's, or one an older tool left)."""

    _fields = (
        "token",
        "role",
        "owner",
        "host",
        "pid",
        "acquired",
        "ttl",
    )

    token: int | None
    role: str | None
    owner: str | None
    host: str | None
    pid: int | None
    acquired: datetime | None
    ttl: float | None

    def __init__(
        self,
        token: int | None,
        role: str | None,
        owner: str | None,
        host: str | None,
        pid: int | None,
        acquired: datetime | None,
        ttl: float | None,
    ) -> None:
        set_field(self, "token", token)
        set_field(self, "role", role)
        set_field(self, "owner", owner)
        set_field(self, "host", host)
        set_field(self, "pid", pid)
        set_field(self, "acquired", acquired)
        set_field(self, "ttl", ttl)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InQueueLease:
        """Never raises: a field of the wrong type reads as missing (the task is quarantined by validation)."""
        ttl = data.get("ttl")
        return cls(
            token=_int(data.get("token")),
            role=_str(data.get("role")) or _str(data.get("agent")),
            owner=_str(data.get("owner")),
            host=_str(data.get("host")),
            pid=_int(data.get("pid")),
            acquired=_time(data.get("acquired")),
            ttl=float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 1e300 else None,
        )


class Task(Record):
    """A read-only view of one task; ``index`` is its position in queue (pre-)order, subtasks included."""

    _fields = (
        "id",
        "status",
        "index",
        "path",
        "title",
        "type",
        "priority",
        "agent",
        "lease",
        "dependencies",
        "attempts",
        "not_before",
        "lease_token",
        "blocked_reason",
        "parent",
        "repeats",
        "question",
    )

    # (No defaults here: a class attribute would hide a field Task.lazy leaves for later from __getattr__.)
    id: str
    status: str
    index: int
    path: str
    title: str | None
    type: str | None
    priority: int | None
    agent: str | None
    lease: InQueueLease | None
    dependencies: tuple[str, ...]
    attempts: int
    not_before: datetime | None
    lease_token: int
    blocked_reason: Any
    parent: str | None
    repeats: int  # consecutive successful runs that left it in a status its role claims ("repeat_runs")
    question: Mapping[str, Any] | None  # the open or answered question its command asked (agentd's record)

    def __init__(
        self,
        id: str,
        status: str,
        index: int,
        path: str,
        title: str | None = None,
        type: str | None = None,
        priority: int | None = None,
        agent: str | None = None,
        lease: InQueueLease | None = None,
        dependencies: tuple[str, ...] = (),
        attempts: int = 0,
        not_before: datetime | None = None,
        lease_token: int = 0,
        blocked_reason: Any = None,
        parent: str | None = None,
        repeats: int = 0,
        question: Mapping[str, Any] | None = None,
    ) -> None:
        set_field(self, "id", id)
        set_field(self, "status", status)
        set_field(self, "index", index)
        set_field(self, "path", path)
        set_field(self, "title", title)
        set_field(self, "type", type)
        set_field(self, "priority", priority)
        set_field(self, "agent", agent)
        set_field(self, "lease", lease)
        set_field(self, "dependencies", dependencies)
        set_field(self, "attempts", attempts)
        set_field(self, "not_before", not_before)
        set_field(self, "lease_token", lease_token)
        set_field(self, "blocked_reason", blocked_reason)
        set_field(self, "parent", parent)
        set_field(self, "repeats", repeats)
        set_field(self, "question", question)

    @property
    def answered(self) -> bool:
        """Whether a person answered its question and the run that resumes it has not been recorded yet."""
        return self.question is not None and isinstance(self.question.get("answer"), str)

    @property
    def asked_by(self) -> str | None:
        """The role whose command asked its question."""
        role = self.question.get("role") if self.question is not None else None
        return role if isinstance(role, str) else None

    @property
    def asked_at(self) -> datetime | None:
        """When its question was asked."""
        return _time(self.question.get("asked_at")) if self.question is not None else None

    @classmethod
    def from_dict(cls, data: Any, *, index: int, path: str, parent: str | None = None) -> Task:
        """The view of one task. Never raises, whatever ``data`` is: a field of the wrong type reads as missing and a
        task without a string id is known by its path (validation quarantines such a task; see
        :mod:`agentd.store.file.queuefile`)."""
        if not isinstance(data, dict):
            return cls(id=path, status="", index=index, path=path, parent=parent)
        # Built without __init__'s keyword call and a set_field per field (every task of a queue of thousands is
        # viewed on its first read): the same fields, in one update of the new instance's __dict__.
        get = data.get
        lease, dependencies = get("lease"), get("dependencies")
        attempts, token, repeats, question = get("attempts"), get("lease_token"), get("repeat_runs"), get("question")
        not_before = get("not_before")
        task = object.__new__(cls)
        task.__dict__.update(
            _first_fields(data, index, path, parent),
            title=_str(get("title")),
            type=_str(get("type")),
            priority=_int(get("priority")),
            agent=_str(get("agent")),
            lease=InQueueLease.from_dict(lease) if isinstance(lease, dict) else None,
            dependencies=tuple(d for d in dependencies if isinstance(d, str)) if isinstance(dependencies, list) else (),
            attempts=max(0, _int(attempts) or 0) if attempts is not None else 0,
            not_before=_time(not_before) if not_before is not None else None,
            lease_token=max(0, _int(token) or 0) if token is not None else 0,
            blocked_reason=get("blocked_reason"),
            repeats=int(repeats or 0) if isinstance(repeats, int) else 0,
            question=question if isinstance(question, dict) else None,
        )
        return task

    @classmethod
    def lazy(cls, data: dict[str, Any], *, index: int, path: str, parent: str | None = None) -> Task:
        """The view of one task of a parse, whose values are never changed afterwards: its id, status, place and
        parent made now, its other fields (the same as :meth:`from_dict` makes) at the first use of one of them.
        A big queue's first read views every task, nearly all of them final, whose other fields no pass looks at:
        10,000 such views take a third of the time of full ones."""
        task = object.__new__(cls)
        get = data.get
        task_id, status = get("id"), get("status")
        if (
            type(task_id) is str
            and type(status) is str
            and parent is None
            and "parent" not in data
            and "parent_task" not in data
        ):  # (nearly every task of a read: made without the dict _first_fields builds, in two thirds of the time)
            task.__dict__.update(id=task_id, status=status, index=index, path=path, parent=None, _raw=data)
            return task
        task.__dict__.update(_first_fields(data, index, path, parent), _raw=data)
        return task

    if not TYPE_CHECKING:  # (for mypy, a class with __getattr__ would have every attribute)

        def __getattr__(self, name: str) -> Any:
            """A field of a view made by :meth:`lazy`, made (with its other fields) at its first use."""
            raw = self.__dict__.get("_raw")
            if raw is None or name not in _LATER:
                raise AttributeError(f"{self.__class__.__qualname__!r} object has no attribute {name!r}")
            full = Task.from_dict(raw, index=self.index, path=self.path, parent=self.parent).__dict__
            self.__dict__.update((field, full[field]) for field in _LATER)
            return full[name]

    @property
    def sort_key(self) -> tuple[int, int, int, int]:
        """An answered question first (its person waits for the result), then priority (lower first, missing last),
        then queue order."""
        return (0 if self.answered else 1, 0 if self.priority is not None else 1, self.priority or 0, self.index)


def _first_fields(data: dict[str, Any], index: int, path: str, parent: str | None) -> dict[str, Any]:
    """The fields of a task's view that :meth:`Task.lazy` makes at once: its id, status, place and parent."""
    get = data.get
    task_id, status = get("id"), get("status")
    return {
        "id": task_id if type(task_id) is str else view_id(data, path),
        "status": status if type(status) is str else _str(status) or "",
        "index": index,
        "path": path,
        "parent": parent or _str(get("parent")) or _str(get("parent_task")),
    }


_LATER = frozenset(Task._fields) - {"id", "status", "index", "path", "parent"}  # the fields Task.lazy leaves for later


def walk(tasks: list[Any], path: str = "$.tasks", parent: str | None = None) -> list[tuple[str, Any, str | None]]:
    """Every task dict in queue order (pre-order) with its JSON path and parent id, nested subtasks included.

    Iterative, and a plain list: it runs on every pass over queues of thousands of tasks.
    """
    out: list[tuple[str, Any, str | None]] = []
    stack: list[tuple[list[Any], str, str | None, int]] = [(tasks, path, parent, 0)]
    while stack:
        items, base, owner, start = stack.pop()
        for position in range(start, len(items)):
            task = items[position]
            here = f"{base}[{position}]"
            out.append((here, task, owner))
            children = task.get("subtasks") if isinstance(task, dict) else None
            if isinstance(children, list) and children:
                stack.append((items, base, owner, position + 1))  # come back for the rest of this list
                stack.append((children, f"{here}.subtasks", _str(task.get("id")), 0))
                break
    return out


def walk_one(task: Any, path: str, parent: str | None = None) -> list[tuple[str, Any, str | None]]:
    """One task at ``path`` and its nested subtasks, as :func:`walk` lists them."""
    children = task.get("subtasks") if isinstance(task, dict) else None
    if isinstance(children, list) and children:
        return [(path, task, parent), *walk(children, f"{path}.subtasks", _str(task.get("id")))]
    return [(path, task, parent)]


def refreshed(
    tasks: list[Task], raw_of: Callable[[str], Mapping[str, Any] | None], changed: Iterable[str]
) -> list[Task]:
    """``tasks`` with the views of the ``changed`` ids rebuilt from their raw dicts (``raw_of(id)``), in place."""
    fresh = {task_id: raw for task_id in set(changed) if (raw := raw_of(task_id)) is not None}
    if not fresh:
        return tasks
    out = list(tasks)
    # The positions of the changed ids, found in C (map, compress): a pass refreshes a few of thousands of tasks.
    for position in compress(range(len(out)), map(fresh.__contains__, map(attrgetter("id"), out))):
        task = out[position]
        out[position] = Task.from_dict(fresh[task.id], index=task.index, path=task.path, parent=task.parent)
    return out


def views(data: Mapping[str, Any]) -> list[Task]:
    """Typed views of every task in a (validated) queue document, in queue order."""
    return [
        Task.from_dict(task, index=index, path=path, parent=parent)
        for index, (path, task, parent) in enumerate(walk(data.get("tasks", [])))
    ]


def index_by_id(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Task id -> the raw task dict (the last one wins on duplicates, which validation reports; a task without a
    string id is left out)."""
    return {
        task["id"]: task
        for _, task, _ in walk(data.get("tasks", []))
        if isinstance(task, dict) and _str(task.get("id"))
    }
