"""Regular expressions compiled on first use.

Compiling a pattern costs tens of microseconds; agentd's modules on the CLI's path held 16 compiled at import (a third
of a bare interpreter's start-up together), most of which a given command never uses. A :class:`LazyPattern` compiles
on the first use of one of its methods and then keeps the compiled pattern's bound methods in its slots: from then on
``P.match(...)`` costs what it costs on a compiled pattern.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterator
    from typing import Any

_METHODS = ("match", "fullmatch", "search", "sub", "finditer", "findall", "split")


class LazyPattern:
    """``re.compile(pattern, flags)``, done when one of its methods is first looked up."""

    __slots__ = ("_flags", "_pattern", *_METHODS)

    match: Callable[..., re.Match[str] | None]
    fullmatch: Callable[..., re.Match[str] | None]
    search: Callable[..., re.Match[str] | None]
    sub: Callable[..., str]
    finditer: Callable[..., Iterator[re.Match[str]]]
    findall: Callable[..., list[Any]]
    split: Callable[..., list[Any]]

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._pattern = pattern
        self._flags = flags

    def __getattr__(self, name: str) -> Any:
        # Called only while a slot is unset: the first lookup of a method.
        if name not in _METHODS:
            raise AttributeError(name)
        import re

        compiled = re.compile(self._pattern, self._flags)
        for method in _METHODS:
            setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)

    @property
    def pattern(self) -> str:
        """The pattern's text (as ``re.Pattern.pattern``)."""
        return self._pattern

    def __repr__(self) -> str:
        return f"LazyPattern({self._pattern!r}, {self._flags!r})"
