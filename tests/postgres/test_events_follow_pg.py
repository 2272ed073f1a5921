"""``agentd events -f`` on PostgreSQL: it follows the journal through LISTEN/NOTIFY and outlives a server restart.

A real server of the test's own (restarted by the test), a real ``agentd events -f`` process, events appended by
another process's journal (as a daemon's are)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers import pg
from tests.helpers.daemons import wait_for

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

DEADLINE = 60.0
EMIT = (
    "import sys; from pathlib import Path; from agentd import config; from agentd.store import open_store;"
    "s = open_store(config.load(root=Path(sys.argv[1]))); s.journal('builder').emit('note', sys.argv[2]); s.close()"
)


class Lines:
    """The lines a process writes to one of its streams, read by a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def emit(root: Path, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EMIT, str(root), message], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert done.returncode == 0, done.stderr


def listening(dsn: str, pid: int) -> bool:
    """Whether the follower (pid) has a session that ran LISTEN on the journal's channel."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s", (f"agentd follow {pid}",)
        ).fetchall()
    return any("LISTEN agentd_events" in row[0] for row in rows)


@pytest.mark.slow
def test_events_follow_listens_and_outlives_a_server_restart(tmp_path: Path, own_server: pg.Server) -> None:
    """events -f listens on the journal's channel and prints an event another process appends; the server
    restarts: it says so once on stderr and once when back, keeps running, and prints the events appended after."""
    dsn = pg.fresh_database(own_server)
    (tmp_path / "agentd.toml").write_text(f'store = "{dsn}"\n')
    assert run_agentd("store", "init", cwd=tmp_path).returncode == 0
    assert run_agentd("init", cwd=tmp_path).returncode == 0
    follower = subprocess.Popen(
        [sys.executable, "-m", "agentd", "events", "-f"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    out, err = Lines(follower.stdout), Lines(follower.stderr)
    try:
        wait_for(lambda: listening(dsn, follower.pid), DEADLINE, f"the follower to LISTEN ({err.lines})")
        emit(tmp_path, "before the restart")
        wait_for(lambda: out.has("before the restart"), DEADLINE, f"the first event ({out.lines}, {err.lines})")
        own_server.restart()
        wait_for(lambda: listening(dsn, follower.pid), DEADLINE, f"the follower to LISTEN again ({err.lines})")
        emit(tmp_path, "after the restart")
        wait_for(lambda: out.has("after the restart"), DEADLINE, f"the second event ({out.lines}, {err.lines})")
        assert follower.poll() is None, err.lines
    finally:
        follower.terminate()
        follower.wait(timeout=DEADLINE)
    lost = [line for line in err.lines if "store unreachable" in line]
    back = [line for line in err.lines if "store reachable again" in line]
    assert len(lost) == 1 and len(back) == 1 and len(err.lines) == 2, err.lines
