"""Malformed queues and configs: one line naming the file and JSON path, exit code 4, the file left byte-for-byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentd.cli import main
from tests.conftest import sha


def _q(*tasks: Any, **top: Any) -> bytes:
    return json.dumps({**top, "tasks": list(tasks)}, indent=2).encode()


def _t(task_id: str = "a", status: Any = "ready", **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **extra}


QUEUES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "SPRINT_QUEUE.json: empty file"),
    ("whitespace", b"  \n\n", "SPRINT_QUEUE.json: empty file"),
    ("truncated", _q(_t(), _t("b"))[:40], "SPRINT_QUEUE.json: not valid JSON"),
    ("trailing-garbage", _q(_t()) + b"}", "SPRINT_QUEUE.json: not valid JSON"),
    ("array-top", b"[]", "SPRINT_QUEUE.json: $: expected a JSON object"),
    ("no-tasks", b'{"wip_limits": {}}', "SPRINT_QUEUE.json: $: 'tasks' is a required property"),
    ("tasks-object", b'{"tasks": {}}', "SPRINT_QUEUE.json: $.tasks: {} is not of type 'array'"),
    ("task-string", _q("a"), "SPRINT_QUEUE.json: $.tasks[0]: 'a' is not of type 'object'"),
    ("no-id", _q({"status": "ready"}), "SPRINT_QUEUE.json: $.tasks[0]: 'id' is a required property"),
    ("no-status", _q({"id": "a"}), "SPRINT_QUEUE.json: $.tasks[0]: 'status' is a required property"),
    ("status-int", _q(_t(), _t("b", 5)), "SPRINT_QUEUE.json: $.tasks[1].status: 5 is not of type 'string'"),
    ("status-empty", _q(_t(status="")), "SPRINT_QUEUE.json: $.tasks[0].status: '' should be non-empty"),
    ("id-slash", _q(_t("a/b")), "SPRINT_QUEUE.json: $.tasks[0].id: 'a/b' does not match"),
    ("id-dotdot", _q(_t("..")), "SPRINT_QUEUE.json: $.tasks[0].id: '..' does not match"),
    ("id-nul", _q(_t("a\u0000b")), "SPRINT_QUEUE.json: $.tasks[0].id:"),
    ("id-500", _q(_t("a" * 500)), "SPRINT_QUEUE.json: $.tasks[0].id:"),
    ("id-int", _q(_t(7)), "SPRINT_QUEUE.json: $.tasks[0].id: 7 is not of type 'string'"),
    ("priority-str", _q(_t(priority="high")), "SPRINT_QUEUE.json: $.tasks[0].priority: 'high' is not of type"),
    ("deps-str", _q(_t(dependencies="b")), "SPRINT_QUEUE.json: $.tasks[0].dependencies: 'b' is not of type 'array'"),
    ("dep-int", _q(_t(dependencies=[3])), "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: 3 is not of type 'string'"),
    ("lease-str", _q(_t(lease="mine")), "SPRINT_QUEUE.json: $.tasks[0].lease:"),
    ("lease-token-0", _q(_t(lease={"token": 0})), "SPRINT_QUEUE.json: $.tasks[0].lease.token: 0 is less than"),
    ("lease-time", _q(_t(lease={"acquired": "noon"})), "SPRINT_QUEUE.json: $.tasks[0].lease.acquired: 'noon' is not a"),
    ("not-before", _q(_t(not_before="soon")), "SPRINT_QUEUE.json: $.tasks[0].not_before: 'soon' is not a timestamp"),
    ("wip-str", _q(_t(), wip_limits="3"), "SPRINT_QUEUE.json: $.wip_limits: '3' is not of type 'object'"),
    ("wip-neg", _q(_t(), wip_limits={"builder": -1}), "SPRINT_QUEUE.json: $.wip_limits.builder: -1 is less than"),
    ("wip-float", _q(_t(), wip_limits={"builder": 1.5}), "SPRINT_QUEUE.json: $.wip_limits.builder: 1.5 is not of"),
    (
        "subtask-status",
        _q(_t(subtasks=[_t("b", None)])),
        "SPRINT_QUEUE.json: $.tasks[0].subtasks[0].status: null is not of type 'string'",
    ),
    ("subtasks-obj", _q(_t(subtasks={})), "SPRINT_QUEUE.json: $.tasks[0].subtasks: {} is not of type 'array'"),
    ("duplicate", _q(_t("a"), _t("a")), "SPRINT_QUEUE.json: $.tasks[1].id: duplicate task id 'a'"),
    (
        "nested-duplicate",
        _q(_t("a", subtasks=[_t("b", subtasks=[_t("a")])])),
        "SPRINT_QUEUE.json: $.tasks[0].subtasks[0].subtasks[0].id: duplicate task id 'a'",
    ),
    ("unknown-dep", _q(_t(dependencies=["zz"])), "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: unknown dependency"),
    (
        "cycle",
        _q(_t("a", dependencies=["b"]), _t("b", dependencies=["a"])),
        "dependency cycle: a -> b -> a",
    ),
    ("self-dep", _q(_t("a", dependencies=["a"])), "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: a task cannot"),
    (
        "conflict-markers",
        b'{\n  "tasks": [\n<<<<<<< HEAD\n    {"id": "a", "status": "ready"}\n=======\n    {"id": "a", "status": '
        b'"done"}\n>>>>>>> theirs\n  ]\n}\n',
        "SPRINT_QUEUE.json: line 3: unresolved git conflict marker '<<<<<<<'",
    ),
    ("not-utf8", b'{"tasks": [{"id": "a", "status": "r\xe9ady"}]}', "SPRINT_QUEUE.json: not UTF-8"),
    ("attempts-neg", _q(_t(attempts=-1)), "SPRINT_QUEUE.json: $.tasks[0].attempts: -1 is less than the minimum"),
    ("command-empty", _q(_t(command=[])), "SPRINT_QUEUE.json: $.tasks[0].command: [] should be non-empty"),
    ("title-number", _q(_t(title=12)), "SPRINT_QUEUE.json: $.tasks[0].title: 12 is not of type"),
    ("deep-nesting", b'{"tasks": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "SPRINT_QUEUE.json: not valid"),
]

CONFIGS: list[tuple[str, bytes, str]] = [
    ("bad-toml", b"queue = \n", "agentd.toml: not valid TOML"),
    ("unknown-key", b'queu = "x.json"\n', "agentd.toml: $: Additional properties are not allowed ('queu'"),
    ("interval-str", b'[defaults]\ninterval = "60"\n', "agentd.toml: $.defaults.interval: '60' is not of type"),
    ("interval-zero", b"[defaults]\ninterval = 0\n", "agentd.toml: $.defaults.interval: 0 is less than or equal"),
    ("no-working", b'[roles.b]\nclaims = "x"\non_success = "y"\n', "agentd.toml: $.roles.b: 'working' is a required"),
    (
        "claims-int",
        b'[roles.b]\nclaims = 1\nworking = "w"\non_success = "y"\n',
        "agentd.toml: $.roles.b.claims: 1 is not of type",
    ),
    (
        "outcome-key",
        b'[roles.b]\nclaims = "x"\nworking = "w"\non_success = "y"\noutcomes = { fail = "z" }\n',
        "agentd.toml: $.roles.b.outcomes: 'fail' does not match",
    ),
    (
        "command-str",
        b'[roles.b]\nclaims = "x"\nworking = "w"\non_success = "y"\ncommand = "claude -p"\n',
        "agentd.toml: $.roles.b.command: 'claude -p' is not of type 'array'",
    ),
    ("unblock-str", b'unblock = "yes"\n', "agentd.toml: $.unblock:"),
    ("done-empty", b"done_statuses = []\n", "agentd.toml: $.done_statuses: [] should be non-empty"),
    ("backups-neg", b"[log]\nbackups = -1\n", "agentd.toml: $.log.backups: -1 is less than the minimum"),
    ("not-utf8", b'queue = "q\xff.json"\n', "agentd.toml: not UTF-8"),
    (
        "role-name",
        b'[roles."bad/name"]\nclaims = "x"\nworking = "w"\non_success = "y"\n',
        "agentd.toml: $.roles: 'bad/name' does not match",
    ),
    ("attempts-zero", b"[defaults]\nmax_attempts = 0\n", "agentd.toml: $.defaults.max_attempts: 0 is less than"),
    ("factor-small", b"[defaults.backoff]\nfactor = 0.5\n", "agentd.toml: $.defaults.backoff.factor: 0.5 is less"),
    ("lock-timeout", b"lock_timeout = -1\n", "agentd.toml: $.lock_timeout: -1 is less than or equal"),
]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.parametrize(("name", "content", "expected"), QUEUES, ids=[c[0] for c in QUEUES])
@pytest.mark.parametrize("command", [["queue", "validate"], ["queue", "set-status", "a", "done"], ["queue", "list"]])
def test_bad_queue(
    name: str,
    content: bytes,
    expected: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every read and write command refuses a bad queue with one line, exit 4, and leaves its bytes alone."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_bytes(content)
    before = sha(queue)
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["--root", str(tmp_path), *command], capsys)
    assert code == 4, err
    assert err.count("\n") == 1, err
    assert err.startswith("agentd: ") and expected in err, err
    assert sha(queue) == before
    assert sorted(p.name for p in tmp_path.iterdir()) in (
        ["SPRINT_QUEUE.json"],
        ["SPRINT_QUEUE.json", "SPRINT_QUEUE.json.lock"],
    )


@pytest.mark.parametrize(("name", "content", "expected"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_bad_config(
    name: str,
    content: bytes,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad agentd.toml is one line naming the file and key path, exit 4, and neither file changes."""
    (tmp_path / "agentd.toml").write_bytes(content)
    (tmp_path / "SPRINT_QUEUE.json").write_bytes(_q(_t()))
    before = (sha(tmp_path / "agentd.toml"), sha(tmp_path / "SPRINT_QUEUE.json"))
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(["--root", str(tmp_path), "queue", "set-status", "a", "done"], capsys)
    assert code == 4, err
    assert err.count("\n") == 1 and expected in err, err
    assert (sha(tmp_path / "agentd.toml"), sha(tmp_path / "SPRINT_QUEUE.json")) == before


def test_corpus_is_large_enough() -> None:
    """The issue asks for at least 30 malformed inputs."""
    assert len(QUEUES) + len(CONFIGS) >= 30
