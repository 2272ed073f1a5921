"""The dashboard app over a real project: pages, escaping, the API, /metrics against the journal, actions."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from agentd.config import load
from agentd.core.clock import SystemClock
from agentd.report import status as status_report
from agentd.service import background as service
from agentd.store.file import journal
from agentd.web.app import create_app
from agentd.web.auth import COOKIE, Guard
from agentd.web.data import Source
from tests.conftest import run_agentd, sha
from tests.web.conftest import pipeline

TOKEN = "s3cret-token-for-the-tests-0123456789"


def client(root: Path, **guard: object) -> TestClient:
    config = load(root=root, environ={})
    return TestClient(create_app(Source(config, SystemClock()), Guard(TOKEN, **guard)))  # type: ignore[arg-type]


def test_every_page_renders(ran: Path) -> None:
    """Board, roles, task, timeline, events, a run log, the SVG: 200 each."""
    web = client(ran)
    for path in ("/", "/board/fragment", "/roles", "/tasks/X1", "/timeline", "/timeline.svg", "/events"):
        assert web.get(path).status_code == 200, path
    assert web.get("/tasks/X1/logs/1").status_code in (200, 404)
    assert web.get("/static/app.js").status_code == 200


def test_board_has_a_column_per_status_and_escapes_titles(ran: Path) -> None:
    """Titles are written by agents: rendered as text, never as markup; done is collapsed."""
    html = client(ran).get("/").text
    assert "<b>task" not in html
    assert "&lt;b&gt;task 2&lt;/b&gt; &amp; co" in html
    assert (
        html.index('data-status="ready"')
        < html.index('data-status="in_progress"')
        < html.index('data-status="awaiting_test"')
    )
    assert '<details class="column final" data-status="done">' in html
    assert 'id="card-X2"' in html  # blocked: a working column, drawn at once
    assert 'id="card-X1"' not in html  # done: fetched only when its column is opened
    done = client(ran).get("/board/column/done")
    assert done.status_code == 200 and 'id="card-X1"' in done.text and "&lt;b&gt;task 1" in done.text
    assert client(ran).get("/board/column/nope").status_code == 404


def test_unknown_task_is_404_naming_the_queue(ran: Path) -> None:
    """A task id that is not there: 404 with the queue's file named."""
    response = client(ran).get("/tasks/NOPE")
    assert response.status_code == 404
    assert "SPRINT_QUEUE.json" in response.text and "NOPE" in response.text


def test_api_status_is_agentd_status_json(ran: Path) -> None:
    """/api/status is `agentd status --json` (same keys, same roles, same counts)."""
    served = client(ran).get("/api/status").json()
    config = load(root=ran, environ={})
    cli = status_report.build(config, service.daemons(config, None), SystemClock().now())
    assert served.keys() == cli.keys()
    assert served["statuses"] == cli["statuses"]
    assert [r["role"] for r in served["roles"]] == [r["role"] for r in cli["roles"]]


def test_api_tasks_matches_queue_list_json(ran: Path) -> None:
    """/api/tasks is `agentd queue list --json`; /api/tasks/{id} is `queue show --json`."""
    web = client(ran)
    listed = json.loads(run_agentd("queue", "list", "--json", cwd=ran).stdout)
    assert web.get("/api/tasks").json() == listed
    shown = json.loads(run_agentd("queue", "show", "X1", "--json", cwd=ran).stdout)
    assert web.get("/api/tasks/X1").json() == shown
    assert web.get("/api/tasks/NOPE").status_code == 404


def test_metrics_parse_and_match_the_journal(ran: Path) -> None:
    """/metrics parses with prometheus_client's parser; runs, durations and tasks match the journal and queue."""
    text = client(ran).get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    events = list(journal.read_events(ran / ".agentd" / "events.jsonl"))
    finished = Counter((e.role, e.data["outcome"]) for e in events if e.name == "finished")
    runs = {
        (s.labels["role"], s.labels["outcome"]): s.value
        for s in families["agentd_runs"].samples
        if s.name.endswith("_total")
    }
    assert runs == {key: float(count) for key, count in finished.items()}
    assert ("builder", "failure") in runs
    durations = {
        s.labels["role"]: s.value for s in families["agentd_run_duration_seconds"].samples if s.name.endswith("_count")
    }
    assert durations == {role: float(sum(c for (r, _), c in finished.items() if r == role)) for role in durations}
    pickups = {
        s.labels["role"]: s.value
        for s in families["agentd_pickup_latency_seconds"].samples
        if s.name.endswith("_count")
    }
    assert pickups.get("tester") == float(finished[("builder", "success")])  # each built task was picked up once
    tasks = {s.labels["status"]: s.value for s in families["agentd_tasks"].samples}
    assert tasks == {"done": 3.0, "blocked": 1.0}
    up = [s for s in families["agentd_daemon_up"].samples]
    assert {s.labels["role"] for s in up} == {"builder", "tester"} and all(s.value == 0 for s in up)


def test_healthz_names_the_roles_without_a_daemon(ran: Path) -> None:
    """No daemon running: 503 and each role named."""
    response = client(ran).get("/healthz")
    assert response.status_code == 503
    assert sorted(response.json()["problems"]) == ["builder: no daemon running", "tester: no daemon running"]


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    pipeline(tmp_path, count=2)
    return tmp_path


def test_write_without_the_token_is_refused_and_the_file_untouched(fresh: Path) -> None:
    """No token: 403 with the reason; the queue is byte-for-byte as it was."""
    before = sha(fresh / "SPRINT_QUEUE.json")
    response = client(fresh).post("/tasks/X1/cancel", data={"note": "no"})
    assert response.status_code == 403 and "token" in response.text
    cookie_only = client(fresh)
    cookie_only.cookies.set(COOKIE, TOKEN)
    assert cookie_only.post("/tasks/X1/cancel", data={}).status_code == 403  # no CSRF field
    assert sha(fresh / "SPRINT_QUEUE.json") == before


def test_read_only_refuses_writes(fresh: Path) -> None:
    """--read-only: 403 even with the token; nothing changes."""
    before = sha(fresh / "SPRINT_QUEUE.json")
    response = client(fresh, read_only=True).post("/tasks/X1/cancel", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and "read-only" in response.text
    assert sha(fresh / "SPRINT_QUEUE.json") == before


def test_actions_make_the_same_change_as_the_cli(fresh: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Cancel and set-status from the page leave the same bytes as the CLI commands."""
    twin = tmp_path_factory.mktemp("twin")
    shutil.copy(fresh / "SPRINT_QUEUE.json", twin / "SPRINT_QUEUE.json")
    shutil.copy(fresh / "agentd.toml", twin / "agentd.toml")
    web = client(fresh)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert web.post("/tasks/X1/cancel", data={"note": "superseded"}, headers=bearer).status_code == 200
    assert web.post("/tasks/X2/status", data={"status": "blocked", "note": "wait"}, headers=bearer).status_code == 200
    assert run_agentd("queue", "cancel", "X1", "--note", "superseded", cwd=twin).returncode == 0
    assert run_agentd("queue", "set-status", "X2", "blocked", "--note", "wait", cwd=twin).returncode == 0
    assert (fresh / "SPRINT_QUEUE.json").read_bytes() == (twin / "SPRINT_QUEUE.json").read_bytes()


def test_browser_form_with_cookie_and_csrf_changes_and_redirects(fresh: Path) -> None:
    """A signed-in browser's form (cookie + CSRF field) works and lands on the task page with a notice."""
    web = client(fresh)
    assert web.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303
    assert web.cookies.get(COOKIE) == TOKEN
    csrf = Guard(TOKEN).csrf()
    page = web.get("/tasks/X1").text
    assert f'value="{csrf}"' in page
    response = web.post(
        "/tasks/X1/cancel", data={"csrf": csrf}, headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/tasks/X1?notice=")
    assert json.loads((fresh / "SPRINT_QUEUE.json").read_text())["tasks"][0]["status"] == "cancelled"


def test_a_refused_change_is_409_with_the_cli_message(fresh: Path) -> None:
    """Retrying a final task is refused with the same words as `agentd queue retry`."""
    web = client(fresh)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    web.post("/tasks/X1/cancel", headers=bearer)
    response = web.post("/tasks/X1/retry", headers=bearer)
    cli = run_agentd("queue", "retry", "X1", cwd=fresh)
    assert response.status_code == 409
    assert response.text.strip() == cli.stderr.strip().removeprefix("agentd: ")


def test_wrong_login_token_sets_no_cookie(fresh: Path) -> None:
    """A wrong login link is 403 and leaves no cookie."""
    web = client(fresh)
    assert web.get("/login?token=nope", follow_redirects=False).status_code == 403
    assert web.cookies.get(COOKIE) is None


def test_reads_need_the_token_off_loopback(fresh: Path) -> None:
    """When reads need the token, pages are 401 without it; /healthz stays open for probes."""
    web = client(fresh, reads_need_token=True)
    assert web.get("/").status_code == 401
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert web.get("/healthz").status_code == 503


def test_log_paths_cannot_leave_the_logs_folder(fresh: Path) -> None:
    """A task id like `..` is not a file name: 404, and no file outside .agentd/logs/tasks is read."""
    secret = fresh / ".agentd" / "logs" / "1.log"
    secret.parent.mkdir(parents=True)
    secret.write_text("not yours")
    web = client(fresh)
    for path in ("/tasks/../logs/1", "/tasks/%2E%2E/logs/1", "/tasks/%2E%2E/logs/1/stream"):
        response = web.get(path)
        assert response.status_code == 404, path
        assert "not yours" not in response.text


def test_a_broken_queue_is_reported_not_fatal(fresh: Path) -> None:
    """A queue that does not parse: the board and /healthz say so in one line, /metrics still parses, the API is 503."""
    (fresh / "SPRINT_QUEUE.json").write_text('{"tasks": [')
    web = client(fresh)
    board = web.get("/")
    assert board.status_code == 200 and "SPRINT_QUEUE.json" in board.text
    families = {f.name: f for f in text_string_to_metric_families(web.get("/metrics").text)}
    assert families["agentd_queue_readable"].samples[0].value == 0
    assert web.get("/api/tasks").status_code == 503
    assert any(p.startswith("queue: ") for p in web.get("/healthz").json()["problems"])
    assert web.get("/roles").status_code == 200


def test_metrics_show_paused_roles_and_questions_waiting(fresh: Path) -> None:
    """agentd_role_paused follows `agentd pause`/`resume`; agentd_questions_waiting counts a parked question."""

    def gauges() -> tuple[dict[str, float], dict[str, float]]:
        families = {f.name: f for f in text_string_to_metric_families(client(fresh).get("/metrics").text)}
        paused = {s.labels["role"]: s.value for s in families["agentd_role_paused"].samples}
        asked = {s.labels["role"]: s.value for s in families["agentd_questions_waiting"].samples}
        return paused, asked

    assert gauges() == ({"builder": 0.0, "tester": 0.0}, {"builder": 0.0, "tester": 0.0})
    assert run_agentd("pause", "builder", "--reason", "usage limit", cwd=fresh).returncode == 0
    queue = fresh / "SPRINT_QUEUE.json"
    data = json.loads(queue.read_text())
    task = data["tasks"][0]
    task["status"] = "needs_feedback"
    task["question"] = {"role": "tester", "text": "which port?", "asked_at": "2026-12-03T00:00:00Z"}
    queue.write_text(json.dumps(data, indent=2) + "\n")
    paused, asked = gauges()
    assert paused == {"builder": 1.0, "tester": 0.0}
    assert asked == {"builder": 0.0, "tester": 1.0}
    assert run_agentd("resume", "builder", cwd=fresh).returncode == 0
    assert gauges()[0] == {"builder": 0.0, "tester": 0.0}


def _ask(root: Path, task_id: str = "X1", role: str = "tester") -> None:
    """Park ``task_id`` on a question ``role``'s command asked, as a daemon leaves it."""
    queue = root / "SPRINT_QUEUE.json"
    data = json.loads(queue.read_text())
    raw = next(t for t in data["tasks"] if t["id"] == task_id)
    raw["status"] = "needs_feedback"
    raw["question"] = {"role": role, "text": "which port?", "asked_at": "2026-12-03T00:00:00Z", "session": "s-1"}
    queue.write_text(json.dumps(data, indent=2) + "\n")


def _without_times(queue: Path) -> dict[str, object]:
    """The queue as JSON, the answer's timestamps blanked (the page and the CLI answer a moment apart)."""
    data = json.loads(queue.read_text())
    for raw in data["tasks"]:
        if isinstance(raw.get("question"), dict):
            raw["question"]["answered_at"] = "-"
        for entry in raw.get("feedback", []):
            entry["at"] = "-"
    return data


def _events(root: Path, name: str) -> list[journal.Event]:
    return [e for e in journal.read_events(root / ".agentd" / "events.jsonl") if e.name == name]


def test_answer_from_the_page_is_the_cli_answer(fresh: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Answering on the task page leaves the queue as `agentd queue answer` does, and journals `answered` alike."""
    _ask(fresh)
    twin = tmp_path_factory.mktemp("twin")
    shutil.copy(fresh / "SPRINT_QUEUE.json", twin / "SPRINT_QUEUE.json")
    shutil.copy(fresh / "agentd.toml", twin / "agentd.toml")
    web = client(fresh)
    page = web.get("/tasks/X1").text
    assert 'action="/tasks/X1/answer"' in page and "which port?" in page
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = web.post("/tasks/X1/answer", data={"answer": " 8080 ", "by": "alice"}, headers=bearer)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "X1: answered; back to awaiting_test (tester resumes it first)"
    cli = run_agentd("queue", "answer", "X1", "8080", "--by", "alice", cwd=twin)
    assert cli.returncode == 0, cli.stderr
    assert _without_times(fresh / "SPRINT_QUEUE.json") == _without_times(twin / "SPRINT_QUEUE.json")
    (ours,), (theirs,) = _events(fresh, "answered"), _events(twin, "answered")
    assert (ours.message, ours.role) == (theirs.message, theirs.role)
    assert 'action="/tasks/X1/answer"' not in web.get("/tasks/X1").text  # answered: no form any more


def test_a_refused_answer_is_409_with_the_cli_message_and_the_queue_untouched(fresh: Path) -> None:
    """Answering a task with no open question: 409 with `agentd queue answer`'s words; an empty answer is 400."""
    before = sha(fresh / "SPRINT_QUEUE.json")
    web = client(fresh)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = web.post("/tasks/X1/answer", data={"answer": "yes"}, headers=bearer)
    cli = run_agentd("queue", "answer", "X1", "yes", cwd=fresh)
    assert response.status_code == 409 and cli.returncode == 7
    assert response.text.strip() == cli.stderr.strip().removeprefix("agentd: ")
    assert web.post("/tasks/X1/answer", data={"answer": "  "}, headers=bearer).status_code == 400
    assert web.post("/tasks/NOPE/answer", data={"answer": "yes"}, headers=bearer).status_code == 404
    assert sha(fresh / "SPRINT_QUEUE.json") == before


def _paused(root: Path) -> dict[str, dict[str, object]]:
    """`agentd status --json`'s pauses, by role."""
    status = json.loads(run_agentd("status", "--json", cwd=root).stdout)
    return {str(p["role"]): p for p in status["paused"]}


def test_pause_and_resume_from_the_roles_page_are_the_cli_s(fresh: Path) -> None:
    """Pause with a reason and a duration from the roles page, then resume: the CLI sees each, the journal says it."""
    web = client(fresh)
    page = web.get("/roles").text
    assert 'action="/roles/builder/pause"' in page and 'action="/roles/%2A/pause"' in page
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    response = web.post("/roles/builder/pause", data={"reason": "usage limit", "for": "2h"}, headers=bearer)
    assert response.status_code == 200, response.text
    assert response.json()["message"].startswith("paused builder until ")
    pause = _paused(fresh)["builder"]
    assert (pause["reason"], pause["by"], pause["until"] is not None) == ("usage limit", "dashboard", True)
    assert 'action="/roles/builder/resume"' in web.get("/roles").text
    why = run_agentd("queue", "why", "X1", cwd=fresh)
    assert "paused" in why.stdout, why.stdout
    response = web.post("/roles/builder/resume", data={}, headers=bearer)
    assert response.status_code == 200 and response.json()["message"] == "resumed builder"
    assert _paused(fresh) == {}
    assert [e.data["paused"] for e in _events(fresh, "paused")] == ["builder"]
    assert [e.data["paused"] for e in _events(fresh, "resumed")] == ["builder"]
    assert web.post("/roles/builder/resume", data={}, headers=bearer).json()["message"] == "builder: not paused"


def test_pausing_every_role_from_the_page_and_resuming_one_says_the_pause_stands(fresh: Path) -> None:
    """Pause `*` (every role) until resumed; resuming builder alone lifts nothing and says every role stays paused."""
    web = client(fresh)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert web.post("/roles/%2A/pause", data={"reason": "holidays"}, headers=bearer).json()["message"] == (
        "paused every role until resumed (holidays)"
    )
    message = web.post("/roles/builder/resume", data={}, headers=bearer).json()["message"]
    assert message.startswith("builder: not paused; a pause of every role is still in force")
    assert list(_paused(fresh)) == ["*"]
    assert web.post("/roles/%2A/resume", data={}, headers=bearer).json()["message"] == "resumed every role"
    assert _paused(fresh) == {}


def test_bad_pauses_are_refused_with_the_cli_s_words_and_no_state_written(fresh: Path) -> None:
    """An unknown role is 404, --for 0 and a past --until are 400, in `agentd pause`'s words; nothing is written."""
    web = client(fresh)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    state = fresh / ".agentd" / "state.json"
    response = web.post("/roles/nobody/pause", data={}, headers=bearer)
    cli = run_agentd("pause", "nobody", cwd=fresh)
    assert response.status_code == 404 and response.text.strip() == cli.stderr.strip().removeprefix("agentd: ")
    response = web.post("/roles/builder/pause", data={"for": "0s"}, headers=bearer)
    assert response.status_code == 400 and "a pause lasts more than 0 s" in response.text
    response = web.post("/roles/builder/pause", data={"until": "2001-01-01T00:00"}, headers=bearer)
    assert response.status_code == 400 and "already past" in response.text
    assert not state.exists()


def test_role_actions_need_the_token_and_are_refused_read_only(fresh: Path) -> None:
    """No token, a cookie without the CSRF field, or --read-only: 403, and the project state is not written."""
    state = fresh / ".agentd" / "state.json"
    assert client(fresh).post("/roles/builder/pause", data={"reason": "x"}).status_code == 403
    cookie_only = client(fresh)
    cookie_only.cookies.set(COOKIE, TOKEN)
    assert cookie_only.post("/roles/builder/pause", data={}).status_code == 403
    read_only = client(fresh, read_only=True)
    response = read_only.post("/roles/builder/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and "read-only" in response.text
    assert "/roles/builder/pause" not in read_only.get("/roles").text
    assert not state.exists()
    _ask(fresh)
    before = sha(fresh / "SPRINT_QUEUE.json")
    response = read_only.post("/tasks/X1/answer", data={"answer": "no"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and 'action="/tasks/X1/answer"' not in read_only.get("/tasks/X1").text
    assert sha(fresh / "SPRINT_QUEUE.json") == before
