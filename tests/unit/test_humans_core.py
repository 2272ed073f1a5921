"""Questions, answers, pauses and the new placeholders, decided purely (and the small state file)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd import config as config_mod
from agentd.core import command, scheduler, transitions
from agentd.core.control import Pause
from agentd.core.model import Task
from agentd.core.scheduler import Kind, Outcome
from agentd.core.workflow import Role, Workflow
from agentd.errors import ConfigInvalid, Conflict
from agentd.run.execution import task_timeout
from agentd.store.file import state as state_file

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
ROLE = Role(
    "builder",
    ("ready",),
    "in_progress",
    "awaiting_test",
    command=("agent", "{task_id}"),
    resume_command=("agent", "--resume", "{session}", "-p", "{answer}"),
    pause_on_exit=(75,),
)
WORKFLOW = Workflow({"builder": ROLE})


def view(raw: dict[str, Any]) -> Task:
    return Task.from_dict(raw, index=0, path="$.tasks[0]")


def running(**extra: Any) -> dict[str, Any]:
    return {"id": "T1", "status": "in_progress", "lease": {"token": 3}, "lease_token": 3, **extra}


def test_a_result_with_a_question_asks_and_a_pause_pauses() -> None:
    """question wins over status; a pause names its end; an exit code in pause_on_exit pauses, unless timed out."""
    asked = scheduler.classify(ROLE, exit_code=0, result={"question": "Which DB?", "status": "done"})
    assert (asked.kind, asked.question) == (Kind.ASKED, "Which DB?")
    paused = scheduler.classify(ROLE, exit_code=1, result={"pause": {"until": "2026-12-03T00:00:00Z"}})
    assert (paused.kind, paused.pause_until) == (Kind.PAUSED, datetime(2026, 12, 3, tzinfo=UTC))
    assert scheduler.classify(ROLE, exit_code=75).kind is Kind.PAUSED
    assert scheduler.classify(ROLE, exit_code=75, timed_out=True).kind is Kind.TIMEOUT


def test_asking_parks_the_task_without_spending_an_attempt() -> None:
    """The task goes to the waiting status with who asked (role, attempt, token, question, session, when)."""
    raw = running(attempts=1)
    outcome = Outcome(Kind.ASKED, 0, question="Which DB?", session="s-1")
    decision = transitions.complete(raw, view(raw), ROLE, outcome, 3, NOW, WORKFLOW)
    assert not isinstance(decision, str)
    assert raw["status"] == "needs_feedback" and raw["attempts"] == 1 and raw["lease"] is None
    assert raw["question"] == {
        "role": "builder",
        "attempt": 2,
        "text": "Which DB?",
        "session": "s-1",
        "asked_at": "2026-12-02T15:00:00+00:00",
        "token": 3,
    }


def test_a_pause_sends_the_task_back_unspent() -> None:
    """A paused run is no failure: back to the claimable status, attempts as they were."""
    raw = running(attempts=2)
    transitions.complete(raw, view(raw), ROLE, Outcome(Kind.PAUSED, 75, note="usage limit"), 3, NOW, WORKFLOW)
    assert (raw["status"], raw["attempts"], raw["status_note"]) == ("ready", 2, "paused: usage limit")


def test_an_answer_goes_back_first_in_the_role_order_and_a_success_closes_it() -> None:
    """`queue answer` appends to feedback and moves the task back; an answered task sorts before higher priority;
    a second answer is refused; the resumed run's success removes the question (the feedback stays)."""
    raw: dict[str, Any] = {"id": "T1", "status": "needs_feedback", "priority": 9}
    raw["question"] = {"role": "builder", "text": "Which DB?", "session": "s-1", "asked_at": "2026-12-02T14:00:00Z"}
    assert transitions.answer(raw, "T1", "Postgres", "alice", NOW, WORKFLOW) == "ready"
    assert raw["feedback"] == [
        {"question": "Which DB?", "answer": "Postgres", "by": "alice", "at": "2026-12-02T15:00:00+00:00"}
    ]
    other = view({"id": "T0", "status": "ready", "priority": 0})
    assert sorted([other, view(raw)], key=lambda t: t.sort_key)[0].id == "T1"
    with pytest.raises(Conflict, match="already answered"):
        transitions.answer(raw, "T1", "again", "bob", NOW, WORKFLOW)
    raw.update(status="in_progress", lease={"token": 4})
    transitions.complete(raw, view(raw), ROLE, Outcome(Kind.SUCCESS, 0), 4, NOW, WORKFLOW)
    assert raw["status"] == "awaiting_test" and "question" not in raw and len(raw["feedback"]) == 1


def test_answering_without_an_open_question_is_refused() -> None:
    """A task with no question, or not in the asking role's waiting status, is refused with a reason."""
    with pytest.raises(Conflict, match="no open question"):
        transitions.answer({"id": "T1", "status": "ready"}, "T1", "x", "a", NOW, WORKFLOW)
    raw = {"id": "T1", "status": "ready", "question": {"role": "builder", "text": "q"}}
    with pytest.raises(Conflict, match="not waiting in 'needs_feedback'"):
        transitions.answer(raw, "T1", "x", "a", NOW, WORKFLOW)


def test_resume_command_placeholders_and_environment() -> None:
    """An answered task runs resume_command with {session} and {answer}; AGENTD_ANSWER/QUESTION/SESSION are set;
    a fresh task runs command and gets none of them."""
    question = {"role": "builder", "text": "Which DB?", "session": "s-1", "answer": "Postgres"}
    task = {"id": "T1", "title": "t", "question": question}
    argv = command.argv_for(task, ROLE, attempt=1, root=Path("/r"), queue=Path("/r/q.json"))
    assert argv == ["agent", "--resume", "s-1", "-p", "Postgres"]
    env = command.environment(
        "T1", ROLE, attempt=1, token=2, root=Path("/r"), queue=Path("/q"), result=Path("/res"), task=task
    )
    assert (env["AGENTD_ANSWER"], env["AGENTD_QUESTION"], env["AGENTD_SESSION"]) == ("Postgres", "Which DB?", "s-1")
    fresh = {"id": "T2", "title": "t"}
    assert command.argv_for(fresh, ROLE, attempt=1, root=Path("/r"), queue=Path("/q")) == ["agent", "T2"]
    env = command.environment("T2", ROLE, attempt=1, token=2, root=Path("/r"), queue=Path("/q"), result=Path("/x"))
    assert "AGENTD_ANSWER" not in env


def test_field_placeholders_fill_command_prompt_and_env() -> None:
    """{field:NAME}: a string as is, anything else as JSON, a missing field empty; in command, prompt and env."""
    role = Role(
        "builder",
        ("ready",),
        "in_progress",
        "done",
        command=("agent", "{field:branch}", "{field:labels}", "{field:missing}", "{prompt}"),
        prompt="Files: {field:files}",
        env={"BRANCH": "{field:branch}"},
    )
    task = {"id": "T1", "branch": "feat/x", "labels": ["a", "b"], "files": {"n": 2}}
    argv = command.argv_for(task, role, attempt=1, root=Path("/r"), queue=Path("/q"))
    assert argv == ["agent", "feat/x", '["a", "b"]', "", 'Files: {"n": 2}']
    env = command.environment(
        "T1", role, attempt=1, token=1, root=Path("/r"), queue=Path("/q"), result=Path("/x"), task=task
    )
    assert env["BRANCH"] == "feat/x"
    assert command.unknown_placeholders(role) == []


def test_a_task_timeout_overrides_the_role() -> None:
    """A task's own timeout (seconds or a duration) wins; a bad one falls back to the role's."""
    assert task_timeout({"timeout": "2h"}, ROLE) == 7200
    assert task_timeout({"timeout": 30}, ROLE) == 30
    assert task_timeout({"timeout": "soon"}, ROLE) == ROLE.timeout
    assert task_timeout({}, ROLE) == ROLE.timeout


def test_config_keys_for_humans_in_the_loop(tmp_path: Path) -> None:
    """waiting, resume_command, max_waiting, waiting_expiry, pause_on_exit, pause_for, budget (per role or in
    [defaults]), output and timezone are read; an unknown time zone names $.timezone."""
    data = {
        "timezone": "Europe/Berlin",
        "defaults": {"budget": {"cost_usd_per_day": 20}, "waiting_expiry": "3d"},
        "roles": {
            "builder": {
                "waiting": "needs_human",
                "resume_command": ["claude", "--resume", "{session}"],
                "max_waiting": 2,
                "pause_on_exit": [75],
                "pause_for": "30m",
                "output": "claude-json",
            }
        },
    }
    config = config_mod.build(data, root=tmp_path, path=None)
    builder, tester = config.role("builder"), config.role("tester")
    assert (builder.waiting, builder.resume_command, builder.max_waiting) == (
        "needs_human",
        ("claude", "--resume", "{session}"),
        2,
    )
    assert (builder.pause_on_exit, builder.pause_for, builder.output) == ((75,), 1800.0, "claude-json")
    assert (tester.budget_usd_per_day, tester.waiting_expiry, tester.waiting) == (20.0, 259200.0, "needs_feedback")
    assert config.timezone == "Europe/Berlin"
    assert "needs_human" in config.workflow.known_statuses()
    with pytest.raises(ConfigInvalid, match=r"\$\.timezone: unknown time zone 'Mars/Olympus'"):
        config_mod.build({"timezone": "Mars/Olympus"}, root=tmp_path, path=None)


@contextlib.contextmanager
def _unlocked() -> Iterator[None]:
    yield


def test_state_file_round_trip_and_a_bad_file_left_as_it_was(tmp_path: Path) -> None:
    """Pauses are written atomically and read back; a bad file is one error naming the file and JSON path, and a
    change refused on it leaves its bytes alone."""
    pause = Pause("builder", NOW, NOW + timedelta(hours=1), "usage limit", "alice")
    state_file.change(tmp_path, _unlocked, lambda s: s.paused("builder", pause))
    assert state_file.read(tmp_path).pauses == (pause,)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "pauses": [{"role": "builder", "since": "yesterday"}]}')
    before = path.read_bytes()
    with pytest.raises(state_file.StateInvalid, match=r"state\.json: \$\.pauses\[0\]: not a pause"):
        state_file.change(tmp_path, _unlocked, lambda s: s.resumed(None)[0])
    assert path.read_bytes() == before


def test_a_waiting_status_some_role_claims_is_refused(tmp_path: Path) -> None:
    """waiting = a status a role claims (the tester's awaiting_test) would hand a parked task straight on: refused,
    naming $.roles.NAME.waiting; so is a final status."""
    with pytest.raises(ConfigInvalid, match=r"\$\.roles\.builder\.waiting: 'awaiting_test' cannot be where .* tester"):
        config_mod.build({"roles": {"builder": {"waiting": "awaiting_test"}}}, root=tmp_path, path=None)
    with pytest.raises(ConfigInvalid, match=r"done or final status"):
        config_mod.build({"roles": {"builder": {"waiting": "done"}}}, root=tmp_path, path=None)


def test_config_show_names_where_the_new_keys_came_from(tmp_path: Path) -> None:
    """`config show`: a budget from [defaults] says so, a role's own waiting says its table; timezone is shown."""
    from agentd.cli.config_cmd import effective

    (tmp_path / "agentd.toml").write_text(
        'timezone = "Asia/Tokyo"\n[defaults]\nbudget = { cost_usd_per_day = 5 }\n[roles.builder]\nwaiting = "asks"\n'
    )
    shown = effective(config_mod.load(root=tmp_path, environ={}))
    assert shown["settings"]["timezone"] == {"value": "Asia/Tokyo", "from": "agentd.toml"}
    assert shown["roles"]["tester"]["budget"] == {"value": {"cost_usd_per_day": 5.0}, "from": "agentd.toml [defaults]"}
    assert shown["roles"]["builder"]["waiting"] == {"value": "asks", "from": "agentd.toml [roles.builder]"}
    assert shown["roles"]["builder"]["max_waiting"] == {"value": None, "from": "default"}


def test_spend_tally_reads_what_was_appended_and_survives_rotation(tmp_path: Path) -> None:
    """Each costed run counts once: appended lines are read incrementally, a torn last line waits for its end, and
    after a rotation the whole journal (rotated file included) is read again without double counting."""
    import json

    from agentd.report.usage import Tally

    journal = tmp_path / "events.jsonl"

    def line(task: str, cost: float, minute: int = 0) -> str:
        record = {"time": f"2026-12-02T10:{minute:02d}:00+00:00", "event": "finished", "role": "builder"}
        return json.dumps({**record, "task": task, "token": 1, "usage": {"cost_usd": cost}}) + "\n"

    journal.write_text(line("A", 1.0) + line("B", 2.0))
    tally = Tally(journal)
    since = datetime(2026, 12, 2, tzinfo=UTC)
    assert sorted(cost for _, _, cost in tally.update(since)) == [1.0, 2.0]
    with open(journal, "a") as handle:
        handle.write(line("C", 4.0)[:-10])  # torn: still being written
    assert sum(cost for _, _, cost in tally.update(since)) == 3.0
    with open(journal, "a") as handle:
        handle.write(line("C", 4.0)[-10:])
    assert sum(cost for _, _, cost in tally.update(since)) == 7.0
    journal.rename(tmp_path / "events.jsonl.1")
    journal.write_text(line("D", 8.0, minute=5))
    assert sum(cost for _, _, cost in tally.update(since)) == 15.0
    assert sum(cost for _, _, cost in tally.update(datetime(2026, 12, 2, 10, 1, tzinfo=UTC))) == 8.0
