"""Loggers that import :mod:`logging` on first use.

The CLI's hot commands (:mod:`agentd.cli.fast`) log nothing in the usual case, and importing logging costs each call
about half an interpreter start (docs/benchmarks.md): the modules they reach take their logger from here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger

_setup: list[Callable[[], None]] = []


def on_first_use(setup: Callable[[], None] | None) -> None:
    """Run ``setup`` (the CLI's ``logging.basicConfig``) before the first lazy logger is made; None: forget it."""
    _setup[:] = [] if setup is None else [setup]


class _Lazy:
    """A stand-in for ``logging.getLogger(name)``: every attribute is the real logger's, made on first use."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Logger | None = None

    def __getattr__(self, attr: str) -> object:
        logger = self._logger
        if logger is None:
            import logging

            while _setup:
                _setup.pop()()
            logger = self._logger = logging.getLogger(self._name)
        return getattr(logger, attr)

    def __repr__(self) -> str:
        return f"<lazy logger {self._name}>"


def get_logger(name: str) -> Logger:
    """``logging.getLogger(name)``, made when first used."""
    return _Lazy(name)  # type: ignore[return-value]
