"""Whether the server answers: one judgement shared by every session of a store (its transactions, its autocommit
session, each lease's session, the daemon's registration, the wake-up listener).

The first lost session or failed connection logs one line, ``store unreachable: WHERE: REASON; retrying with
backoff``; the first success after it logs one, ``store reachable again: WHERE (unreachable for N s)``. Meanwhile a
new session is tried at most once per backoff step (capped exponential with jitter, :func:`backoff`); between tries,
opening one fails at once with the last reason, so no thread of a daemon waits on a connect timeout more than once a
step and a server coming back is not met by every thread at once. A session opened before the store was last
found reachable again, lost afterwards, is a leftover of the outage already reported (each session finds out it was
cut only when it is next used): it is not reported again. Symmetrically, a statement that goes through on a session
opened before the outage began does not end it: while a server shuts down, its sessions are cut one by one, and a
session not cut yet still answers while new ones are refused; only a session opened since (or a new one) proves the
server back. Only processes that ride an outage out say so (a daemon
once registered, ``events -f``: ``announce``); a command that fails says why in its one error line.

The schedule is tenacity's ``wait_exponential`` (the listener's own loop retries with tenacity too); the gate is
shared by threads that each make one try, not one retry loop, so it keeps the attempt count itself.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import tenacity

from agentd.errors import StoreUnreachable
from agentd.store.postgres.connect import connect, one_line

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.25  # s before the first new try after a loss
BACKOFF_MAX = 10.0  # s, the longest wait between tries (a server back is noticed within this, plus a connect)
_SCHEDULE = tenacity.wait_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX, exp_base=2)


class Waiting(StoreUnreachable):
    """Refused by the gate: the next try is not due yet (not a new failure)."""


class _Attempt:
    """What tenacity's wait strategies read of a retry state: the attempt number."""

    def __init__(self, number: int) -> None:
        self.attempt_number = number


def backoff(failures: int, jitter: float = 0.0) -> float:
    """Seconds to wait after ``failures`` failures in a row (≥ 1): 0.25, 0.5, 1, 2 ... capped at BACKOFF_MAX, plus
    up to ``jitter`` (0..1) of a quarter of it so that daemons do not all knock at once."""
    wait = float(_SCHEDULE(_Attempt(failures)))  # type: ignore[arg-type]
    return wait * (1 + 0.25 * jitter)


class Reach:
    """The shared judgement (thread-safe): :meth:`open` new sessions through it, tell it :meth:`lost` and :meth:`ok`."""

    def __init__(
        self,
        where: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.where = where
        self._monotonic = monotonic
        self._jitter = jitter
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0
        self._next_try = 0.0
        self._reason = ""
        self._back_at: float | None = None  # when the store was last found reachable again
        self._opened: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self.announce = False  # log the loss and the return (a daemon, a follower); else only at debug level

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def lost(self, exc: BaseException | str, conn: Any = None) -> None:
        """A session (``conn``, when there was one) was lost or could not be opened: the first time, one warning;
        each time, the next try later."""
        if isinstance(exc, Waiting):
            return
        reason = exc if isinstance(exc, str) else _reason(exc)
        with self._lock:
            now = self._monotonic()
            opened = self._opened_at(conn) if conn is not None else None
            if self._down_since is None and opened is not None and self._back_at is not None and opened < self._back_at:
                log.debug("store: a session from before the last outage was lost too: %s", reason)
                return
            self._reason = reason
            if self._down_since is not None:
                self._failures += 1
                self._next_try = now + backoff(self._failures, self._jitter())
                log.debug("store still unreachable: %s: %s", self.where, reason)
                return
            self._down_since = now  # (one new session may be tried at once: the server may be back already)
            self._failures = 0
            self._next_try = now
        log.log(
            logging.WARNING if self.announce else logging.DEBUG,
            "store unreachable: %s: %s; retrying with backoff",
            self.where,
            reason,
        )

    def ok(self, conn: Any = None) -> None:
        """A statement went through (on ``conn``, when said): the store is back (one line, the first time) — unless
        ``conn`` was opened before the outage began, which proves nothing (see the module's note)."""
        if self._down_since is None:  # (the common case, without the lock)
            return
        with self._lock:
            if self._down_since is None:
                return
            if conn is not None and self._opened_at(conn) < self._down_since:
                log.debug("store: a session from before the outage still answers; not yet judged back")
                return
            since, self._down_since = self._down_since, None
            self._failures = 0
            self._next_try = 0.0
            self._back_at = self._monotonic()
            took = self._back_at - since
        log.log(
            logging.INFO if self.announce else logging.DEBUG,
            "store reachable again: %s (unreachable for %.1f s)",
            self.where,
            took,
        )

    def _opened_at(self, conn: Any) -> float:
        """When ``conn`` was opened through :meth:`open`: -inf for one opened otherwise (the store's first session,
        opened before any outage), +inf for one that cannot be weakly referenced (judged as new)."""
        try:
            return self._opened.get(conn, float("-inf"))
        except TypeError:
            return float("inf")

    def gate(self) -> None:
        """Raise StoreUnreachable at once while the next try is not due; else take the try (others wait for the
        next step)."""
        with self._lock:
            if self._down_since is None:
                return
            now = self._monotonic()
            if now < self._next_try:
                raise Waiting(self.where, f"{self._reason} (retrying with backoff)")
            self._next_try = now + backoff(self._failures + 1, self._jitter())  # (others wait while this one tries)

    def open(self, uri: str, **options: Any) -> Any:
        """A new session through the gate; a failure is a loss (and raises StoreUnreachable)."""
        self.gate()
        try:
            conn = connect(uri, **options)
        except StoreUnreachable as exc:
            self.lost(exc.reason)
            raise
        self.ok()
        with contextlib.suppress(TypeError):  # (a connection that cannot be weakly referenced is judged as new)
            self._opened[conn] = self._monotonic()
        return conn


def _reason(exc: BaseException) -> str:
    if isinstance(exc, StoreUnreachable):
        return exc.reason
    return one_line(exc)
