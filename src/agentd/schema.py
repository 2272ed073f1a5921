"""The JSON Schemas in ``schemas/`` (shipped in the wheel as ``agentd/schemas``) and validation with JSON paths.

Errors come back as one line: ``FILE: $.tasks[3].status: 5 is not of type 'string'``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator, Sequence

from agentd.core.clock import parse_timestamp
from agentd.core.lazyre import LazyPattern
from agentd.core.model import TASK_ID, TASK_ID_RULE, valid_task_id, view_id, walk_one
from agentd.core.validate import Finding
from agentd.store.file.incremental import Piece

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Literal

    SchemaName = Literal["queue", "task", "lease", "config", "result"]

if TYPE_CHECKING:  # jsonschema costs ~60 ms to import: loaded by the first validation, not by every CLI start
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

NAMES: tuple[SchemaName, ...] = ("queue", "task", "lease", "config", "result")


def schema_dir() -> Path:
    """Where the schemas are: inside the installed package, else the source tree's top-level ``schemas/``.

    The package's folder on disk is where ``importlib.resources`` would find them, without its import (it pulls in
    tempfile, shutil and zipfile: milliseconds on every CLI call)."""
    from pathlib import Path

    return Path(_schema_folder())


@functools.cache
def _schema_folder() -> str:
    """:func:`schema_dir` as a string (without pathlib: the CLI's hot commands read a schema, see agentd.config)."""
    here = os.path.dirname(os.path.realpath(__file__))  # (Path.resolve() is os.path.realpath)
    packaged = os.path.join(here, "schemas")
    if os.path.isdir(packaged):
        return packaged
    source = os.path.join(os.path.dirname(os.path.dirname(here)), "schemas")
    if os.path.isdir(source):
        return source
    raise FileNotFoundError("agentd's JSON Schemas are missing from the installation")


def schema_file(name: SchemaName) -> str:
    """The file of one schema."""
    return os.path.join(_schema_folder(), f"{name}.schema.json")


@functools.cache
def load(name: SchemaName) -> dict[str, Any]:
    """One schema as a dict."""
    with open(schema_file(name), encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _timestamp(validator: Any, enabled: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if enabled and isinstance(instance, str):
        try:
            parse_timestamp(instance)
        except ValueError:
            yield ValidationError(f"{instance!r} is not a timestamp agentd can read (ISO-8601 expected)")


def _task_id(validator: Any, enabled: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if enabled and isinstance(instance, str) and not valid_task_id(instance):
        yield ValidationError(f"{instance!r} is not a valid task id: {TASK_ID_RULE}")


@functools.cache
def _validator_class() -> Any:
    import jsonschema

    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {"x-agentd-timestamp": _timestamp, "x-agentd-task-id": _task_id}
    )


@functools.cache
def _registry() -> Registry[Any]:
    # The "$schema" key is dropped so that a "$ref" into another schema keeps agentd's extended validator
    # (jsonschema would otherwise switch to the plain dialect's class, which ignores x-agentd-timestamp).
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    pairs = [(load(name)["$id"], DRAFT202012.create_resource(_bare(load(name)))) for name in NAMES]
    return Registry().with_resources(pairs).crawl()


def _bare(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "$schema"}


@functools.cache
def validator(name: SchemaName) -> Any:
    """A compiled validator for one schema (cached)."""
    return _validator_class()(_bare(load(name)), registry=_registry())


def json_path(path: Any) -> str:
    """``deque(['tasks', 3, 'status'])`` -> ``$.tasks[3].status``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


_PY_WORDS = LazyPattern(r"(?<![\w'\"])(None|True|False)(?![\w'\"])")


def _message(error: ValidationError) -> str:
    message = _PY_WORDS.sub(lambda m: {"None": "null", "True": "true", "False": "false"}[m.group(1)], error.message)
    if len(message) > 200:
        message = message[:197] + "..."
    return message.replace("\n", " ")


def errors(instance: Any, name: SchemaName) -> list[tuple[str, str]]:
    """Every violation as (JSON path, message), in document order."""
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [(json_path(e.absolute_path), _message(e)) for e in found]


def first_error(instance: Any, name: SchemaName) -> tuple[str, str] | None:
    """The most relevant violation as (JSON path, message), or None when the instance is valid.

    The stdlib checker (:mod:`agentd.schemacheck`) judges first; where it cannot tell, jsonschema-rs
    (:func:`fast_valid`). jsonschema (~60 ms to import, the messages agentd shows) is loaded only for an invalid
    instance: a command that reads a valid queue loads neither it nor jsonschema-rs.

    Once the stdlib checker has spent, in this process, what loading jsonschema-rs costs (:data:`RS_LOAD_COST`),
    jsonschema-rs judges first (5-10 times faster a task): rent until the rent paid equals the price, then buy,
    which never costs more than twice the best choice made knowing how many checks are to come. So a short drain
    never loads it, and a daemon that runs for long loads it once it pays. Once it is loaded (a big queue's first
    read has its tasks judged by it in lists, see :func:`remember_valid_tasks`), it judges first at once.
    """
    global _stdlib_spent
    if (_rs_loaded or _stdlib_spent >= RS_LOAD_COST) and fast_valid(instance, name):
        return None
    started = time.perf_counter()
    verdict = stdlib_verdict(instance, name)
    _stdlib_spent += time.perf_counter() - started
    if verdict or (verdict is None and fast_valid(instance, name)):
        return None
    return exact_first_error(instance, name)


# What loading jsonschema-rs costs a process, in seconds: its import (21 ms on the 2-core machine: its shared library,
# and the typing and email modules it imports) and the compiling of agentd's schemas (3 ms). The stdlib checker takes
# about 3.4 µs a small task and 7 µs a task of 20 fields with a lease (12.5 and 27 µs before round 16), jsonschema-rs
# 0.7 µs: it pays for itself after about 4,000 such tasks.
RS_LOAD_COST = 0.025
_stdlib_spent = 0.0  # s the stdlib checker has spent in this process (see first_error)
_rs_loaded = False  # whether jsonschema-rs is loaded and agentd's schemas compiled for it (see _rs_registry)


def _timestamp_ok(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parse_timestamp(value)
    except ValueError:
        return False
    return True


_STDLIB_KEYWORDS: dict[str, Any] = {
    "x-agentd-timestamp": _timestamp_ok,
    "x-agentd-task-id": lambda value: not isinstance(value, str) or valid_task_id(value),
}


@functools.cache
def _checker(name: SchemaName) -> Any | None:
    """The stdlib checker of one schema (None where it does not handle the schema)."""
    from agentd import schemacheck

    return schemacheck.compile_schema(_bare(load(name)), [], _STDLIB_KEYWORDS, _by_id)


def _by_id(uri: str) -> dict[str, Any] | None:
    """The schema whose ``$id`` is ``uri`` (``urn:agentd:schema:<name>``), loaded when a ``$ref`` first needs it."""
    prefix, _, name = uri.rpartition(":")
    return _bare(load(name)) if prefix == "urn:agentd:schema" and name in NAMES else None


def stdlib_verdict(instance: Any, name: SchemaName) -> bool | None:
    """Whether ``instance`` is valid against schema ``name`` by the stdlib checker; None when it cannot tell."""
    from agentd import schemacheck

    check = _checker(name)
    return None if check is None else schemacheck.judge(check, instance)


def exact_first_error(instance: Any, name: SchemaName) -> tuple[str, str] | None:
    """:func:`first_error` by jsonschema alone (the reference the fast gate is tested against)."""
    from jsonschema.exceptions import best_match

    try:
        error = best_match(validator(name).iter_errors(instance))
    except RecursionError:
        return "$", "nested too deeply to check"
    if error is None:
        return None
    # best_match prefers the shallowest error; descend into oneOf/anyOf context for a precise path.
    while error.context:
        deeper = best_match(error.context)
        if deeper is None:
            break
        error = deeper
    return json_path(error.absolute_path), _message(error)


# -- the queue, fast --------------------------------------------------------------------------------------------------
# Validating a 1,000-task queue with jsonschema takes ~100 ms (20,000 tasks: ~3 s), and every write changes the file,
# so every reader would pay it again. jsonschema-rs takes ~1.5 ms per 1,000 tasks: it is the first judge, and
# jsonschema the second for what it refuses (its messages, and so the quarantine's, are the ones agentd shows). Tasks
# rarely change, though: a task whose exact content was valid once is valid again. The cache key is the task's
# compact JSON (C-fast to make, and exact), bounded in size.

_VALID_TASKS: dict[str, None] = {}
VALID_TASKS = _VALID_TASKS  # (the same dict, never replaced, to look into: a text in it is a task judged valid)
_VALID_TASKS_MAX_CHARS = 32_000_000  # the keys' total size: a long-running daemon sees many versions of each task
_valid_chars = 0


def _task_key(task: Any) -> str | None:
    try:
        return json.dumps(task, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return None


def same_task(one: Any, other: Any) -> bool:
    """Whether two tasks are the same JSON: equal, and of the same types throughout (``True == 1`` and
    ``1 == 1.0`` in Python, not in a schema's eyes)."""
    if one != other:
        return False
    key = _task_key(one)
    return key is not None and key == _task_key(other)


class _RsTimestamp:
    """``x-agentd-timestamp`` for jsonschema-rs (the same check as :func:`_timestamp`)."""

    def __init__(self, _parent: Any, enabled: Any, _path: Any) -> None:
        self.enabled = bool(enabled)

    def validate(self, instance: Any) -> None:
        if self.enabled and isinstance(instance, str):
            parse_timestamp(instance)  # ValueError: invalid


class _RsTaskId:
    """``x-agentd-task-id`` for jsonschema-rs (the same check as :func:`_task_id`: one definition of a valid id)."""

    def __init__(self, _parent: Any, enabled: Any, _path: Any) -> None:
        self.enabled = bool(enabled)

    def validate(self, instance: Any) -> None:
        if self.enabled and isinstance(instance, str) and not valid_task_id(instance):
            raise ValueError(f"{instance!r} is not a valid task id")


_RS_KEYWORDS: dict[str, Any] = {"x-agentd-timestamp": _RsTimestamp, "x-agentd-task-id": _RsTaskId}
# What ``x-agentd-task-id`` stands for, for jsonschema-rs: TASK_ID, anchored (in its regular expressions, as in
# ECMA-262's, ``$`` is the end of the text only, never before a final newline).
_TASK_ID_PATTERN = f"^(?:{TASK_ID.pattern})$"


def _rs_schema(node: Any) -> Any:
    """A schema for jsonschema-rs: ``"x-agentd-task-id": true`` as the ``pattern`` it stands for, checked in Rust
    (through :class:`_RsTaskId` a call into Python per id: half the time a 10,000-task queue's first read spends in
    jsonschema-rs, 15-17 ms). Anything else as it is."""
    if isinstance(node, dict):
        out = {key: _rs_schema(value) for key, value in node.items()}
        if out.get("x-agentd-task-id") is True and "pattern" not in out:
            del out["x-agentd-task-id"]
            out["pattern"] = _TASK_ID_PATTERN
        return out
    if isinstance(node, list):
        return [_rs_schema(value) for value in node]
    return node


def _custom_keywords(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {key for key in node if key.startswith("x-agentd-")}
        for value in node.values():
            found |= _custom_keywords(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_custom_keywords, node)) if node else set()
    return set()


@functools.cache
def _rs_registry() -> Any | None:
    """agentd's schemas for jsonschema-rs (see :func:`_rs_schema`), where each can be judged there: None when a
    schema has a keyword of agentd's it has no counterpart for here, or it cannot take them."""
    import jsonschema_rs  # ~5 ms: loaded with the first validation

    global _rs_loaded
    schemas = [_rs_schema(_bare(load(each))) for each in NAMES]
    if not set().union(*map(_custom_keywords, schemas)) <= set(_RS_KEYWORDS):
        return None
    try:
        registry = jsonschema_rs.Registry([(schema["$id"], schema) for schema in schemas])
    except Exception:  # (as below)
        return None
    _rs_loaded = True
    return registry


def _rs_validator(root: dict[str, Any]) -> Any | None:
    """jsonschema-rs for ``root`` over agentd's schemas (None: no gate, jsonschema judges every instance)."""
    registry = _rs_registry()
    if registry is None:
        return None
    import jsonschema_rs

    try:
        return jsonschema_rs.Draft202012Validator(root, registry=registry, keywords=_RS_KEYWORDS)
    except Exception:  # (a schema it cannot compile: jsonschema judges every instance, as before)
        return None


@functools.cache
def _fast_validator(name: SchemaName) -> Any | None:
    """jsonschema-rs compiled from the same schema (and the schemas it refers to), about 100 times faster than
    jsonschema: a gate that lets a valid instance through at once. None (no gate) when a schema has a keyword of
    agentd's it has no counterpart for here, or it cannot compile them."""
    return _rs_validator(_rs_schema(_bare(load(name))))


def _fast_task_validator() -> Any | None:
    """The fast gate of the task schema (see :func:`_fast_validator`)."""
    return _fast_validator("task")


# A read that parsed this many tasks anew (a big queue's first read, or one after a save that moved them all) has
# them judged by jsonschema-rs in lists of TASKS_BATCH, one call each, instead of one call per task behind the per-task
# bookkeeping (and the stdlib checker's first 500): see :func:`remember_valid_tasks`.
TASKS_BATCH_FROM = 500
TASKS_BATCH = 1024


@functools.cache
def _fast_tasks_validator() -> Any | None:
    """jsonschema-rs for a list of tasks, each judged as :func:`_fast_task_validator` judges one (None where there
    is no such gate)."""
    if _fast_task_validator() is None:
        return None
    return _rs_validator({"type": "array", "items": {"$ref": _bare(load("task"))["$id"]}})


def remember_valid_tasks(tasks: list[tuple[Any, str]], *, decoded: bool = False) -> None:
    """Judge many top-level tasks at once, each given with its exact text (a read's tasks parsed anew): the runs of
    :data:`TASKS_BATCH` that jsonschema-rs finds valid are remembered as valid, text by text, as :func:`task_error`
    remembers a valid task (it then finds them so at once); a run with an invalid task, and a task whose text may hold
    a lone surrogate, are left to :func:`task_error`. Fewer than :data:`TASKS_BATCH_FROM` tasks: nothing is done.
    ``decoded``: the texts were decoded strictly from UTF-8 (a file's), which no half of a surrogate pair survives:
    only an escaped one is looked for (a search of each text outside ASCII for the other, about 2 µs a task, is
    skipped)."""
    if len(tasks) < TASKS_BATCH_FROM:
        return
    fast = _fast_tasks_validator()
    if fast is None:
        return
    for start in range(0, len(tasks), TASKS_BATCH):
        run = tasks[start : start + TASKS_BATCH]
        try:
            valid = bool(fast.is_valid([task for task, _ in run]))
        except Exception:  # a value it cannot take: task_error decides
            valid = False
        if valid:
            _remember_all_valid([key for _, key in run if not _may_hold_surrogate(key, decoded)])


def fast_valid(instance: Any, name: SchemaName) -> bool:
    """Whether jsonschema-rs finds ``instance`` valid against schema ``name`` (False when it cannot tell: jsonschema
    then decides)."""
    fast = _fast_task_validator() if name == "task" else _fast_validator(name)
    if fast is None:
        return False
    try:
        return bool(fast.is_valid(instance))
    except Exception:  # a value it cannot take (a lone surrogate, a huge number): jsonschema decides
        return False


def _fast_valid(task: Any) -> bool:
    """Whether the fast validator finds ``task`` valid (False when it cannot tell: jsonschema then decides)."""
    return fast_valid(task, "task")


def task_error(task: Any, key: str | None = None) -> tuple[str, str] | None:
    """The first violation of one task (path relative to the task, ``$...``), remembering tasks found valid.

    ``key`` is an exact text of the task when the caller has one (the file's own text of it): no need to make one.
    """
    if key is None:
        key = _task_key(task)
    if key is not None and key in _VALID_TASKS:
        return None
    problem = first_error(task, "task")
    if problem is None and (key is None or _may_hold_surrogate(key)):
        problem = lone_surrogate(task)
    if problem is None and key is not None:
        remember_valid(key)
    return problem


def remember_valid(text: str) -> None:
    """Remember ``text``, an exact text of a task found valid with no lone surrogate (:func:`task_error`, or
    :func:`entry_error` for a task without subtasks), as :func:`task_error` then finds it: valid at once."""
    global _valid_chars
    if _valid_chars + len(text) > _VALID_TASKS_MAX_CHARS:
        _VALID_TASKS.clear()
        _valid_chars = 0
    _VALID_TASKS[text] = None
    _valid_chars += len(text)


def _remember_all_valid(texts: list[str]) -> None:
    """:func:`remember_valid` for each of ``texts``, at once (a big queue's first read: 10,000 of them)."""
    global _valid_chars
    size = sum(map(len, texts))
    if _valid_chars + size > _VALID_TASKS_MAX_CHARS:
        for text in texts:  # (one by one: the cache is emptied where it is full, as remember_valid does)
            remember_valid(text)
        return
    _VALID_TASKS.update(dict.fromkeys(texts))
    _valid_chars += size


# -- text agentd cannot write ------------------------------------------------------------------------------------------
# JSON may escape half of a UTF-16 surrogate pair alone ("\ud83d": a JS tool cutting an emoji in two). It parses into a
# str that UTF-8 cannot encode: agentd could never write it back, nor pass it to a command. Such a task is quarantined.

_SURROGATE = LazyPattern("[\ud800-\udfff]")  # in a parsed str: only a lone half is left (pairs decode to one char)
_ESCAPED_SURROGATE = LazyPattern(r"\\u[dD][89a-fA-F]")  # in JSON text: a (possibly lone) escaped half


def _may_hold_surrogate(text: str, decoded: bool = False) -> bool:
    """Whether a task's JSON ``text`` may hold half of a surrogate pair, itself or escaped (then its value is walked
    for one). An ASCII text holds none itself (known without a scan), and most texts hold no backslash at all: a
    search for one character is a ``memchr``, a tenth of the time of a search for two (10,000 tasks of 600 bytes:
    0.4 against 5 ms). ``decoded``: ``text`` was decoded strictly from UTF-8, so it holds none itself."""
    if not decoded and not text.isascii() and _SURROGATE.search(text):
        return True
    return "\\" in text and "\\u" in text and _ESCAPED_SURROGATE.search(text) is not None


class HugeInt(str):
    """The text of an integer longer than Python reads (over 4,300 digits): a value agentd cannot use nor write back
    as it was, so its task is quarantined (see :func:`loads_huge`)."""


def _parse_int(text: str) -> int | HugeInt:
    try:
        return int(text)
    except ValueError:
        return HugeInt(text)


def loads_huge(text: str) -> Any:
    """``json.loads`` for a text holding an integer too long for ``int()``: such integers become :class:`HugeInt`."""
    return json.JSONDecoder(parse_int=_parse_int).decode(text)


def _any_unwritable(value: Any) -> bool:
    """Whether :func:`lone_surrogate` finds something in ``value`` (the same looks, without the paths: a written
    task is looked through on every write, and almost never has one)."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:  # (an ASCII string holds no surrogate)
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif kind is dict:
            extend(item.keys())
            extend(item.values())
        elif kind is list:
            extend(item)
        elif isinstance(item, dict):
            extend(item.keys())
            extend(item.values())
        elif isinstance(item, list):
            extend(item)
        elif isinstance(item, HugeInt) or (isinstance(item, str) and _SURROGATE.search(item)):
            return True
    return False


def lone_surrogate(value: Any) -> tuple[str, str] | None:
    """(JSON path, message) of the first key or string in ``value`` holding a lone UTF-16 surrogate, or of a number
    too long to read (:class:`HugeInt`); None when there is none."""
    if not _any_unwritable(value):
        return None
    return _first_unwritable(value)


def _first_unwritable(value: Any) -> tuple[str, str] | None:
    """:func:`lone_surrogate`, walking ``value`` with the path to each item."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                stack.append((child, (*where, key)))
                stack.append((key, (*where, key)))  # a key is looked at before its value
            continue
        if isinstance(item, list):
            stack.extend((child, (*where, n)) for n, child in reversed(list(enumerate(item))))
            continue
        if isinstance(item, HugeInt):
            return json_path(where), f"a number of {len(item)} digits: agentd reads integers of up to 4,300 digits"
        found = _SURROGATE.search(item) if isinstance(item, str) else None
        if found:
            return json_path(where), (
                f"text agentd cannot encode: a lone UTF-16 surrogate {found.group()!r} (half of a character, as left "
                "by a tool that cut an emoji in two)"
            )
    return None


# -- per-task problems (quarantine) ------------------------------------------------------------------------------------


def entry_error(task: Any) -> tuple[str, str, str] | None:
    """The first problem of one task itself, its subtasks left out (they are entries of their own): (JSON path
    relative to the task, message, code), the code ``task-invalid`` or ``unencodable``; None when it has none."""
    own = task
    if isinstance(task, dict) and isinstance(task.get("subtasks"), list):
        own = {key: ([] if key == "subtasks" else value) for key, value in task.items()}
    problem = first_error(own, "task")
    if problem is not None:
        return problem[0], problem[1], "task-invalid"
    problem = lone_surrogate(own)
    if problem is not None:
        return problem[0], problem[1], "unencodable"
    return None


def task_problems(task: Any, path: str, key: str | None = None, *, thorough: bool = False) -> list[Finding]:
    """Every problem of one top-level task and its subtasks, one finding per bad task (``task`` names it, with
    :func:`agentd.core.model.view_id`). A valid task is checked through the cache of :func:`task_error`; ``thorough``
    also walks a valid task for a :class:`HugeInt` (the cache cannot tell one from the string of its digits)."""
    whole = task_error(task, key) or (lone_surrogate(task) if thorough else None)
    if whole is None:
        return []
    found = []
    for entry_path, entry, _ in walk_one(task, path):
        problem = entry_error(entry)
        if problem is not None:
            where, message, code = problem
            found.append(Finding("error", entry_path + where[1:], message, code, view_id(entry, entry_path)))
    if not found:  # (say, nested too deeply to check as a whole)
        found.append(Finding("error", path + whole[0][1:], whole[1], "task-invalid", view_id(task, path)))
    return found


def file_problem(data: Any) -> tuple[str, str] | None:
    """The first problem of a queue document as a whole (not an object, no ``tasks`` list, a bad top-level key), its
    tasks left out; None when it has none."""
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return first_error(data, "queue")
    top = {key: value for key, value in data.items() if key != "tasks"}
    top["tasks"] = []
    return first_error(top, "queue")


def queue_problems(data: Any, *, thorough: bool = False) -> tuple[tuple[str, str] | None, list[Finding]]:
    """(the first problem of the file as a whole, or None; then every task's own problems, in queue order).

    A file-level problem (not an object, no ``tasks`` list, a bad top-level key) stops every write; a task's own
    problem quarantines that task alone. (A read with pieces derives its tasks' problems piece by piece instead, and
    keeps them in each piece: see :mod:`agentd.store.file.derived`.)
    """
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return first_error(data, "queue"), []
    top = {key: value for key, value in data.items() if key != "tasks"}
    top["tasks"] = []
    problem = first_error(top, "queue")
    if problem is not None:
        return problem, []
    found: list[Finding] = []
    for position, task in enumerate(data["tasks"]):
        found.extend(task_problems(task, f"$.tasks[{position}]", thorough=thorough))
    return None, found


def queue_error(data: Any, pieces: Sequence[Piece] | None = None) -> tuple[str, str] | None:
    """The first violation of a whole queue document: its top level, then each task in order (cached per task).

    ``pieces``, when given, are the top-level tasks as :class:`agentd.store.file.incremental.Decoder` parsed them: a
    piece found valid before is not checked again, and its exact text is the cache key.
    """
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return first_error(data, "queue")
    top = {key: value for key, value in data.items() if key != "tasks"}
    top["tasks"] = []
    problem = first_error(top, "queue")
    if problem is not None:
        return problem
    for position, task in enumerate(data["tasks"]):
        piece = pieces[position] if pieces is not None else None
        if piece is not None and piece.derived.get("valid"):
            continue
        problem = task_error(task, piece.key if piece is not None else None)
        if problem is not None:
            return f"$.tasks[{position}]{problem[0][1:]}", problem[1]
        if piece is not None:
            piece.derived["valid"] = True
    return None
