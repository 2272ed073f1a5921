"""`agentd start --web`: the dashboard as a background process beside the role daemons, stopped with them."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import alive, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A one-role project; everything started is stopped afterwards."""
    write_config(
        tmp_path,
        {"builder": {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["true"]}},
    )
    write_queue(tmp_path, [], {"builder": 1})
    yield tmp_path
    run_agentd("stop", cwd=tmp_path, timeout=60)


def answers(url: str) -> int | None:
    """The HTTP status of ``url``, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def started_web(project: Path, *extra: str) -> tuple[str, str]:
    """Run `agentd start --web --web-port 0 ...`; the address and login link it printed."""
    out = run_agentd("start", "--web", "--web-port", "0", *extra, cwd=project, timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"^web started on (http://127\.0\.0\.1:\d+) \(pid \d+, log .*web\.log\)$", out.stdout, re.M)
    assert found, out.stdout
    login = re.search(r"^login: (http://\S+/login\?token=\S+)$", out.stdout, re.M)
    assert login, out.stdout
    return found.group(1), login.group(1)


def test_start_web_serves_shows_in_status_and_stops_with_the_roles(project: Path) -> None:
    """start --web: the page answers as soon as "started" is printed, status names it, stop ends it and its PID file,
    and the login link (it carries the token) is never written to the web log."""
    url, login = started_web(project)
    assert answers(url + "/healthz") == 200  # listening before "started" was printed: no wait needed
    status = json.loads(run_agentd("status", "--json", cwd=project).stdout)
    assert status["web"]["url"] == url
    pid = status["web"]["pid"]
    assert alive(pid)
    plain = run_agentd("status", cwd=project).stdout
    assert "dashboard (agentd web)" in plain and url in plain
    token = login.rsplit("token=", 1)[1]
    assert token not in (project / ".agentd" / "logs" / "web.log").read_text()

    again = run_agentd("start", "--web", "--web-port", "0", cwd=project, timeout=120)
    assert "web is already running (pid" in again.stdout, again.stdout

    stopped = run_agentd("stop", cwd=project, timeout=60)
    assert re.search(r"^web stopped \(pid \d+", stopped.stdout, re.M), stopped.stdout
    assert answers(url + "/healthz") is None
    assert not (project / ".agentd" / "run" / "web" / "server.pid").exists()
    assert json.loads(run_agentd("status", "--json", cwd=project).stdout)["web"] is None


def test_stop_web_alone_leaves_the_roles_and_restart_keeps_the_address(project: Path) -> None:
    """`stop --web` stops only the dashboard; `restart` brings a running dashboard back on the same address."""
    url, _ = started_web(project)
    port = url.rsplit(":", 1)[1]
    assert run_agentd("restart", cwd=project, timeout=120).returncode == 0
    # restarted with the flags it had (--web-port 0: some free port)
    status = json.loads(run_agentd("status", "--json", cwd=project).stdout)
    assert status["web"] is not None
    run_agentd("stop", "--web", cwd=project, timeout=60)
    status = json.loads(run_agentd("status", "--json", cwd=project).stdout)
    assert status["web"] is None
    assert all(row["running"] for row in status["roles"])
    fixed = run_agentd("start", "--web", "--web-port", port, cwd=project, timeout=120)
    assert fixed.returncode == 0, fixed.stderr
    assert f"web started on {url} " in fixed.stdout
    assert run_agentd("restart", cwd=project, timeout=120).returncode == 0
    wait_for(lambda: answers(url + "/healthz") == 200, 30, "the restarted dashboard on the same port")


def test_a_port_in_use_is_a_clear_failure(project: Path) -> None:
    """A second background dashboard on a port that is taken fails with the reason; no PID file is left."""
    started_web(project)
    run_agentd("stop", "--web", cwd=project, timeout=60)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        out = run_agentd("start", "--web", "--web-port", str(busy), cwd=project, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert f"web failed to start: cannot listen on 127.0.0.1:{busy}" in out.stderr
    assert not (project / ".agentd" / "run" / "web" / "server.pid").exists()
