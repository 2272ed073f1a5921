"""The dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), against a real
`agentd web` process and real daemons. Screenshots of each page go to docs/screenshots/ when AGENTD_SCREENSHOTS=1
(`make screenshots`), else to the test's temporary folder."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT, run_agentd, sha
from tests.helpers.daemons import (
    alive,
    events,
    recorder,
    start,
    stop_all,
    task,
    tasks_by_id,
    wait_for,
    write_config,
    write_queue,
)
from tests.web.conftest import BUILDER, pipeline
from tests.web.server import serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # a deadline for conditions under load, not a measure of speed (`make bench` measures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; skipped with one line when a piece is missing."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium package (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install -e '.[test]')")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def shot(page: Any, name: str, tmp_path: Path) -> None:
    """A screenshot of the page, into docs/screenshots/ when AGENTD_SCREENSHOTS is set."""
    folder = PROJECT / "docs" / "screenshots" if os.environ.get("AGENTD_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def test_board_shows_a_task_added_by_the_cli_without_reload(page: Any, tmp_path: Path) -> None:
    """A task added by `agentd queue add` appears on the open board by itself; the page is never reloaded."""
    pipeline(tmp_path, count=3)
    with serve(tmp_path) as server:
        page.goto(server.login)
        page.wait_for_selector("#card-X1")
        page.wait_for_selector("#live.on", timeout=WAIT_MS)
        page.evaluate("window.__notReloaded = true")
        assert run_agentd("queue", "add", "NEW1", "--title", "added <i>live</i>", cwd=tmp_path).returncode == 0
        page.wait_for_selector("#card-NEW1", timeout=WAIT_MS)
        assert page.evaluate("window.__notReloaded") is True
        assert "added <i>live</i>" in page.inner_text("#card-NEW1 .title")
        page.fill("#filters input[name=text]", "new1")
        assert page.is_hidden("#card-X1") and page.is_visible("#card-NEW1")
        page.fill("#filters input[name=text]", "")
        shot(page, "board", tmp_path)


def test_a_write_without_the_token_is_refused(page: Any, tmp_path: Path) -> None:
    """A browser that never opened the login link cannot retry or cancel: the page says why; the file is unchanged."""
    pipeline(tmp_path, count=1)
    before = sha(tmp_path / "SPRINT_QUEUE.json")
    with serve(tmp_path) as server:
        page.goto(server.url + "/tasks/X1")
        page.click("#cancel")
        page.wait_for_selector("#problem")
        assert "a change needs the token" in page.inner_text("#problem")
    assert sha(tmp_path / "SPRINT_QUEUE.json") == before


SLOW_COMMAND = (
    "import os, sys, time, pathlib\n"
    "print('first line from the agent', flush=True)\n"
    "go = pathlib.Path(os.environ['AGENTD_ROOT']) / 'go'\n"
    "while not go.exists(): time.sleep(0.05)\n"
    "print('second line from the agent', flush=True)\n"
)


def test_a_running_task_s_log_streams_and_the_form_changes_it(page: Any, tmp_path: Path) -> None:
    """The running task's log grows on the page as the command writes; the roles and events pages show the daemon;
    a signed-in cancel from the page moves the task (the same transaction as `agentd queue cancel`)."""
    write_config(
        tmp_path, {"builder": {**BUILDER, "command": [sys.executable, "-c", SLOW_COMMAND]}}, defaults={"interval": 0.2}
    )
    write_queue(tmp_path, [task("L1", title="stream my log", type="Build"), task("L2", status="blocked")])
    daemons = [start(tmp_path, "builder", env={"AGENTD_ROOT": str(tmp_path)})]
    try:
        wait_for(lambda: tasks_by_id(tmp_path)["L1"]["status"] == "in_progress", 30, "L1 to start")
        with serve(tmp_path) as server:
            page.goto(server.login)
            page.goto(server.url + "/tasks/L1")
            page.wait_for_function(
                "document.getElementById('live-log').textContent.includes('first line from the agent')",
                timeout=WAIT_MS,
            )
            (tmp_path / "go").touch()
            page.wait_for_function(
                "document.getElementById('live-log').textContent.includes('second line from the agent')",
                timeout=WAIT_MS,
            )
            shot(page, "task", tmp_path)
            page.goto(server.url + "/roles")
            page.wait_for_selector("tr.up[data-role=builder]", timeout=WAIT_MS)
            shot(page, "roles", tmp_path)
            page.goto(server.url + "/events")
            page.wait_for_selector("tr.ev-started", timeout=WAIT_MS)
            shot(page, "events", tmp_path)
            page.goto(server.url + "/tasks/L2")
            page.fill("form[action$=cancel] input[name=note]", "not needed")
            page.click("#cancel")
            page.wait_for_selector(".notice, #problem", timeout=WAIT_MS)
            assert page.query_selector("#problem") is None, page.inner_text("#problem")
            assert "L2: cancelled" in page.inner_text(".notice")
            stored = tasks_by_id(tmp_path)["L2"]
            assert (stored["status"], stored["status_note"]) == ("cancelled", "not needed")
    finally:
        stop_all(daemons)


def test_the_timeline_draws_the_runs_of_a_real_pipeline(page: Any, ran: Path, tmp_path: Path) -> None:
    """Every run the journal records is a bar (or counted in a merged bar), coloured by its outcome; a final column
    of the board shows its cards when opened."""
    journal = [json.loads(line) for line in (ran / ".agentd" / "events.jsonl").read_text().splitlines()]
    claims = sum(1 for event in journal if event["event"] == "claimed")
    failures = sum(1 for event in journal if event.get("outcome") == "failure")
    with serve(ran, "--read-only") as server:
        page.goto(server.url + "/timeline?hours=0.05")
        page.wait_for_selector("svg.timeline rect.run")
        counts = page.eval_on_selector_all("rect.run", "bars => bars.map(b => Number(b.dataset.count))")
        assert sum(counts) == claims
        assert page.eval_on_selector_all("rect.run[data-outcome=failure]", "bars => bars.length") == failures >= 1
        assert page.is_hidden("#cancel")  # read-only: no actions
        shot(page, "timeline", tmp_path)
        page.goto(server.url + "/")
        assert page.query_selector("#card-X1") is None  # done: its column is collapsed and not yet fetched
        page.click("details[data-status=done] summary")
        page.wait_for_selector("#card-X1", timeout=WAIT_MS)


def test_a_column_opened_while_the_board_refreshes_stays_open(page: Any, ran: Path) -> None:
    """The board's refresh (on connecting to the change stream, and on every change) replaces the columns and opens
    again those that were open. A column opened while the refresh's request is under way stays open with its cards:
    the refresh's first request is held by the browser (page.route) until the column is opened and filled, then let
    through. Before, the open columns were noted when the request began, so the refresh closed this one again and
    its cards went (seen as the timeline test's "done" column never showing X1 under load)."""
    held: list[Any] = []

    def hold_the_first(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    with serve(ran, "--read-only") as server:
        page.route("**/board/fragment", hold_the_first)
        page.goto(server.url + "/")
        # (page.wait_for_timeout hands control to Playwright, which runs the route handler meanwhile)
        wait_for(lambda: held or page.wait_for_timeout(20), 60, "the board's refresh to be held")
        page.click("details[data-status=done] summary")
        page.wait_for_selector("#card-X1", timeout=WAIT_MS)  # opened and filled while the refresh waits
        page.eval_on_selector("details[data-status=done]", "d => { d.dataset.before = '1'; }")
        held[0].continue_()
        page.wait_for_selector("details[data-status=done]:not([data-before])", state="attached", timeout=WAIT_MS)
        page.wait_for_selector("#card-X1", timeout=WAIT_MS)  # the new column: open again, its cards fetched
        assert page.eval_on_selector("details[data-status=done]", "d => d.open")
        page.unroute("**/board/fragment")


def test_cancel_from_the_page_stops_the_running_command(page: Any, tmp_path: Path) -> None:
    """A signed-in Cancel on a running task's page stops its command (the daemon acts on the cancelled status)."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": recorder(log, "--sleep", "120")}},
        defaults={"interval": 60, "grace": 5, "kill_after": 1},
    )
    write_queue(tmp_path, [task("C1", title="cancel me")], {"builder": 1})
    daemons = [start(tmp_path, "builder")]
    try:
        run = wait_for(lambda: [r for r in events(log) if r["event"] == "start"], 30, "the run to start")[0]
        with serve(tmp_path) as server:
            page.goto(server.login)
            page.goto(server.url + "/tasks/C1")
            page.fill("form[action$=cancel] input[name=note]", "superseded")
            page.click("#cancel")
            page.wait_for_selector(".notice", timeout=WAIT_MS)
            wait_for(lambda: not alive(run["pid"]), 60, "the cancelled command to be stopped")
            final = wait_for(lambda: (t := tasks_by_id(tmp_path)["C1"]).get("last_run") and t, 60, "the run's record")
            assert (final["status"], final["status_note"]) == ("cancelled", "superseded")
            assert final["last_run"]["outcome"] == "stopped"
    finally:
        stop_all(daemons)


def test_answer_a_question_and_pause_and_resume_a_role_from_the_pages(page: Any, tmp_path: Path) -> None:
    """Signed in: pause the tester with a reason on the roles page (status shows it), answer the parked question on the
    task page (the queue has the answer), resume the tester on the roles page: its daemon takes the task to done."""
    pipeline(tmp_path, count=1)
    queue = tmp_path / "SPRINT_QUEUE.json"
    data = json.loads(queue.read_text())
    data["tasks"][0]["status"] = "needs_feedback"
    data["tasks"][0]["question"] = {"role": "tester", "text": "which port?", "asked_at": "2026-12-03T00:00:00Z"}
    queue.write_text(json.dumps(data, indent=2) + "\n")
    daemons = [start(tmp_path, "tester")]
    try:
        with serve(tmp_path) as server:
            page.goto(server.login)
            page.goto(server.url + "/roles")
            page.fill("tr[data-role=tester] form.pause input[name=reason]", "usage limit")
            page.click("tr[data-role=tester] button.pause")
            page.wait_for_selector(".notice, #problem", timeout=WAIT_MS)
            assert page.query_selector("#problem") is None, page.inner_text("#problem")
            assert "paused tester until resumed (usage limit)" in page.inner_text(".notice")
            page.wait_for_selector("tr[data-role=tester] [data-paused=tester]", timeout=WAIT_MS)
            status = json.loads(run_agentd("status", "--json", cwd=tmp_path).stdout)
            assert [(p["role"], p["reason"]) for p in status["paused"]] == [("tester", "usage limit")]
            page.goto(server.url + "/tasks/X1")
            assert "which port?" in page.inner_text("#question")
            page.fill("#answer-text", "8080")
            page.click("#answer")
            page.wait_for_selector(".notice, #problem", timeout=WAIT_MS)
            assert page.query_selector("#problem") is None, page.inner_text("#problem")
            assert "X1: answered; back to awaiting_test" in page.inner_text(".notice")
            answered = tasks_by_id(tmp_path)["X1"]
            assert answered["status"] == "awaiting_test"  # the paused tester leaves it where the answer put it
            assert answered["feedback"][-1]["answer"] == "8080"
            shot(page, "question-answered", tmp_path)
            page.goto(server.url + "/roles")
            page.click("tr[data-role=tester] button.resume")
            page.wait_for_selector(".notice", timeout=WAIT_MS)
            assert "resumed tester" in page.inner_text(".notice")
            wait_for(lambda: tasks_by_id(tmp_path)["X1"]["status"] == "done", 60, "the resumed tester to finish X1")
    finally:
        stop_all(daemons)
