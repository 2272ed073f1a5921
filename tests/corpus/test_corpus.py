"""The bad-input corpus: every file gets one clear line naming it (and the JSON path), the documented exit code, a
daemon that stays up and retries, and input files left byte-for-byte as they were."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentd import config as config_mod
from agentd.cli import main
from agentd.core.command import read_result
from agentd.errors import ConfigError, ConfigInvalid, QueueInvalid, ResultInvalid
from agentd.run.daemon import Daemon, Mode
from agentd.store.file.leases import LeaseDir
from agentd.store.file.pidfile import PidFile, probe
from agentd.store.file.queuefile import QueueStore
from tests.conftest import sha
from tests.helpers.daemons import task, tasks_by_id, write_config, write_queue
from tests.helpers.examples import examples

CORPUS = Path(__file__).resolve().parent
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "MANIFEST.json").read_text())
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "command": ["true"]}


def cases(kind: str, scope: str | None = None) -> list[tuple[str, str]]:
    return [
        (name, spec["expect"])
        for name, spec in sorted(MANIFEST.items())
        if name.startswith(kind + "/") and (scope is None or spec.get("scope") == scope)
    ]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_the_corpus_is_complete() -> None:
    """At least 60 files over queue, config, lease, PID and result files, each on disk as the manifest says."""
    assert len(MANIFEST) >= 60
    assert {name.split("/")[0] for name in MANIFEST} == {"queue", "config", "lease", "pid", "result"}
    for name in MANIFEST:
        assert (CORPUS / name).is_file(), name


@pytest.mark.parametrize(("name", "expect"), cases("queue", "file"), ids=[n for n, _ in cases("queue", "file")])
def test_bad_queue(
    name: str,
    expect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CLI: exit 4 and one line. Daemon: reports once, keeps retrying, never raises. The file is untouched."""
    write_config(tmp_path, {"builder": BUILDER})
    queue = tmp_path / "SPRINT_QUEUE.json"
    shutil.copyfile(CORPUS / name, queue)
    before = sha(queue)
    monkeypatch.chdir(tmp_path)
    for command in (["queue", "validate"], ["queue", "list"], ["queue", "set-status", "a", "done"]):
        code, _, err = cli(["--root", str(tmp_path), *command], capsys)
        assert code == 4, err
        assert err.count("\n") == 1 and err.startswith("agentd: ") and expect in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) in (  # nothing written beside it but the lock file
        ["SPRINT_QUEUE.json", "agentd.toml"],
        ["SPRINT_QUEUE.json", "SPRINT_QUEUE.json.lock", "agentd.toml"],
    )
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    with caplog.at_level(logging.INFO, logger="agentd"):
        reports = [daemon.tick() for _ in range(3)]
    assert all(r.error and expect in r.error for r in reports), reports[0].error
    assert sum("cannot use the queue" in r.getMessage() for r in caplog.records) == 1
    assert sha(queue) == before


@pytest.mark.parametrize(("name", "expect"), cases("queue", "task"), ids=[n for n, _ in cases("queue", "task")])
def test_bad_task(
    name: str,
    expect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task's own problem: validate prints it (exit 4), list works, a change to the task is refused in one line,
    the daemon reports it once and carries on with a good task added beside it; the bad task's bytes stay."""
    write_config(tmp_path, {"builder": BUILDER})
    queue = tmp_path / "SPRINT_QUEUE.json"
    text = (CORPUS / name).read_text(encoding="utf-8")
    queue.write_text(text.replace('"tasks": [', '"tasks": [{"id": "good-one", "status": "ready"}, ', 1))
    store = QueueStore(queue)
    bad = store.read().quarantined
    assert bad and "good-one" not in bad
    before = {task_id: json.dumps(store.read().task(task_id)) for task_id in bad}
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["--root", str(tmp_path), "queue", "validate"], capsys)
    assert code == 4, err
    shifted = re.sub(r"\$\.tasks\[(\d+)\]", lambda m: f"$.tasks[{int(m.group(1)) + 1}]", expect)
    assert shifted in err and all(line.startswith("agentd: ") for line in err.splitlines()), err
    code, out, err = cli(["--root", str(tmp_path), "queue", "list"], capsys)
    assert code == 0 and "(quarantined)" in out, err
    victim = next(iter(bad))
    code, _, err = cli(["--root", str(tmp_path), "queue", "set-status", "--", victim, "done"], capsys)
    if code == 0:  # setting the status cured the task (its status was its problem): the person's fix is let through
        assert victim not in store.read().quarantined
        del before[victim]
    else:  # refused (the task stays bad), or not found (no id to name it by)
        assert code in (4, 6) and err.count("\n") == 1 and err.startswith("agentd: "), err
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    with caplog.at_level(logging.INFO, logger="agentd"):
        reports = [daemon.tick() for _ in range(3)]
    assert all(r.error is None for r in reports), reports[0].error
    assert reports[0].claimed == ["good-one"]
    quarantined = [r for r in caplog.records if "is quarantined" in r.getMessage()]
    assert len(quarantined) == len(before) and all("\n" not in r.getMessage() for r in quarantined)
    after = store.read()
    assert {task_id: json.dumps(after.task(task_id)) for task_id in before} == before


@pytest.mark.parametrize(("name", "expect"), cases("config"), ids=[n for n, _ in cases("config")])
def test_bad_config(
    name: str,
    expect: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CLI: exit 4 and one line. A running daemon told to reload it keeps its old configuration."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("a")])
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    shutil.copyfile(CORPUS / name, tmp_path / "agentd.toml")
    before = sha(tmp_path / "agentd.toml"), sha(tmp_path / "SPRINT_QUEUE.json")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["--root", str(tmp_path), "queue", "set-status", "a", "done"], capsys)
    assert code == 4 and err.count("\n") == 1 and expect in err, err
    with caplog.at_level(logging.INFO, logger="agentd"):
        daemon.reload()
    assert any("keeping the old configuration" in r.getMessage() and expect in r.getMessage() for r in caplog.records)
    assert daemon.role.command == ("true",)
    assert (sha(tmp_path / "agentd.toml"), sha(tmp_path / "SPRINT_QUEUE.json")) == before


@pytest.mark.parametrize(("name", "expect"), cases("lease"), ids=[n for n, _ in cases("lease")])
def test_bad_lease_file(
    name: str, expect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A junk lease file is reported with its path; while its lock is held nothing touches it; once free, it goes."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("L1", "in_progress", agent="builder", lease={"token": 3, "role": "builder"})])
    leases = tmp_path / ".leases"
    leases.mkdir()
    junk = leases / "L1.json"
    shutil.copyfile(CORPUS / name, junk)
    before = sha(junk)
    holder = os.open(junk, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    monkeypatch.chdir(tmp_path)
    try:
        code, out, err = cli(["--root", str(tmp_path), "leases", "list"], capsys)
        assert code == 0, err
        [line] = [line for line in out.splitlines() if line.startswith("L1")]
        assert "live" in line and expect in line, line
        daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
        report = daemon.tick()
        assert report.error is None and report.recovered == []
        assert sha(junk) == before
        assert tasks_by_id(tmp_path)["L1"]["status"] == "in_progress"
    finally:
        os.close(holder)
    report = daemon.tick()  # judged by its lock alone: free now, so the task is recovered and the junk cleared
    assert report.recovered == ["L1"]
    assert not junk.exists() or sha(junk) != before
    deadline = time.monotonic() + 30
    while tasks_by_id(tmp_path)["L1"]["status"] != "awaiting_test":  # and the daemon carries on: re-runs it
        assert time.monotonic() < deadline, "the recovered task never ran"
        daemon.tick()
        time.sleep(0.02)


@pytest.mark.parametrize(("name", "expect"), cases("pid"), ids=[n for n, _ in cases("pid")])
def test_bad_pid_file(
    name: str, expect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """status reads a junk or stale PID file as "not running" (exit 3) without changing it; a daemon replaces it."""
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [])
    run = tmp_path / ".agentd" / "run"
    run.mkdir(parents=True)
    pid = run / "builder.pid"
    pid.write_bytes((CORPUS / name).read_bytes().replace(b"HOST", socket.gethostname().encode()))
    before = sha(pid)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["--root", str(tmp_path), "status", "builder"], capsys)
    assert code == 3, err
    assert expect in out, out
    assert sha(pid) == before
    owner = PidFile(pid, "builder")
    info = owner.acquire(started=datetime.now(UTC), interval=60, log=None)
    assert info.pid == os.getpid()
    owner.release()
    assert not pid.exists()


@pytest.mark.parametrize(("name", "expect"), cases("result"), ids=[n for n, _ in cases("result")])
def test_bad_result_file(name: str, expect: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bad result file fails the attempt with a line naming it and the JSON path; the daemon carries on."""
    source = CORPUS / name
    before = sha(source)
    command = ["sh", "-c", f'cat "{source}" > "$AGENTD_RESULT"']
    write_config(tmp_path, {"builder": {**BUILDER, "command": command}})
    write_queue(tmp_path, [task("R1")], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    with caplog.at_level(logging.INFO):
        assert daemon.run(Mode.ONCE) == 1
    lines = [r.getMessage() for r in caplog.records if "R1." in r.getMessage() and expect in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    assert "results/R1." in lines[0]
    final = tasks_by_id(tmp_path)["R1"]
    assert final["status"] == "ready" and final["attempts"] == 1 and "bad result file" in final["status_note"]
    assert sha(source) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
task_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=10), st.integers()), "status": json_values},
    optional={
        "dependencies": json_values,
        "priority": json_values,
        "lease": json_values,
        "subtasks": json_values,
        "not_before": json_values,
    },
)


@settings(max_examples=examples(150, 50), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda ts: json.dumps({"tasks": ts}).encode(), st.lists(task_like, max_size=4)),
    )
)
def test_garbage_never_crashes_the_store_or_the_daemon(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    """Random bytes and random task-shaped JSON: a clean QueueInvalid or a valid read; a daemon pass never raises."""
    root = tmp_path_factory.mktemp("garbage")
    write_config(root, {"builder": BUILDER})
    queue = root / "SPRINT_QUEUE.json"
    queue.write_bytes(blob)
    try:
        QueueStore(queue, parse_retry=0).read()
    except QueueInvalid as exc:
        message = str(exc)
    else:
        message = ""
    assert "\n" not in message
    daemon = Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)
    report = daemon.tick()
    assert report.error is None or "\n" not in report.error
    if report.error is not None:
        assert queue.read_bytes() == blob


lease_like = st.fixed_dictionaries(
    {},
    optional={
        "task_id": st.sampled_from(["L1", "L2"]) | json_values,
        "token": st.integers(-2, 5) | json_values,
        "role": st.just("builder") | json_values,
        "host": st.just(socket.gethostname()) | json_values,
        "pid": st.integers(-1, 1 << 22) | json_values,
        "acquired": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"]) | json_values,
        "ttl": st.floats(allow_nan=True) | json_values,
        "heartbeat_at": st.sampled_from(["2026-01-01T00:00:00Z", "9999-99-99"]) | json_values,
        "pgid": json_values,
    },
)


def as_json_bytes(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@settings(max_examples=examples(100, 40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.builds(as_json_bytes, lease_like)))
def test_lease_garbage_never_crashes_a_look_or_a_pass(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    """Any bytes in a lease file whose lock is free: observed without raising (an error names the JSON path in one
    line), and a daemon pass recovers its task without an error; the junk never makes it into the queue."""
    root = tmp_path_factory.mktemp("lease-garbage")
    write_config(root, {"builder": BUILDER})
    write_queue(root, [task("L1", "in_progress", agent="builder", lease={"token": 3, "role": "builder"})])
    (root / ".leases").mkdir()
    (root / ".leases" / "L1.json").write_bytes(blob)
    seen = LeaseDir(root / ".leases", root).observe("L1")
    assert seen is not None and seen.locked is False
    assert seen.error is None or "\n" not in seen.error
    daemon = Daemon(config_mod.load(root=root, environ={}), "builder", watch=False)
    report = daemon.tick()
    assert report.error is None and report.recovered == ["L1"], report
    assert QueueStore(root / "SPRINT_QUEUE.json", parse_retry=0).read().tasks[0].id == "L1"


@settings(max_examples=examples(100, 40), deadline=None)
@given(st.one_of(st.binary(max_size=200), st.builds(as_json_bytes, json_values)))
def test_pid_and_result_garbage_is_read_or_refused_in_one_line(blob: bytes) -> None:
    """A PID file's bytes parse to agentd's record or to nothing; a result file's to a result or one ResultInvalid."""
    with tempfile.TemporaryDirectory() as folder:
        pid = Path(folder) / "builder.pid"
        pid.write_bytes(blob)
        seen = probe(pid)
        assert seen.running is False and seen.error is None
        assert seen.info is not None or seen.stale is None or "\n" not in seen.stale
        result = Path(folder) / "R1.1.json"
        result.write_bytes(blob)
        message = ""
        try:
            read_result(result)
        except ResultInvalid as exc:
            message = str(exc)
        assert "\n" not in message and (not message or message.startswith(str(result)))
        assert result.read_bytes() == blob


toml_scalars = st.one_of(
    st.booleans(), st.integers(-5, 100), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)
)
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
role_keys = st.sampled_from(
    ["claims", "working", "on_success", "on_failure", "command", "wip", "types", "timeout", "prompt", "env", "x"]
)
config_like = st.fixed_dictionaries(
    {
        "defaults": st.dictionaries(
            st.sampled_from(["interval", "heartbeat", "lease_ttl", "max_attempts", "grace", "timeout", "x"]),
            toml_values,
            max_size=3,
        ),
        "roles": st.dictionaries(
            st.sampled_from(["builder", "tester", "bad name", ""]),
            st.dictionaries(role_keys, toml_values, max_size=5),
            max_size=2,
        ),
    }
)


@settings(max_examples=examples(100, 40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), config_like))
def test_config_garbage_loads_or_is_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, garbage: str | dict[str, dict[str, object]]
) -> None:
    """Random text and random TOML tables in agentd.toml: a Config, or one ConfigInvalid line naming the file."""
    root = tmp_path_factory.mktemp("config-garbage")
    if isinstance(garbage, str):
        (root / "agentd.toml").write_text(garbage)
    else:
        write_config(root, garbage["roles"], defaults=garbage["defaults"])
    before = sha(root / "agentd.toml")
    message = ""
    try:
        config_mod.load(root=root, environ={})
    except (ConfigInvalid, ConfigError) as exc:
        message = str(exc)
    assert "\n" not in message and (not message or "agentd.toml" in message), message
    assert sha(root / "agentd.toml") == before
