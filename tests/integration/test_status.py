"""`agentd status`: the dashboard matches the queue and the leases; --watch really refreshes in a terminal."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import events, recorder, task, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow

BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}


@pytest.fixture
def busy(tmp_path: Path) -> Path:
    """A builder daemon running two long tasks, with a third waiting and one backing off."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {
            "builder": {**BUILDER, "command": recorder(log, "--sleep", "60")},
            "tester": {"claims": "awaiting_test", "working": "testing", "on_success": "done", "command": ["true"]},
        },
        defaults={"grace": 0.5, "kill_after": 0.5},
    )
    write_queue(
        tmp_path,
        [
            task("A1", priority=1),
            task("A2", priority=2),
            task("A3", priority=3),
            task("F1", "blocked", blocked_reason="failed 3 attempts (exit code 1)", attempts=3),
            task("W1", "ready", not_before="2999-01-01T00:00:00+00:00", attempts=1),
        ],
        {"builder": 2},
    )
    assert run_agentd("start", "builder", cwd=tmp_path).returncode == 0
    wait_for(lambda: len([r for r in events(log) if r["event"] == "start"]) == 2, 30, "two runs to start")
    yield tmp_path
    run_agentd("stop", cwd=tmp_path, timeout=60)


def test_status_json_matches_the_queue_and_the_leases(busy: Path) -> None:
    """Running tasks, tokens, WIP, next task, counts, backoff and failures agree with the files."""
    result = run_agentd("status", "--json", cwd=busy)
    assert result.returncode == 3  # the tester is not running
    data = json.loads(result.stdout)
    builder, tester = data["roles"]
    assert builder["running"] and not tester["running"]
    leases = {p.stem: json.loads(p.read_text()) for p in (busy / ".leases").glob("*.json")}
    assert sorted(t["id"] for t in builder["tasks"]) == sorted(leases) == ["A1", "A2"]
    for item in builder["tasks"]:
        assert item["token"] == leases[item["id"]]["token"]
        assert item["heartbeat_age_s"] is not None and item["heartbeat_age_s"] < 60
    pid = json.loads((busy / ".agentd" / "run" / "builder.pid").read_text())["pid"]
    assert builder["pid"] == pid and all(lease["pid"] == pid for lease in leases.values())
    assert (builder["wip"], builder["wip_limit"]) == (2, 2)
    assert builder["next"]["id"] == "A3"
    queue = json.loads((busy / "SPRINT_QUEUE.json").read_text())["tasks"]
    counts: dict[str, int] = {}
    for t in queue:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    assert data["statuses"] == counts
    assert [b["id"] for b in data["backing_off"]] == ["W1"]
    assert [f["id"] for f in data["failed"]] == ["F1"]
    assert run_agentd("status", "builder", cwd=busy).returncode == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_status_watch_refreshes_in_a_real_terminal(busy: Path) -> None:
    """In tmux, --watch draws the dashboard, redraws when the queue changes, and stops cleanly on Ctrl-C."""
    session = f"agentd-watch-{time.monotonic_ns()}"
    command = f"cd {busy} && NO_COLOR=1 {Path(__import__('sys').executable).parent}/agentd status --watch --every 0.3"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", command], check=True)

    def screen(escapes: bool = False) -> str:
        args = ["tmux", "capture-pane", "-p", "-t", session] + (["-e"] if escapes else [])
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout

    def shows(*words: str) -> str:
        text = screen()
        return text if all(word in text for word in words) else ""

    def gone() -> bool:
        return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0

    try:
        first = wait_for(lambda: shows("builder", "A3", "backing off"), 30, "the dashboard")
        assert "running" in first and "A1" in first and "token" in first
        colours = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[0-9;]+)m")  # foreground colours, any form
        assert not colours.search(screen(escapes=True))  # NO_COLOR: bold and italics, but no colour
        assert "needs_adapt" not in first
        run_agentd("queue", "add", "N1", "--title", "new task", "--status", "needs_adapt", "--force", cwd=busy)
        wait_for(lambda: shows("needs_adapt"), 60, "the dashboard to show the new status")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        wait_for(gone, 60, "--watch to exit on Ctrl-C")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


def test_plain_status_has_no_escape_codes(busy: Path) -> None:
    """Piped, status prints plain aligned text without terminal escapes."""
    out = run_agentd("status", cwd=busy).stdout
    assert "\x1b" not in out
    assert out.splitlines()[0] == "daemons:" and "tasks per status:" in out
