"""Small immutable value classes without :mod:`dataclasses`.

Importing dataclasses pulls in inspect, ast, dis and tokenize, and every ``@dataclass`` compiles its methods with
``exec`` at import: together most of a millisecond per class, paid by every CLI call (``agentd queue set-status`` is
what an agent pays per task). The classes on that path subclass :class:`Record` instead: each names its fields in
``_fields`` (in ``__init__``'s order) and writes its ``__init__``; this base gives them what a frozen dataclass has:
equality and hashing over the fields, a ``Name(field=value, ...)`` repr, assignment refused (pickling and copying work
as for any object: through ``__dict__``), :meth:`Record.replace` for ``dataclasses.replace`` and
:meth:`Record.asdict` for ``dataclasses.asdict``. A class whose fields change after it is made (a plain dataclass)
subclasses :class:`MutableRecord`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


class FrozenInstanceError(AttributeError):
    """Assigning to (or deleting) a field of a :class:`Record` (as :class:`dataclasses.FrozenInstanceError`)."""


set_field = object.__setattr__  # what a Record's __init__ sets its fields with


class Record:
    """Base of an immutable value class whose fields ``_fields`` names, in ``__init__``'s order.

    ``_no_compare`` names the fields left out of equality and hashing, ``_no_repr`` those left out of the repr.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _no_compare: tuple[str, ...] = ()
    _no_repr: tuple[str, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        skip = self._no_compare
        return tuple(getattr(self, name) for name in self._fields if name not in skip)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        skip = self._no_repr
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in skip)
        return f"{self.__class__.__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (as ``dataclasses.replace``); TypeError for a name that is no field."""
        values = {name: getattr(self, name) for name in self._fields}
        unknown = changes.keys() - values.keys()
        if unknown:
            raise TypeError(f"{self.__class__.__qualname__} has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return self.__class__(**values)

    def asdict(self) -> dict[str, Any]:
        """The fields by name, in order (as ``dataclasses.asdict`` gives them for fields of plain values: a list or
        dict field is copied)."""
        out = {}
        for name in self._fields:
            value = getattr(self, name)
            out[name] = value.copy() if isinstance(value, list | dict) else value
        return out


class MutableRecord:
    """Base of a mutable value class whose fields ``_fields`` names, in ``__init__``'s order: what a plain (not
    frozen) dataclass has, without :mod:`dataclasses`: equality over the fields (no hash, as for such a dataclass)
    and a ``Name(field=value, ...)`` repr (``_no_repr`` names the fields left out of it)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _no_repr: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MutableRecord) or other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._fields)

    __hash__ = None  # type: ignore[assignment]  # (mutable: unhashable, as an eq dataclass that is not frozen)

    def __repr__(self) -> str:
        skip = self._no_repr
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in skip)
        return f"{self.__class__.__qualname__}({shown})"
