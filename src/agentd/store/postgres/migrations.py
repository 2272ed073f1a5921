"""The database schema, versioned: numbered ``sql/NNNN_name.sql`` files applied in order by ``agentd store init``.

Each migration runs in its own transaction under an advisory lock (two ``store init`` at once apply it once) and is
recorded in ``agentd_schema``. A store refuses to open a database whose schema is older or newer than the one this
agentd knows, with the command that fixes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from agentd.errors import AgentdError, ExitCode

MIGRATE_LOCK = (0x61676400, 1)  # (namespace, key) of the advisory lock `store init` holds
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaMismatch(AgentdError, LookupError):
    """The database has no agentd schema, or one of another version."""

    exit_code = ExitCode.BAD_DATA

    def __init__(self, where: str, found: int, known: int) -> None:
        self.where = where
        self.found = found
        self.known = known
        if found == 0:
            reason = "has no agentd schema; run: agentd store init"
        elif found < known:
            reason = f"has agentd schema version {found}, older than this agentd's {known}; run: agentd store init"
        else:
            reason = (
                f"has agentd schema version {found}, newer than this agentd knows ({known}); "
                "upgrade agentd (pip install -U 'agentd-sprint[postgresql]')"
            )
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this agentd, in order."""
    found = []
    for entry in resources.files("agentd.store.postgres").joinpath("sql").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def latest() -> int:
    return migrations()[-1].version


def current(conn: Any) -> int:
    """The schema version of the database (0: none)."""
    exists = conn.execute("SELECT to_regclass('agentd_schema') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM agentd_schema").fetchone()
    return int(row[0])


def check(conn: Any, where: str) -> None:
    """SchemaMismatch unless the database has exactly this agentd's schema."""
    found = current(conn)
    if found != latest():
        raise SchemaMismatch(where, found, latest())


def migrate(conn: Any, where: str) -> tuple[int, list[Migration]]:
    """Bring the schema up to date (``conn`` in autocommit); (the version found, the migrations applied)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATE_LOCK)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS agentd_schema ("
            " version integer PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())"
        )
        found = current(conn)
        if found > latest():
            raise SchemaMismatch(where, found, latest())
        applied = []
        for migration in migrations():
            if migration.version <= found:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO agentd_schema (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            applied.append(migration)
    return found, applied
