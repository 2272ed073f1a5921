"""Where bytes touch the disk (and, later, a database): the queue, leases, the journal, daemons and project state.

:mod:`agentd.store.base` is the boundary (the :class:`~agentd.store.base.Store` protocol); :mod:`agentd.store.file` is
the JSON queue file with lease files behind it. :func:`open_store` builds the store a configuration names.
"""

from __future__ import annotations

from agentd.errors import ConfigError, ConfigInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:  # (agentd.schema imports agentd.store.file.incremental: nothing heavier is imported here)
    from pathlib import Path

    from agentd.config import Config
    from agentd.core.clock import Clock
    from agentd.store.base import Store

KINDS = ("file", "postgresql://…")


def open_store(config: Config, *, clock: Clock | None = None, queue_path: str | Path | None = None) -> Store:
    """The store ``config.store`` names: ``"file"`` (the default) or a ``postgresql://`` URI; ConfigError for any
    other (and for a PostgreSQL store without psycopg installed).

    ``queue_path``: a queue file of the caller's own instead of the project's (``agentd queue validate FILE``).
    """
    kind = config.store.strip()
    if kind == "file" or queue_path is not None:
        from agentd.store.file.store import FileStore  # (imported only when used)

        return FileStore(config, clock=clock, queue_path=queue_path)
    from urllib.parse import urlsplit  # (with ipaddress: not for the file store)

    scheme = urlsplit(kind).scheme.lower()  # never the rest of a URI: it may hold a password
    if scheme in ("postgresql", "postgres"):
        try:
            from agentd.store.postgres.store import PgStore  # (psycopg is imported only here)
        except ImportError:
            reason = "the PostgreSQL store needs psycopg: pip install 'agentd-sprint[postgresql]'"
        else:
            return PgStore(config, kind, clock=clock, origin=_origin(config))
    else:
        reason = f"unknown store {(scheme + '://…') if scheme else kind!r}; known: {', '.join(KINDS)}"
    origin = config.sources.get("store", "")
    if origin.startswith(("flag", "env")):
        raise ConfigError(None, f"{reason} (from {origin})")
    raise ConfigInvalid(config.path or config.root / "agentd.toml", "$.store", reason)


def _origin(config: Config) -> str:
    """Where the store was named, for messages: ``flag --store``, ``env AGENTD_STORE``, ``agentd.toml: $.store``."""
    origin = config.sources.get("store", "")
    if origin.startswith(("flag", "env")):
        return origin
    return f"{(config.path or config.root / 'agentd.toml').name}: $.store"
