"""The event journal: rotation across processes, reading rotated files, `agentd events` and `agentd queue history`."""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentd.core.clock import FakeClock, format_timestamp
from agentd.store.file import journal
from agentd.store.file.journal import Filter, Journal, LiveMark
from tests.conftest import run_agentd
from tests.helpers.daemons import (
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

PROJECT = Path(__file__).resolve().parents[2]
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "on_failure": "blocked"}
TESTER = {"claims": "awaiting_test", "working": "testing", "on_success": "done", "on_failure": "blocked"}
QUIET = logging.getLogger("tests.events")


def _journal(root: Path, clock: FakeClock | None = None, role: str = "builder", **kw: Any) -> Journal:
    return Journal(root / ".agentd" / "events.jsonl", clock or FakeClock(), role, QUIET, **kw)


def _stored(root: Path) -> list[dict[str, Any]]:
    return [event.data for event in journal.read_events(root / ".agentd" / "events.jsonl")]


# -- pure helpers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1w", 604800), ("1.5h", 5400)],
)
def test_parse_duration_reads_units_and_sums(text: str, seconds: int) -> None:
    """Durations are numbers with s/m/h/d/w units, summed when several are given."""
    assert journal.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "5x", "h", "1h 30m", "-1h", "1h30", "m10"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    """A bare number, an unknown unit or stray characters are a ValueError that shows the accepted forms."""
    with pytest.raises(ValueError, match="say 90s"):
        journal.parse_duration(text)


def test_parse_since_takes_a_duration_or_a_time() -> None:
    """--since is a duration back from now or an ISO-8601 time (UTC when no offset)."""
    now = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    assert journal.parse_since("90m", now) == datetime(2026, 11, 21, 20, 30, tzinfo=UTC)
    assert journal.parse_since("2026-11-21T21:00", now) == datetime(2026, 11, 21, 21, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a duration or a time"):
        journal.parse_since("yesterday", now)


# -- writing and reading -----------------------------------------------------------------------------------------------


def test_reader_goes_oldest_file_first_and_skips_junk_and_a_torn_line(tmp_path: Path) -> None:
    """Rotated files are read .N..1 then the live file; junk, non-object and torn lines are skipped."""
    folder = tmp_path / ".agentd"
    folder.mkdir()

    def line(n: int) -> str:
        return json.dumps({"time": f"2026-01-01T00:00:{n:02d}+00:00", "event": "claimed", "task": f"T{n}"}) + "\n"

    (folder / "events.jsonl.2").write_text(line(1) + "not json\n" + line(2))
    (folder / "events.jsonl.1").write_text(line(3) + "[1, 2]\n" + '{"event": "x"}\n' + line(4)[:-1])  # torn
    (folder / "events.jsonl").write_text("\n" + line(5) + '{"time": "never", "event": "x"}\n' + line(6)[:20])
    (folder / "events.jsonl.lock").write_text("")
    (folder / "events.jsonl.old").write_text(line(9))
    found = list(journal.read_events(folder / "events.jsonl"))
    assert [e.task for e in found] == ["T1", "T2", "T3", "T5"]
    assert found[0].raw == line(1).strip() and found[0].data["event"] == "claimed"


def test_filter_by_task_role_time_and_type(tmp_path: Path) -> None:
    """Each criterion narrows the events; all given must hold."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    builder, tester = _journal(tmp_path, clock), _journal(tmp_path, clock, role="tester")
    builder.emit("claimed", "claimed A", task="A", token=1)
    clock.advance(3600)
    tester.emit("claimed", "claimed B", task="B", token=2)
    builder.emit("finished", "finished A", task="A", token=1, outcome="success")
    path = tmp_path / ".agentd" / "events.jsonl"

    def names(where: Filter) -> list[str]:
        return [f"{e.name}:{e.task}" for e in journal.read_events(path, where)]

    assert names(Filter(task="A")) == ["claimed:A", "finished:A"]
    assert names(Filter(role="tester")) == ["claimed:B"]
    assert names(Filter(since=datetime(2026, 1, 1, 0, 30, tzinfo=UTC))) == ["claimed:B", "finished:A"]
    assert names(Filter(types=frozenset({"finished"}))) == ["finished:A"]
    assert names(Filter(task="A", since=datetime(2026, 1, 1, 0, 30, tzinfo=UTC))) == ["finished:A"]


def test_journal_rotates_by_size_and_keeps_at_most_backups(tmp_path: Path) -> None:
    """Past max_bytes the file moves to .1 (older ones shift up); beyond `backups` the oldest goes."""
    clock = FakeClock()
    writer = _journal(tmp_path, clock, max_bytes=1024, backups=2)
    for n in range(60):
        writer.emit("claimed", f"claimed T{n}", task=f"T{n}", token=n)
    path = tmp_path / ".agentd" / "events.jsonl"
    assert [p.name for p in journal.rotated_files(path)] == ["events.jsonl.2", "events.jsonl.1", "events.jsonl"]
    assert all(p.stat().st_size <= 1024 + 300 for p in journal.rotated_files(path))
    tokens = [e.data["token"] for e in journal.read_events(path)]
    assert tokens == list(range(tokens[0], 60)) and tokens[0] > 0  # a contiguous, newest suffix


def test_no_rotation_without_a_size_limit_and_no_backups_drops_the_file(tmp_path: Path) -> None:
    """max_bytes 0 never rotates; backups 0 starts the file afresh (as the daemon logs do)."""
    endless = _journal(tmp_path, max_bytes=0)
    for n in range(30):
        endless.emit("claimed", "x" * 100, task="T", token=n)
    path = tmp_path / ".agentd" / "events.jsonl"
    assert journal.rotated_files(path) == [path]
    fresh = _journal(tmp_path, max_bytes=1024, backups=0)
    fresh.emit("claimed", "one more", task="T", token=30)
    assert journal.rotated_files(path) == []


WRITER = textwrap.dedent(
    """
    import logging, os, sys, time
    from pathlib import Path
    from agentd.core.clock import SystemClock
    from agentd.store.file.journal import Journal
    path, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    writer = Journal(path, SystemClock(), name, logging.getLogger("w"), max_bytes=4096, backups=int(sys.argv[5]))
    for n in range(count):
        writer.emit("claimed", f"{name} line {n}", task=f"{name}-{n % 7}", token=n, pad="x" * (n % 50))
    """
)


def _write_concurrently(path: Path, backups: int, count: int, during: Callable[[], None] | None = None) -> None:
    """Two writer processes started together; ``during`` is called over and over while they write."""
    go = path.parent / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(count), str(go), str(backups)])
        for name in ("alpha", "beta")
    ]
    try:
        go.write_text("")
        deadline = time.monotonic() + 60
        while during is not None and any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            during()
        for proc in procs:
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.slow
def test_two_processes_rotating_at_once_lose_no_line(tmp_path: Path) -> None:
    """Two writers, 4 KB files: many rotations, yet every line is read exactly once and in each writer's order."""
    (tmp_path / "agentd.toml").write_text("")  # a project, so that `agentd events` reads its journal
    path = tmp_path / ".agentd" / "events.jsonl"
    path.parent.mkdir()
    reads = []

    def read_while_writing() -> None:
        tokens = collections.defaultdict(list)
        for event in journal.read_events(path):
            tokens[event.role].append(event.data["token"])
        reads.append(sum(len(t) for t in tokens.values()))
        for seen in tokens.values():
            assert seen == sorted(set(seen)), "a reader saw a line twice or out of order"

    _write_concurrently(path, backups=1000, count=1500, during=read_while_writing)
    assert len(reads) >= 2
    files = journal.rotated_files(path)
    assert len(files) > 50, "expected many rotations"
    assert all(p.stat().st_size <= 4096 + 2 * 300 for p in files)
    lines = sum(len(p.read_bytes().splitlines()) for p in files)
    assert lines == 3000
    seen = collections.defaultdict(list)
    for event in journal.read_events(path):
        seen[event.role].append(event.data["token"])
    assert seen == {"alpha": list(range(1500)), "beta": list(range(1500))}
    result = run_agentd("events", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(text)["message"] for text in result.stdout.splitlines()] == [
        e.message for e in journal.read_events(path)
    ]


@pytest.mark.slow
def test_two_processes_with_few_backups_keep_only_the_newest(tmp_path: Path) -> None:
    """With backups 3 the journal never holds more than 3 rotated files, and what is left is each writer's tail."""
    path = tmp_path / ".agentd" / "events.jsonl"
    path.parent.mkdir()
    _write_concurrently(path, backups=3, count=1500)
    names = [p.name for p in journal.rotated_files(path)]
    assert names[:3] == ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1"]
    assert names[3:] in ([], ["events.jsonl"])  # the last line written may have rotated the live file away
    seen = collections.defaultdict(list)
    for event in journal.read_events(path):
        seen[event.role].append(event.data["token"])
    for tokens in seen.values():
        assert tokens == list(range(tokens[0], 1500))


@pytest.mark.slow
def test_follow_prints_new_events_across_rotations(tmp_path: Path) -> None:
    """`events --follow` shows the last events, then each new one, through several rotations, until Ctrl-C."""
    (tmp_path / "agentd.toml").write_text("")  # a project, so that `agentd events` reads its journal
    writer = _journal(tmp_path, max_bytes=1024, backups=50)
    for n in range(20):
        writer.emit("claimed", f"old {n}", task="F", token=n)
    out = tmp_path / "follow.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentd", "events", "--follow", "--json", "-n", "3"],
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1"},
        )
    try:

        def shown() -> list[int]:
            return [json.loads(text)["token"] for text in out.read_text().splitlines()]

        wait_for(lambda: shown() == [17, 18, 19], 60, "the last three events")
        for batch in range(10):  # 4 lines of ~200 bytes: at most one rotation per batch (see the docs)
            for n in range(20 + batch * 4, 24 + batch * 4):
                writer.emit("claimed", f"new {n} " + "x" * 60, task="F", token=n)
            last = 23 + batch * 4
            wait_for(lambda: shown()[-1:] == [last], 60, f"batch {batch}")  # noqa: B023 - called at once
        assert shown() == [17, 18, 19, *range(20, 60)]
        assert len(journal.rotated_files(tmp_path / ".agentd" / "events.jsonl")) > 8
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- the CLI over a real run -------------------------------------------------------------------------------------------


def _columns(stdout: str) -> list[tuple[str, str, str, str]]:
    """(time, role, event, task) of each `agentd events` line."""
    rows = []
    for text in stdout.splitlines():
        when, role, name, task_id = text.split()[:4]
        rows.append((when, role, name, task_id))
    return rows


BUILDER_LIFE = [
    "claimed",
    "started",
    "finished",  # failure, exit 1
    "retry-scheduled",
    "released",
    "claimed",
    "started",  # its daemon is SIGKILLed during this run
    "recovered",
    "claimed",
    "started",
    "finished",  # success
    "released",
]
TESTER_LIFE = ["claimed", "started", "finished", "released"]


@pytest.fixture(scope="module")
def lived(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project where X1 failed once, was retried, lost its daemon to SIGKILL, was recovered, built and tested."""
    root = tmp_path_factory.mktemp("lived")
    log = root / "runs.jsonl"
    builder = recorder(log, "--exit-token", "1:1", "--sleep-token", "2:60")
    write_config(
        root,
        {"builder": {**BUILDER, "command": builder}, "tester": {**TESTER, "command": recorder(log)}},
        defaults={"interval": 60, "backoff": {"initial": 0.2, "factor": 2, "max": 10}},
    )
    waiting = [task("Y1", "blocked", dependencies=["X1"]), task("Z1", "blocked", blocked_reason="by hand")]
    write_queue(root, [task("X1"), *waiting], {"builder": 1})
    first = start(root, "builder", "--instance", "one")
    second = None
    try:
        wait_for(lambda: [r for r in events(log) if r["event"] == "start" and r["token"] == 2], 30, "the second run")
        second = start(root, "builder", "--instance", "two")
        wait_for(lambda: len([e for e in _stored(root) if e["event"] == "daemon-started"]) == 2, 30, "the peer")
        first.kill()
        first.wait(timeout=10)
        wait_for(lambda: tasks_by_id(root)["X1"]["status"] == "awaiting_test", 30, "the peer to finish X1")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        stop_all([p for p in (first, second) if p is not None])
    tested = run_agentd("--role", "tester", "--once", cwd=root)
    assert tested.returncode == 0, tested.stderr
    assert tasks_by_id(root)["X1"]["status"] == "done"
    return root


@pytest.mark.slow
def test_events_show_the_whole_life_in_order(lived: Path) -> None:
    """`events --task X1`: claims, starts, the failure, the retry, the recovery, the success and the test, in order."""
    result = run_agentd("events", "--task", "X1", cwd=lived)
    assert result.returncode == 0, result.stderr
    rows = _columns(result.stdout)
    assert [name for _, _, name, _ in rows] == BUILDER_LIFE + TESTER_LIFE
    assert {task_id for _, _, _, task_id in rows} == {"X1"}
    assert [role for _, role, _, _ in rows] == ["builder"] * len(BUILDER_LIFE) + ["tester"] * len(TESTER_LIFE)
    assert [when for when, *_ in rows] == sorted(when for when, *_ in rows)
    assert "failure (exit 1) -> ready" in result.stdout and "success (exit 0) -> awaiting_test" in result.stdout
    assert "recovered X1: lock released: the process holding the lease is gone" in result.stdout


@pytest.mark.slow
def test_events_json_is_stored_lines_with_their_fields(lived: Path) -> None:
    """--json prints the stored lines: each parses, with time, role, host, pid, task, token and the outcome fields."""
    result = run_agentd("events", "--task", "X1", "--json", cwd=lived)
    assert result.returncode == 0, result.stderr
    stored = (lived / ".agentd" / "events.jsonl").read_text().splitlines()
    assert all(text in stored for text in result.stdout.splitlines())
    found = [json.loads(text) for text in result.stdout.splitlines()]
    assert all({"time", "event", "role", "host", "pid", "task", "message"} <= set(e) for e in found)
    claims = [e for e in found if e["event"] == "claimed"]
    assert [(e["token"], e["role"]) for e in claims] == [(1, "builder"), (2, "builder"), (3, "builder"), (4, "tester")]
    finished = [(e["outcome"], e["exit_code"], e["status"]) for e in found if e["event"] == "finished"]
    assert finished == [("failure", 1, "ready"), ("success", 0, "awaiting_test"), ("success", 0, "done")]
    recovered = next(e for e in found if e["event"] == "recovered")
    assert recovered["token"] == 2 and recovered["action"] == "requeue" and "gone" in recovered["cause"]
    assert claims[2]["pid"] == recovered["pid"] != claims[1]["pid"]  # the peer recovered it and claimed it again


@pytest.mark.slow
def test_events_filters_since_role_type_and_count(lived: Path) -> None:
    """--since 1h keeps the run, a future time keeps nothing; --role, --type and -n narrow as asked."""
    every = run_agentd("events", cwd=lived).stdout.splitlines()
    assert len(every) == len(BUILDER_LIFE + TESTER_LIFE) + 6  # 3 daemons started, 2 stopped (1 killed), Y1 unblocked
    assert run_agentd("events", "--since", "1h", cwd=lived).stdout.splitlines() == every
    future = format_timestamp(datetime.now(UTC) + timedelta(hours=1))
    assert run_agentd("events", "--since", future, cwd=lived).stdout == ""
    tester = _columns(run_agentd("events", "--role", "tester", cwd=lived).stdout)
    # (Y1 unblocked in the pass that recorded X1's test; that pass releases X1's lease after its other lines)
    assert [name for _, _, name, _ in tester] == [
        "daemon-started",
        *TESTER_LIFE[:-1],
        "unblocked",
        "released",
        "daemon-stopped",
    ]
    kinds = _columns(run_agentd("events", "--type", "recovered", "--type", "retry-scheduled", cwd=lived).stdout)
    assert [name for _, _, name, _ in kinds] == ["retry-scheduled", "recovered"]
    last = _columns(run_agentd("events", "-n", "2", "--task", "X1", cwd=lived).stdout)
    assert [name for _, _, name, _ in last] == ["finished", "released"]
    bad = run_agentd("events", "--since", "soon", cwd=lived)
    assert bad.returncode == 2 and "not a duration or a time" in bad.stderr


@pytest.mark.slow
def test_queue_history_tells_the_task_s_life(lived: Path) -> None:
    """`queue history X1`: a header from the queue, a summary, then every event of X1 in order."""
    result = run_agentd("queue", "history", "X1", cwd=lived)
    assert result.returncode == 0, result.stderr
    header, summary, *body = result.stdout.splitlines()
    assert header == "X1 'task X1': status done, attempts 0, last token 4"
    assert summary == "16 event(s): 4 claims; 1 retry; 1 recovery; outcomes failure, success, success"
    assert [text.split()[2] for text in body] == BUILDER_LIFE + TESTER_LIFE
    assert "lock released: the process holding the lease is gone" in body[BUILDER_LIFE.index("recovered")]
    as_json = json.loads(run_agentd("queue", "history", "X1", "--json", cwd=lived).stdout)
    assert as_json["queue"]["status"] == "done" and as_json["queue_error"] is None
    assert [e["event"] for e in as_json["events"]] == BUILDER_LIFE + TESTER_LIFE


@pytest.mark.slow
def test_queue_history_of_a_task_with_no_events_and_an_unknown_one(lived: Path) -> None:
    """A task never run shows its header and says so; an id neither the queue nor the journal knows exits 6."""
    quiet = run_agentd("queue", "history", "Z1", cwd=lived)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == [
        "Z1 'task Z1': status blocked, attempts 0",
        "  blocked: by hand",
        "no events in the journal for this task",
    ]
    unblocked = run_agentd("queue", "history", "Y1", cwd=lived).stdout.splitlines()
    assert unblocked[0] == "Y1 'task Y1': status ready, attempts 0"
    assert unblocked[2].split()[1:3] == ["tester[" + unblocked[2].split()[1][7:], "unblocked"]
    unknown = run_agentd("queue", "history", "NOPE", cwd=lived)
    assert unknown.returncode == 6
    assert unknown.stderr == "agentd: SPRINT_QUEUE.json: no task with id 'NOPE'\n"


def test_queue_history_still_shows_the_journal_when_the_queue_is_broken(tmp_path: Path) -> None:
    """An unreadable queue is a warning; the task's events are still shown (and an unknown id still exits 6)."""
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": [')
    writer = _journal(tmp_path, FakeClock(datetime.now(UTC)))
    writer.emit("claimed", "claimed Q1 (token 1, attempt 1)", task="Q1", token=1, attempt=1)
    writer.emit("finished", "finished Q1", task="Q1", token=1, outcome="success", exit_code=0, status="done")
    result = run_agentd("queue", "history", "Q1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "agentd: warning: cannot read the queue: SPRINT_QUEUE.json" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Q1: status unknown (the queue cannot be read)"
    assert [text.split()[2] for text in lines[2:]] == ["claimed", "finished"]
    as_json = json.loads(run_agentd("queue", "history", "Q1", "--json", cwd=tmp_path).stdout)
    assert as_json["queue"] is None and "SPRINT_QUEUE.json" in as_json["queue_error"]
    missing = run_agentd("queue", "history", "NOPE", cwd=tmp_path)
    assert missing.returncode == 6 and "cannot read the queue" in missing.stderr


def test_events_without_a_journal_prints_nothing(tmp_path: Path) -> None:
    """No journal yet: no output, exit 0, and no file created."""
    (tmp_path / "agentd.toml").write_text("")
    result = run_agentd("events", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")
    assert not (tmp_path / ".agentd").exists()


@pytest.mark.parametrize("command", [["events"], ["queue", "history"]])
def test_help_has_examples(tmp_path: Path, command: list[str]) -> None:
    """Each command's --help ends with runnable examples."""
    result = run_agentd(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    after = result.stdout.split("Examples:\n", 1)[1].splitlines()
    assert after[0].strip().startswith(f"agentd {' '.join(command)}")


def test_live_mark_skips_what_was_read_unless_the_file_changed() -> None:
    """A follower re-reading the live file skips the lines already shown; a different first line means a new file."""
    mark = LiveMark(first="a", lines=2)
    assert [mark.already_read(text) for text in ("a", "b", "c")] == [True, True, False]
    other = LiveMark(first="a", lines=2)
    assert [other.already_read(text) for text in ("z", "b")] == [False, False]
    none = LiveMark()
    assert none.already_read("a") is False


def test_a_journal_that_cannot_be_written_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unwritable journal path is a warning in the log; emit never raises."""
    (tmp_path / ".agentd").write_text("a file where the folder should be")
    writer = _journal(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tests.events"):
        writer.emit("claimed", "claimed Z", task="Z")
    assert "cannot append to" in caplog.text


def test_a_lone_surrogate_never_breaks_the_journal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Text with a lone UTF-16 surrogate is journalled as a JSON escape: one valid UTF-8 line, no exception."""
    path = tmp_path / "events.jsonl"
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    log = logging.getLogger("agentd.test-surrogate")
    with caplog.at_level(logging.INFO, logger="agentd.test-surrogate"):
        Journal(path, clock, "builder", log).emit("started", "started A: echo 'bad \ud83d'", task="A", note="\udcff")
    line = path.read_bytes().decode("utf-8")
    assert json.loads(line)["message"] == "started A: echo 'bad \ud83d'"
    assert json.loads(line)["note"] == "\udcff"
    assert caplog.records[0].getMessage() == "started A: echo 'bad \\ud83d'"


def test_appending_an_event_makes_its_folder_only_when_it_is_missing(tmp_path: Path) -> None:
    """100 events cost no mkdir once the journal's folder exists (counted by an audit hook in a real process), and a
    folder removed between two events is made again."""
    script = textwrap.dedent(
        f"""
        import logging, shutil, sys
        from pathlib import Path
        from agentd.core.clock import FakeClock
        from agentd.store.file.journal import Journal
        made = []
        sys.addaudithook(lambda event, args: made.append(args[0]) if event == "os.mkdir" else None)
        path = Path({str(tmp_path)!r}) / "state" / "events.jsonl"
        writer = Journal(path, FakeClock(), "builder", logging.getLogger("quiet"))
        for index in range(100):
            writer.emit("tick", f"event {{index}}")
        shutil.rmtree(path.parent)
        writer.emit("tick", "after the folder went")
        print(len(made), sum(1 for _ in open(path)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    mkdirs, lines = map(int, done.stdout.split())
    assert lines == 1  # the event after the removal was written
    assert mkdirs == 2  # the first event's and the one after the removal
