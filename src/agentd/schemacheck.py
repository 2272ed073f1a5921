"""A small, exact checker for the part of JSON Schema that agentd's own schemas use: valid or not, no messages.

Loading jsonschema costs ~60 ms and jsonschema-rs ~10 ms plus ~10 MB of resident memory (its shared library, and the
decimal, email and socket modules it imports): too much for a CLI call that reads a valid 20-task queue, and for an
idle daemon. This module answers the common question, "is this valid?", with the stdlib alone; :mod:`agentd.schema`
asks jsonschema only for what it finds invalid (for the message), and jsonschema-rs only where this checker cannot
judge.

It follows jsonschema's own semantics (the reference the tests compare it against): ``integer`` includes floats with
no fractional part, ``bool`` is neither an integer nor a number, ``pattern`` is :func:`re.search`. A schema using a
keyword not handled here does not compile (:func:`compile_schema` returns None) and is left to the validators.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Check = Callable[[Any], bool]


_BOUNDS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
)

# Keywords that only annotate.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"})


class Unsupported(Exception):
    """The schema uses something this checker does not judge."""


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _equal_to(target: Any) -> Check:
    """jsonschema's ``equal`` for the constants agentd's schemas use: strings, booleans and null."""
    if isinstance(target, str):
        return lambda v: isinstance(v, str) and v == target
    if target is None or isinstance(target, bool):
        return lambda v: v is target
    raise Unsupported(f"constant {target!r}")


class _Compiler:
    def __init__(
        self,
        resources: Mapping[str, dict[str, Any]],
        keywords: Mapping[str, Callable[[Any], bool]],
        find: Callable[[str], dict[str, Any] | None] | None = None,
        *,
        eager: bool = False,
    ) -> None:
        self.resources = dict(resources)  # $id -> schema (nested $ids included once collected)
        self.keywords = keywords  # x-agentd-*: value -> whether it is fine
        self.find = find  # a schema by $id, for one not among the resources
        self.eager = eager
        self.compiled: dict[int, Check] = {}
        self.collected = False

    def _collect(self, node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$id"), str):
                self.resources.setdefault(node["$id"], node)
            for value in node.values():
                self._collect(value)
        elif isinstance(node, list):
            for value in node:
                self._collect(value)

    def _resource(self, uri: str) -> dict[str, Any] | None:
        """The schema whose ``$id`` is ``uri``: a resource, one ``find`` loads, or one nested in either."""
        if uri not in self.resources and self.find is not None:
            found = self.find(uri)
            if found is not None:
                self.resources[uri] = found
                self._collect(found)
        if uri not in self.resources and not self.collected:
            self.collected = True
            for schema in list(self.resources.values()):
                self._collect(schema)
        return self.resources.get(uri)

    def sub(self, schema: Any, root: dict[str, Any]) -> Check:
        """A subschema's check, compiled when first used (a 20-task queue uses a few of the config schema's many
        branches: compiling all of them cost more than checking), or at once when ``eager``."""
        if self.eager:
            return self.compile(schema, root)
        slot: list[Check] = []

        def check(value: Any) -> bool:
            if not slot:
                slot.append(self.compile(schema, root))
            return slot[0](value)

        return check

    def compile(self, schema: Any, root: dict[str, Any]) -> Check:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        key = id(schema)
        if key in self.compiled:
            return self.compiled[key]
        # A placeholder first, so that a schema referring to itself ("$ref": "#") compiles.
        slot: list[Check] = []
        self.compiled[key] = lambda v: slot[0](v)
        if isinstance(schema.get("$id"), str):
            root = schema
        try:
            found = [self._keyword(k, value, schema, root) for k, value in schema.items() if k not in _ANNOTATIONS]
        except BaseException:
            del self.compiled[key]  # (not a placeholder that would never be filled)
            raise
        check = _all_of([check for check in found if check is not None])
        slot.append(check)
        self.compiled[key] = check
        return check

    def _resolve(self, ref: str, root: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        base, _, pointer = ref.partition("#")
        target = root if not base else self._resource(base)
        if target is None:
            raise Unsupported(f"$ref {ref!r}")
        resource = target
        for part in [p for p in pointer.split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise Unsupported(f"$ref {ref!r}")
            target = target[part]
        return target, resource

    def _keyword(self, name: str, value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Check | None:
        if name in self.keywords:
            fine = self.keywords[name]
            return (lambda v: fine(v)) if value else None
        if name == "type":
            names = value if isinstance(value, list) else [value]
            if not all(isinstance(n, str) and n in _TYPES for n in names):
                raise Unsupported(f"type {value!r}")
            kinds = [_TYPES[n] for n in names]
            if len(kinds) == 1:
                return kinds[0]
            if len(kinds) == 2:
                first, second = kinds
                return lambda v: first(v) or second(v)
            return lambda v: any(kind(v) for kind in kinds)
        if name == "$ref":
            target, resource = self._resolve(value, root)
            return self.sub(target, resource)
        if name == "required":
            needed = list(value)
            return lambda v: not isinstance(v, dict) or all(k in v for k in needed)
        if name == "properties":
            return _properties({k: self.sub(s, root) for k, s in value.items()})
        if name == "additionalProperties":
            if "patternProperties" in schema:
                raise Unsupported("patternProperties")
            if value is True:  # (any other property is fine: nothing to look at)
                return None
            known = frozenset(schema.get("properties", {}))
            extra = self.sub(value, root)
            return lambda v: not isinstance(v, dict) or all(extra(v[k]) for k in v.keys() - known)
        if name == "propertyNames":
            names_ok = self.sub(value, root)
            return lambda v: not isinstance(v, dict) or all(names_ok(k) for k in v)
        if name == "items":
            if "prefixItems" in schema:
                raise Unsupported("prefixItems")
            return _items(self.sub(value, root))
        if name in _BOUNDS:
            if not _is_number(value):
                raise Unsupported(f"{name} {value!r}")
            return self._bound(name, value)
        if name == "pattern":
            found = re.compile(value).search
            return lambda v: not isinstance(v, str) or found(v) is not None
        if name in ("enum", "const"):
            matches = [_equal_to(each) for each in (value if name == "enum" else [value])]
            return lambda v: any(match(v) for match in matches)
        if name in ("oneOf", "not"):
            subs = [self.sub(s, root) for s in (value if name == "oneOf" else [value])]
            if name == "not":
                return lambda v: not subs[0](v)
            return lambda v: sum(1 for sub in subs if sub(v)) == 1
        raise Unsupported(f"keyword {name!r}")

    @staticmethod
    def _bound(name: str, limit: float) -> Check:
        # jsonschema's own comparisons (a NaN passes every bound, as there)
        if name == "minItems":
            return lambda v: not isinstance(v, list) or not len(v) < limit
        if name == "maxItems":
            return lambda v: not isinstance(v, list) or not len(v) > limit
        if name == "minLength":
            return lambda v: not isinstance(v, str) or not len(v) < limit
        if name == "maxLength":
            return lambda v: not isinstance(v, str) or not len(v) > limit
        if name == "minimum":
            return lambda v: not _is_number(v) or not v < limit
        if name == "maximum":
            return lambda v: not _is_number(v) or not v > limit
        if name == "exclusiveMinimum":
            return lambda v: not _is_number(v) or not v <= limit
        return lambda v: not _is_number(v) or not v >= limit  # exclusiveMaximum


# The combinators a compiled schema is made of, as plain loops: a schema's checks run for every task a write changes
# (a daemon's, two a task), and all() over a generator cost twice as much (27 against 13 µs a task on the 2-core
# machine).


def _always(_value: Any) -> bool:
    return True


def _all_of(checks: list[Check]) -> Check:
    """A check passing where each of ``checks`` passes."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)

    def check(value: Any) -> bool:
        for each in checks:  # noqa: SIM110 (a loop, not all() over a generator: see above)
            if not each(value):
                return False
        return True

    return check


def _properties(props: dict[str, Check]) -> Check:
    """``properties``: each property of an object that ``props`` names passes its check."""
    get = props.get

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for key, item in value.items():
            each = get(key)
            if each is not None and not each(item):
                return False
        return True

    return check


def _items(item: Check) -> Check:
    """``items``: each item of an array passes ``item``."""

    def check(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        for each in value:  # noqa: SIM110 (as above)
            if not item(each):
                return False
        return True

    return check


def compile_schema(
    schema: dict[str, Any],
    others: list[dict[str, Any]],
    keywords: Mapping[str, Callable[[Any], bool]],
    find: Callable[[str], dict[str, Any] | None] | None = None,
    *,
    eager: bool = False,
) -> Check | None:
    """A function telling whether an instance is valid against ``schema`` (``others``: the schemas its ``$ref``\\ s may
    name by ``$id``, and ``find`` for one not among them; ``keywords``: agentd's own keywords, each a test of a value),
    or None when the schema uses a keyword or a constant this checker does not handle.

    Subschemas compile on first use unless ``eager``: something unsupported found then makes :func:`judge` answer None
    (cannot tell), as for a schema refused here.
    """
    resources = {s["$id"]: s for s in [schema, *others] if isinstance(s.get("$id"), str)}
    try:
        return _Compiler(resources, keywords, find, eager=eager).compile(schema, schema)
    except (Unsupported, re.error, TypeError, AttributeError):
        return None


def judge(check: Check, instance: Any) -> bool | None:
    """``check(instance)``, or None when it cannot tell (nested too deeply for Python's stack, a value it cannot
    compare, a part of the schema this checker does not handle, found when first used)."""
    try:
        return check(instance)
    except (RecursionError, TypeError, ValueError, OverflowError, Unsupported, re.error, AttributeError):
        return None
