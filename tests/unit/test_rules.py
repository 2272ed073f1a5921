"""Rules with triggers passed in: path globs and ignores, debounce, event filters, coalescing, deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentd.automation.rules import Debouncer, Rule, RuleInvalid, open_task, shorten

FILE_RULE = {
    "name": "tests-on-change",
    "on": "file",
    "paths": ["src/**/*.py"],
    "ignore": [".git/**", "**/*.log", ".agentd/**"],
    "debounce": "5s",
    "task": {"title": "Run the tests for {changed}", "type": "Test", "status": "ready"},
}
EVENT_RULE = {
    "name": "triage-failures",
    "on": "event",
    "topic": "finished",
    "filter": {"outcome": "failure", "role": "builder"},
    "task": {"title": "Triage {event.task}: {event.message}", "type": "Triage"},
}
NOW = datetime(2026, 12, 2, 9, 30, 15, tzinfo=UTC)
FINAL = {"done", "cancelled"}.__contains__


def test_paths_and_ignores() -> None:
    """src/**/*.py matches at any depth; ignored and agentd's own paths never do."""
    rule = Rule.from_config(FILE_RULE)
    assert rule.matches_path("src/x.py") and rule.matches_path("src/a/b/c.py")
    assert not rule.matches_path("tests/x.py") and not rule.matches_path("src/a/notes.txt")
    assert not Rule.from_config({**FILE_RULE, "paths": ["**/*"]}).matches_path(".agentd/events.jsonl")
    assert not Rule.from_config({**FILE_RULE, "paths": ["**/*"]}).matches_path(".leases/B1.json")
    assert not Rule.from_config({**FILE_RULE, "paths": ["**"]}).matches_path("debug.log")


def test_a_burst_settles_into_one_firing() -> None:
    """Writes 1 s apart keep restarting the timer; once 5 s pass quietly, one firing names every changed path."""
    debouncer = Debouncer(Rule.from_config(FILE_RULE))
    for step, path in enumerate(["src/a.py", "src/b.py", "src/a.py", "README.md", "src/c/d.py"]):
        debouncer.add([path], 100.0 + step)
        assert debouncer.due(100.0 + step + 0.5) is None
    assert debouncer.deadline() == 109.0
    assert debouncer.due(108.9) is None
    assert debouncer.due(109.0) == ["src/a.py", "src/b.py", "src/c/d.py"]
    assert debouncer.due(200.0) is None and debouncer.deadline() is None


def test_ignored_changes_do_not_restart_the_timer() -> None:
    """A log file written every second never holds back a firing, and alone fires nothing."""
    debouncer = Debouncer(Rule.from_config(FILE_RULE))
    assert not debouncer.add(["build.log", ".agentd/events.jsonl", ".git/index"], 1.0)
    assert debouncer.deadline() is None
    debouncer.add(["src/a.py"], 2.0)
    debouncer.add(["build.log"], 6.0)
    assert debouncer.due(7.0) == ["src/a.py"]


def test_event_rules_match_topic_and_filter() -> None:
    """A builder's failure matches; a success, another role, or another topic does not."""
    rule = Rule.from_config(EVENT_RULE)
    failure = {
        "event": "finished",
        "outcome": "failure",
        "role": "builder",
        "task": "B7",
        "time": "2026-12-02T09:30:00Z",
    }
    assert rule.matches_event(failure)
    assert not rule.matches_event({**failure, "outcome": "success"})
    assert not rule.matches_event({**failure, "role": "tester"})
    assert not rule.matches_event({**failure, "event": "claimed"})


def test_one_event_gives_one_id_whoever_sees_it() -> None:
    """The id comes from the event: the same event twice gives the same id; another event another."""
    rule = Rule.from_config(EVENT_RULE)
    event = {
        "event": "finished",
        "outcome": "failure",
        "role": "builder",
        "task": "B7",
        "pid": 42,
        "time": "2026-12-02T09:30:00.125+00:00",
        "message": "finished B7: failure (exit 1)",
    }
    first = rule.make_task(NOW, event=event)
    again = rule.make_task(datetime(2027, 1, 1, tzinfo=UTC), event=dict(reversed(list(event.items()))))
    assert (again["id"], again["title"]) == (first["id"], first["title"])
    assert first["id"] != rule.make_task(NOW, event={**event, "task": "B8"})["id"]
    assert first["id"].startswith("triage-failures-20261202T093000-")
    assert first["title"] == "Triage B7: finished B7: failure (exit 1)"
    assert rule.owns(first["id"])


def test_the_task_a_file_rule_adds() -> None:
    """{changed} is shortened for the title; the full list (bounded) is kept on the task."""
    rule = Rule.from_config(FILE_RULE)
    changed = [f"src/m{i}.py" for i in range(8)]
    task = rule.make_task(NOW, changed=changed)
    assert task["id"] == "tests-on-change-20261202T093015"
    assert task["title"] == "Run the tests for src/m0.py, src/m1.py, src/m2.py, src/m3.py, src/m4.py and 3 more"
    assert task["triggered"]["changed"] == changed and task["status"] == "ready"


def test_coalescing_keeps_one_open_task_per_rule() -> None:
    """While the rule's last task is open, a new trigger is folded into it; once final, a new one is added."""
    rule = Rule.from_config(FILE_RULE)
    assert open_task(rule, [("tests-on-change-20261202T093015", "ready")], FINAL) == "tests-on-change-20261202T093015"
    assert open_task(rule, [("tests-on-change-20261202T093015", "done")], FINAL) is None
    assert open_task(rule, [("tests-on-change", "ready"), ("tests-on-changes-20261202T093015", "ready")], FINAL) is None
    apart = Rule.from_config({**FILE_RULE, "coalesce": False})
    assert open_task(apart, [("tests-on-change-20261202T093015", "ready")], FINAL) is None


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"on": "cron"}, "on"),
        ({"paths": []}, "paths"),
        ({"paths": "src/**"}, None),
        ({"paths": [3]}, "paths"),
        ({"debounce": "soon"}, "debounce"),
        ({"topic": "finished"}, "topic"),
        ({"name": "../x"}, "name"),
        ({"task": {"title": "t", "id": "X"}}, "task.id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_file_rule_names_its_key(change: dict[str, object], key: str | None) -> None:
    """Every mistake in a [[rules]] table is refused naming the rule and the key (a single glob string is fine)."""
    if key is None:
        assert Rule.from_config({**FILE_RULE, **change}).paths == ("src/**",)
        return
    with pytest.raises(RuleInvalid) as caught:
        Rule.from_config({**FILE_RULE, **change})
    assert caught.value.key == key
    assert key == "name" or "rule 'tests-on-change'" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"topic": ""}, "topic"), ({"filter": "failure"}, "filter"), ({"paths": ["x"]}, "paths")],
)
def test_a_bad_event_rule_names_its_key(change: dict[str, object], key: str) -> None:
    """Event rules too."""
    with pytest.raises(RuleInvalid) as caught:
        Rule.from_config({**EVENT_RULE, **change})
    assert caught.value.key == key


@given(st.lists(st.text(alphabet="abc/", min_size=1, max_size=6), max_size=20))
def test_shorten_names_every_path_or_counts_it(paths: list[str]) -> None:
    """{changed} shows at most five paths and counts the rest, so no change goes unmentioned."""
    text = shorten(paths)
    unique = sorted(set(paths))
    shown = unique[:5]
    assert all(path in text for path in shown)
    if len(unique) > 5:
        assert text.endswith(f"and {len(unique) - 5} more")
