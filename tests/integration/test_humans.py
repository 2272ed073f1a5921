"""People in the loop with real daemons and real commands: questions and answers, pauses, budgets, waiting limits."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.core import transitions
from agentd.core.clock import FakeClock, SystemClock, parse_timestamp
from agentd.core.model import index_by_id
from agentd.run.daemon import Daemon, TickReport
from agentd.store.file import state as state_file
from agentd.store.file.queuefile import QueueStore
from tests.conftest import run_agentd
from tests.helpers.daemons import events, start, stop_all, task, tasks_by_id, wait_for, write_config, write_queue

pytestmark = pytest.mark.slow

AGENT = Path(__file__).resolve().parents[1] / "helpers" / "agent.py"
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}


def agent(log: Path, *args: str) -> list[str]:
    return [sys.executable, str(AGENT), str(log), *args]


def journal(root: Path) -> list[dict[str, Any]]:
    return events(root / ".agentd" / "events.jsonl")


def named(root: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in journal(root) if event["event"] == name]


def test_a_question_parks_the_task_and_the_answer_resumes_its_session(tmp_path: Path) -> None:
    """Q1 asks: it waits (lease gone, no attempt spent) while the one WIP slot runs T2; `queue answer` puts it back
    and the resumed run gets the answer and the session through resume_command and AGENTD_* variables."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {
            "builder": {
                **BUILDER,
                "command": agent(log, "--ask", "{field:ask}"),
                "resume_command": agent(log, "--resumed", "{session}", "{answer}"),
                "wip": 1,
            }
        },
        defaults={"interval": 3600},
    )
    write_queue(tmp_path, [task("Q1", priority=1, ask="Which database?"), task("T2", priority=2)])
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: tasks_by_id(tmp_path)["T2"]["status"] == "awaiting_test", 60, "T2 to run in Q1's slot")
        parked = tasks_by_id(tmp_path)["Q1"]
        assert parked["status"] == "needs_feedback"
        assert parked["lease"] is None
        assert parked.get("attempts", 0) == 0
        asked = parked["question"]
        assert (asked["role"], asked["text"], asked["session"], asked["attempt"]) == (
            "builder",
            "Which database?",
            "s-Q1",
            1,
        )
        assert asked["token"] == 1 and asked["asked_at"]
        assert not (tmp_path / ".leases" / "Q1.json").exists()  # released when it asked (T2's may still be going)
        waiting = run_agentd("queue", "waiting", "--json", cwd=tmp_path)
        assert waiting.returncode == 0, waiting.stderr
        assert [(row["id"], row["question"]) for row in json.loads(waiting.stdout)] == [("Q1", "Which database?")]
        answered = run_agentd("queue", "answer", "Q1", "PostgreSQL 16", "--by", "alice", cwd=tmp_path)
        assert answered.returncode == 0, answered.stderr
        wait_for(lambda: tasks_by_id(tmp_path)["Q1"]["status"] == "awaiting_test", 60, "Q1 to resume and finish")
    finally:
        stop_all([daemon])
    runs = [r for r in events(log) if r["task"] == "Q1"]
    assert len(runs) == 2
    resumed = runs[1]
    assert resumed["argv"][1:] == ["--resumed", "s-Q1", "PostgreSQL 16"]
    assert resumed["env"]["AGENTD_ANSWER"] == "PostgreSQL 16"
    assert resumed["env"]["AGENTD_SESSION"] == "s-Q1"
    assert resumed["env"]["AGENTD_QUESTION"] == "Which database?"
    assert resumed["env"]["AGENTD_ATTEMPT"] == "1"  # the question spent no attempt
    done = tasks_by_id(tmp_path)["Q1"]
    assert "question" not in done
    assert [(f["question"], f["answer"], f["by"]) for f in done["feedback"]] == [
        ("Which database?", "PostgreSQL 16", "alice")
    ]
    assert [e["task"] for e in named(tmp_path, "question-asked")] == ["Q1"]
    assert [e["by"] for e in named(tmp_path, "answered")] == ["alice"]


def test_answering_a_task_with_no_question_is_refused_and_leaves_the_file(tmp_path: Path) -> None:
    """`queue answer` on a task with no open question: one line naming the task, exit 7, the queue unchanged."""
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["true"]}})
    path = write_queue(tmp_path, [task("T1")])
    before = path.read_bytes()
    result = run_agentd("queue", "answer", "T1", "yes", cwd=tmp_path)
    assert result.returncode == 7
    assert result.stderr.strip().splitlines() == ["agentd: task T1: it has no open question (status 'ready')"]
    assert path.read_bytes() == before


def test_pause_and_resume_reach_two_daemons_of_the_role(tmp_path: Path) -> None:
    """`agentd pause builder` stops both builders claiming at once (they poll once an hour: the state file's rename
    wakes them); a task added meanwhile is claimed only after `agentd resume`."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": agent(log), "wip": 2}}, defaults={"interval": 3600})
    write_queue(tmp_path, [])
    daemons = [start(tmp_path, "builder", "-v", "--instance", f"b{n}") for n in range(2)]
    errs: list[Path] = []
    try:
        wait_for(lambda: len(named(tmp_path, "daemon-started")) == 2, 60, "both daemons to start")
        errs = sorted(tmp_path.glob("daemon-builder-*.err"))
        paused = run_agentd("pause", "builder", "--reason", "release freeze", cwd=tmp_path)
        assert paused.returncode == 0, paused.stderr
        wait_for(
            lambda: all("builder is paused until resumed (release freeze)" in e.read_text() for e in errs),
            60,
            "both daemons to see the pause",
        )
        added = run_agentd("queue", "add", "T1", "--title", "one", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        status = run_agentd("status", cwd=tmp_path)
        assert "paused" in status.stdout, status.stdout
        resuming = SystemClock().now()
        resumed = run_agentd("resume", "builder", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: tasks_by_id(tmp_path)["T1"]["status"] == "awaiting_test", 60, "T1 to run after resume")
    finally:
        stop_all(daemons)
    (claimed,) = named(tmp_path, "claimed")
    assert parse_timestamp(claimed["time"]) >= resuming  # not before `agentd resume` began
    assert [e["event"] for e in journal(tmp_path) if e["event"] in ("paused", "resumed")] == ["paused", "resumed"]
    assert state_file.read(tmp_path / ".agentd").pauses == ()


def test_a_command_exiting_75_pauses_its_role_without_spending_an_attempt(tmp_path: Path) -> None:
    """pause_on_exit = [75]: the task goes back to ready with no attempt spent, the role pauses for pause_for (kept
    in .agentd/state.json, journalled); after `agentd resume` the task runs again and passes."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": agent(log, "--exit-first", "75"), "pause_on_exit": [75], "pause_for": "2h"}},
        defaults={"interval": 3600},
    )
    write_queue(tmp_path, [task("T1")])
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: named(tmp_path, "paused"), 60, "the role to pause")
        record = tasks_by_id(tmp_path)["T1"]
        assert (record["status"], record.get("attempts", 0), record["lease"]) == ("ready", 0, None)
        pauses = state_file.read(tmp_path / ".agentd").pauses
        assert [(p.role, p.by) for p in pauses] == [("builder", "task T1")]
        assert pauses[0].until is not None
        assert 7100 < (pauses[0].until - pauses[0].since).total_seconds() <= 7200
        assert run_agentd("resume", cwd=tmp_path).returncode == 0
        wait_for(lambda: tasks_by_id(tmp_path)["T1"]["status"] == "awaiting_test", 60, "T1 to run after resume")
    finally:
        stop_all([daemon])
    assert [r["env"]["AGENTD_ATTEMPT"] for r in events(log)] == ["1", "1"]


def test_a_result_file_pause_names_its_own_end(tmp_path: Path) -> None:
    """{"pause": {"until": ..., "reason": "usage limit"}}: the role pauses until that time; the task is unspent."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": agent(log, "--pause-first", "2099-01-01T00:00:00Z")}},
        defaults={"interval": 3600},
    )
    write_queue(tmp_path, [task("T1")])
    daemon = start(tmp_path, "builder")
    try:
        wait_for(lambda: named(tmp_path, "paused"), 60, "the role to pause")
    finally:
        stop_all([daemon])
    (pause,) = state_file.read(tmp_path / ".agentd").pauses
    assert (pause.until, pause.reason) == (datetime(2099, 1, 1, tzinfo=UTC), "usage limit")
    record = tasks_by_id(tmp_path)["T1"]
    assert (record["status"], record.get("attempts", 0)) == ("ready", 0)


# -- in process, with a fake clock -----------------------------------------------------------------------------------


def _daemon(root: Path, clock: FakeClock) -> Daemon:
    return Daemon(config_mod.load(root=root, environ={}), "builder", clock=clock, watch=False)


def _until(daemon: Daemon, done: Any, what: str) -> TickReport:
    """Tick until ``done(report)`` (the commands are real processes: their ends arrive in their own time)."""
    reports: list[TickReport] = []

    def step() -> bool:
        reports.append(_tick(daemon))
        return bool(done(reports[-1]))

    wait_for(step, 60, what)
    return reports[-1]


def _tick(daemon: Daemon) -> TickReport:
    """One pass that looks at the queue (as the loop's wake-ups after a change ask for)."""
    daemon.wake("test")
    return daemon.tick()


def _finish(daemon: Daemon) -> None:
    for run in list(daemon.running.values()):
        if run.proc is not None:
            run.proc.kill()
    wait_for(lambda: not _tick(daemon).error and not daemon.running, 30, "the runs to be recorded")


def test_a_budget_reached_pauses_the_role_until_the_next_day(tmp_path: Path) -> None:
    """budget 10 USD a day, runs of 6 USD: after the second the role pauses until midnight (in the project's time
    zone); T3 waits; the next day it runs. Spend comes from the journal's finished events."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": agent(log, "--cost", "6"), "budget": {"cost_usd_per_day": 10}}},
        timezone="Europe/Berlin",
    )
    write_queue(tmp_path, [task("T1"), task("T2"), task("T3")])
    clock = FakeClock(datetime(2026, 12, 2, 20, 0, tzinfo=UTC))  # 21:00 in Berlin
    daemon = _daemon(tmp_path, clock)
    try:
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["T2"]["status"] == "awaiting_test", "T1 and T2 to run")
        report = _tick(daemon)
        assert report.claimed == [] and not daemon.running
        (pause,) = state_file.read(tmp_path / ".agentd").pauses
        assert pause.until == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)  # midnight in Berlin
        assert pause.by == "budget"
        (reached,) = named(tmp_path, "budget-reached")
        assert reached["limit"] == 10 and "spent $12.00 of $10.00" in reached["message"]
        assert tasks_by_id(tmp_path)["T2"]["last_run"]["usage"]["cost_usd"] == 6
        clock.advance(3 * 3600)
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["T3"]["status"] == "awaiting_test", "T3 to run the next day")
    finally:
        _finish(daemon)
    usage = run_agentd("usage", "--by", "role", "--json", cwd=tmp_path)
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout) == [
        {"key": "builder", "runs": 3, "cost_usd": 18.0, "input_tokens": 3000.0, "output_tokens": 600.0}
    ]


def test_max_waiting_stops_new_claims_but_answered_tasks_resume(tmp_path: Path) -> None:
    """max_waiting = 1: once A waits for an answer the builder takes nothing new (B stays ready); A answered is
    claimed at once, ahead of B."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {"builder": {**BUILDER, "command": agent(log, "--ask", "{field:ask}"), "max_waiting": 1, "wip": 1}},
    )
    write_queue(tmp_path, [task("A", ask="which?"), task("B")])
    clock = FakeClock(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    daemon = _daemon(tmp_path, clock)
    store = QueueStore(tmp_path / "SPRINT_QUEUE.json")
    workflow = daemon.config.workflow
    try:
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["A"]["status"] == "needs_feedback", "A to ask")
        report = _until(daemon, lambda r: not daemon.running and not r.finished, "the pass after A's question")
        assert report.claimed == []
        assert _tick(daemon).claimed == []
        assert tasks_by_id(tmp_path)["B"]["status"] == "ready"

        def answer(doc: dict[str, Any]) -> str:
            return transitions.answer(index_by_id(doc)["A"], "A", "this one", "bob", clock.now(), workflow)

        store.transaction(answer)
        assert _tick(daemon).claimed == ["A"]
    finally:
        _finish(daemon)


def test_a_question_unanswered_past_waiting_expiry_goes_to_on_failure(tmp_path: Path) -> None:
    """waiting_expiry = 1h: an hour after asking (fake clock), the task goes to on_failure with a note and a
    waiting-expired event; a minute before, it still waits."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": agent(log, "--ask", "ok?"), "waiting_expiry": "1h"}})
    write_queue(tmp_path, [task("A")])
    clock = FakeClock(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    daemon = _daemon(tmp_path, clock)
    try:
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["A"]["status"] == "needs_feedback", "A to ask")
        clock.advance(3540)
        _tick(daemon)
        assert tasks_by_id(tmp_path)["A"]["status"] == "needs_feedback"
        clock.advance(60)
        _tick(daemon)
        record = tasks_by_id(tmp_path)["A"]
        assert record["status"] == "blocked"
        assert record["status_note"] == "no answer within 60 min to: ok?"
        assert "question" not in record
        assert [e["task"] for e in named(tmp_path, "waiting-expired")] == ["A"]
    finally:
        _finish(daemon)


def test_claude_json_output_reports_usage_and_session_without_a_wrapper(tmp_path: Path) -> None:
    """output = "claude-json": the cost and session the agent printed land on last_run and in the journal."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path, {"builder": {**BUILDER, "command": agent(log, "--claude-json", "0.42"), "output": "claude-json"}}
    )
    write_queue(tmp_path, [task("T1")])
    daemon = _daemon(tmp_path, FakeClock(SystemClock().now()))
    try:
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["T1"]["status"] == "awaiting_test", "T1 to run")
    finally:
        _finish(daemon)
    last = tasks_by_id(tmp_path)["T1"]["last_run"]
    assert last["session"] == "s-T1"
    assert last["usage"] == {"cost_usd": 0.42, "input_tokens": 100.0, "output_tokens": 20.0}
    (finished,) = named(tmp_path, "finished")
    assert finished["cost_usd"] == 0.42


def _parked(root: Path) -> None:
    """A queue with Q1 waiting for an answer the builder's command asked, as a daemon leaves it."""
    write_config(root, {"builder": {**BUILDER, "command": ["true"], "waiting_expiry": "1d"}})
    question = {"role": "builder", "attempt": 1, "token": 1, "text": "Which DB?", "session": "s-1"}
    question["asked_at"] = "2026-12-02T10:00:00+00:00"
    write_queue(root, [task("Q1", "needs_feedback", question=question), task("T2")])


def test_why_doctor_and_status_show_questions_and_pauses(tmp_path: Path) -> None:
    """why says what Q1 waits for and that the builder is paused; doctor lists both (not 'never picked up');
    status --json carries the pause and the open question."""
    _parked(tmp_path)
    assert run_agentd("pause", "builder", "--for", "2h", "--reason", "usage limit", cwd=tmp_path).returncode == 0
    why = run_agentd("queue", "why", "Q1", cwd=tmp_path)
    assert why.returncode == 0, why.stderr
    assert why.stdout.splitlines()[0] == (
        "Q1 (needs_feedback): waiting for an answer to: Which DB? (asked by builder since "
        "2026-12-02T10:00:00+00:00); `agentd queue answer Q1 TEXT` puts it back to builder"
    )
    why = run_agentd("queue", "why", "T2", "--json", cwd=tmp_path)
    pause_step = [s for s in json.loads(why.stdout)["steps"] if s["rule"] == "pause"]
    assert len(pause_step) == 1 and "usage limit" in pause_step[0]["text"]
    assert json.loads(why.stdout)["claimable"] is False
    doctor = json.loads(run_agentd("doctor", "--json", cwd=tmp_path).stdout)
    codes = {finding["code"] for finding in doctor}
    assert {"paused", "waiting-for-answers"} <= codes and "never-picked-up" not in codes
    now = SystemClock().now().isoformat()
    finished = {"time": now, "event": "finished", "role": "builder", "task": "T0", "token": 1}
    (tmp_path / ".agentd" / "events.jsonl").write_text(json.dumps({**finished, "usage": {"cost_usd": 1.25}}) + "\n")
    status = json.loads(run_agentd("status", "--json", cwd=tmp_path).stdout)
    assert status["spend_today"] == {"builder": {"cost_usd": 1.25, "budget_usd": None}}
    assert [p["role"] for p in status["paused"]] == ["builder"]
    assert [w["id"] for w in status["waiting"]] == ["Q1"]


def test_a_bad_state_file_is_one_line_and_left_as_it_was(tmp_path: Path) -> None:
    """`agentd pause` over a state file that does not parse: exit 4, one line naming the file and JSON path, the
    file's bytes unchanged."""
    _parked(tmp_path)
    state = tmp_path / ".agentd" / "state.json"
    state.parent.mkdir()
    state.write_text('{"pauses": {"builder": true}}\n')
    before = state.read_bytes()
    result = run_agentd("pause", "builder", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [f"agentd: {state.relative_to(tmp_path)}: $.pauses: must be a list"]
    assert state.read_bytes() == before


def test_an_answer_given_while_no_daemon_runs_is_taken_up_when_one_starts(tmp_path: Path) -> None:
    """Q1 asks, its daemon stops (SIGTERM); the answer comes meanwhile; a new daemon resumes Q1 with it."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path,
        {
            "builder": {
                **BUILDER,
                "command": agent(log, "--ask", "Proceed?"),
                "resume_command": agent(log, "--resumed", "{session}", "{answer}"),
            }
        },
        defaults={"interval": 3600},
    )
    write_queue(tmp_path, [task("Q1")])
    first = start(tmp_path, "builder")
    try:
        wait_for(lambda: tasks_by_id(tmp_path)["Q1"]["status"] == "needs_feedback", 60, "Q1 to ask")
        first.terminate()
        assert first.wait(timeout=60) == 0
        assert run_agentd("queue", "answer", "Q1", "--file", "-", cwd=tmp_path, stdin="yes, go\n").returncode == 0
        second = start(tmp_path, "builder")
        try:
            wait_for(lambda: tasks_by_id(tmp_path)["Q1"]["status"] == "awaiting_test", 60, "Q1 to resume")
        finally:
            stop_all([second])
    finally:
        stop_all([first])
    assert events(log)[-1]["argv"][1:] == ["--resumed", "s-Q1", "yes, go"]


def test_drain_ends_while_its_role_is_paused_and_pause_refuses_nonsense(tmp_path: Path) -> None:
    """`--drain` of a paused role with a ready task claims nothing and exits 0 (a budget pause may last a day);
    `pause --for 0` and an unknown role are refused with one line."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": agent(log)}})
    write_queue(tmp_path, [task("T1")])
    assert run_agentd("pause", "builder", cwd=tmp_path).returncode == 0
    drained = run_agentd("--role", "builder", "--drain", cwd=tmp_path)
    assert drained.returncode == 0, drained.stderr
    assert tasks_by_id(tmp_path)["T1"]["status"] == "ready" and not log.exists()
    zero = run_agentd("pause", "builder", "--for", "0", cwd=tmp_path)
    assert zero.returncode == 2 and "a pause lasts more than 0 s" in zero.stderr
    unknown = run_agentd("pause", "bilder", cwd=tmp_path)
    assert unknown.returncode == 6 and len(unknown.stderr.strip().splitlines()) == 1


def test_a_daemon_reports_a_bad_state_file_once_and_carries_on(tmp_path: Path, caplog: Any) -> None:
    """A state file that does not parse: the daemon logs it once (not per pass), keeps working, and takes up the
    pause once the file is fixed."""
    log = tmp_path / "runs.jsonl"
    write_config(tmp_path, {"builder": {**BUILDER, "command": agent(log)}})
    write_queue(tmp_path, [task("T1")])
    state = tmp_path / ".agentd" / "state.json"
    state.parent.mkdir()
    state.write_text("{not json")
    daemon = _daemon(tmp_path, FakeClock(SystemClock().now()))
    try:
        _until(daemon, lambda _r: tasks_by_id(tmp_path)["T1"]["status"] == "awaiting_test", "T1 to run")
        _tick(daemon)
        errors = [r.getMessage() for r in caplog.records if "project state" in r.getMessage()]
        assert len(errors) == 1 and "state.json: not valid JSON" in errors[0]
        assert run_agentd("resume", cwd=tmp_path).returncode == 4  # the CLI refuses to write over it
        state.write_text(json.dumps({"pauses": [{"role": "builder", "since": "2026-01-01T00:00:00Z"}]}))
        assert run_agentd("queue", "add", "T2", "--title", "two", cwd=tmp_path).returncode == 0
        assert _tick(daemon).claimed == []
        assert run_agentd("resume", "builder", cwd=tmp_path).returncode == 0
        assert _tick(daemon).claimed == ["T2"]
    finally:
        _finish(daemon)


def test_a_task_timeout_overrides_its_role(tmp_path: Path) -> None:
    """A task with `"timeout": "1s"` under a role allowing an hour is stopped as timed out; its neighbour is not."""
    log = tmp_path / "runs.jsonl"
    write_config(
        tmp_path, {"builder": {**BUILDER, "command": agent(log, "--sleep", "{field:nap}"), "kill_after": 1, "wip": 2}}
    )
    write_queue(tmp_path, [task("SLOW", nap="120", timeout="1s"), task("QUICK", nap="0")])
    daemon = _daemon(tmp_path, FakeClock(SystemClock().now()))
    try:
        ran = lambda _r: all(t.get("last_run") for t in tasks_by_id(tmp_path).values())  # noqa: E731
        _until(daemon, ran, "SLOW to time out and QUICK to finish")
    finally:
        _finish(daemon)
    assert tasks_by_id(tmp_path)["SLOW"]["last_run"]["outcome"] == "timeout"
    assert tasks_by_id(tmp_path)["QUICK"]["last_run"]["outcome"] == "success"
