"""`agentd web` as a real process: it starts, serves, streams changes, refuses unsafe binds, and stops on SIGTERM."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import run_agentd
from tests.web.conftest import pipeline
from tests.web.server import serve


def test_binding_elsewhere_without_a_token_is_refused(tmp_path: Path) -> None:
    """`--host 0.0.0.0 --no-token` exits 2 with one line saying why; nothing is served."""
    pipeline(tmp_path)
    result = run_agentd("web", "--host", "0.0.0.0", "--no-token", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in result.stderr


def test_a_token_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A world-readable --token-file: exit 4, the file named."""
    pipeline(tmp_path)
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o644)
    result = run_agentd("web", "--token-file", str(token), "--port", "0", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr == "agentd: token: the web token is readable by others (mode 644); chmod 600 it\n"


@pytest.mark.slow
def test_server_streams_a_change_when_the_cli_adds_a_task(tmp_path: Path) -> None:
    """/stream/changes sends `event: change` after `agentd queue add`; the board then shows the task."""
    pipeline(tmp_path)
    with serve(tmp_path) as server:
        assert server.token and (tmp_path / ".agentd" / "web.token").read_text().strip() == server.token
        parts = urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        conn.request("GET", "/stream/changes")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("content-type", "").startswith("text/event-stream")
        assert response.readline().startswith(b": connected")
        assert run_agentd("queue", "add", "NEW1", "--title", "from the CLI", cwd=tmp_path).returncode == 0
        deadline = time.monotonic() + 20
        lines = []
        while b"event: change\n" not in lines:
            assert time.monotonic() < deadline, lines
            lines.append(response.readline())
        conn.close()
        other = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
        other.request("GET", "/board/fragment")
        assert 'id="card-NEW1"' in other.getresponse().read().decode()
        other.request("GET", "/api/tasks/NEW1")
        assert json.loads(other.getresponse().read())["title"] == "from the CLI"
        server.proc.terminate()
        assert server.proc.wait(timeout=15) == 0
