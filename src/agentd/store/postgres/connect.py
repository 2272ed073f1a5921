"""Connections: one place that opens them (UTC, a name in pg_stat_activity, keepalives) and says where they go."""

from __future__ import annotations

import os
from pathlib import PosixPath
from typing import Any
from urllib.parse import urlsplit

from agentd.errors import StoreUnreachable

__all__ = ["Address", "StoreUnreachable", "address", "connect", "display", "one_line"]


def display(uri: str) -> str:
    """The URI as messages show it: never its password nor its query string."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


class Address(PosixPath):
    """What ``Store.where`` gives for a database: the URI without its password (a path only in type: nothing opens
    it, and messages show it as it is)."""

    uri: str = ""

    def __str__(self) -> str:
        return self.uri or super().__str__()


def address(uri: str, *parts: str) -> Address:
    shown = "/".join([display(uri).rstrip("/"), *parts])
    path = Address(shown)
    path.uri = shown
    return path


def one_line(exc: BaseException) -> str:
    """A driver error in one line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(uri: str, *, autocommit: bool = True, purpose: str = "agentd", origin: str = "") -> Any:
    """A new connection to ``uri``; StoreUnreachable (one line, no password) when it cannot be made."""
    import psycopg

    try:
        return psycopg.connect(
            uri,
            autocommit=autocommit,
            application_name=f"agentd {purpose} {os.getpid()}",
            options="-c TimeZone=UTC",
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
    except psycopg.Error as exc:
        reason = one_line(exc)
        secret = urlsplit(uri).password
        if secret:
            reason = reason.replace(secret, "…")
        raise StoreUnreachable(display(uri), reason, origin) from None
