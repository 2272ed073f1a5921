"""Write the bad-input corpus (tests/corpus/<kind>/...) and its MANIFEST.json. Run after changing a case:

    .venv/bin/python -m tests.corpus.generate

Each case is a file agentd reads — a queue, agentd.toml, a lease file, a PID file or a task's result file — and the
one-line error (its substring, with the JSON path where there is one) agentd must answer with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def q(*tasks: Any, **top: Any) -> bytes:
    return (json.dumps({**top, "tasks": list(tasks)}, indent=2) + "\n").encode()


def t(task_id: Any = "a", status: Any = "ready", **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, **extra}


def nested(depth: int) -> dict[str, Any]:
    task = t(f"n{depth}")
    for level in range(depth - 1, -1, -1):
        task = t(f"n{level}", subtasks=[task])
    return task


QUEUES: dict[str, tuple[bytes, str]] = {
    "empty.json": (b"", "SPRINT_QUEUE.json: empty file"),
    "whitespace.json": (b"  \n\n", "SPRINT_QUEUE.json: empty file"),
    "truncated.json": (q(t(), t("b"))[:40], "SPRINT_QUEUE.json: not valid JSON"),
    "truncated-mid-string.json": (q(t(title="half a title"))[:60], "SPRINT_QUEUE.json: not valid JSON"),
    "trailing-garbage.json": (q(t()) + b"}", "SPRINT_QUEUE.json: not valid JSON"),
    "array-top.json": (b"[]\n", "SPRINT_QUEUE.json: $: expected a JSON object"),
    "string-top.json": (b'"tasks"\n', "SPRINT_QUEUE.json: $: expected a JSON object"),
    "no-tasks.json": (b'{"wip_limits": {}}\n', "SPRINT_QUEUE.json: $: 'tasks' is a required property"),
    "tasks-object.json": (b'{"tasks": {}}\n', "SPRINT_QUEUE.json: $.tasks: {} is not of type 'array'"),
    "tasks-null.json": (b'{"tasks": null}\n', "SPRINT_QUEUE.json: $.tasks: null is not of type 'array'"),
    "task-string.json": (q("a"), "SPRINT_QUEUE.json: $.tasks[0]: 'a' is not of type 'object'"),
    "no-id.json": (q({"status": "ready"}), "SPRINT_QUEUE.json: $.tasks[0]: 'id' is a required property"),
    "no-status.json": (q({"id": "a"}), "SPRINT_QUEUE.json: $.tasks[0]: 'status' is a required property"),
    "status-int.json": (q(t(), t("b", 5)), "SPRINT_QUEUE.json: $.tasks[1].status: 5 is not of type 'string'"),
    "status-empty.json": (q(t(status="")), "SPRINT_QUEUE.json: $.tasks[0].status: '' should be non-empty"),
    "status-list.json": (q(t(status=["ready"])), "SPRINT_QUEUE.json: $.tasks[0].status: ['ready'] is not of type"),
    "id-slash.json": (q(t("a/b")), "SPRINT_QUEUE.json: $.tasks[0].id: 'a/b' is not a valid task id"),
    "id-dotdot.json": (q(t("..")), "SPRINT_QUEUE.json: $.tasks[0].id: '..' is not a valid task id"),
    "id-dotdot-path.json": (
        q(t("../../etc/passwd")),
        "SPRINT_QUEUE.json: $.tasks[0].id: '../../etc/passwd' is not a valid",
    ),
    "id-nul.json": (q(t("a\u0000b")), "SPRINT_QUEUE.json: $.tasks[0].id:"),
    "id-500.json": (q(t("a" * 500)), "SPRINT_QUEUE.json: $.tasks[0].id:"),
    "id-final-newline.json": (q(t("X1\n")), "SPRINT_QUEUE.json: $.tasks[0].id: 'X1\\n' is not a valid task id"),
    "id-int.json": (q(t(7)), "SPRINT_QUEUE.json: $.tasks[0].id: 7 is not of type 'string'"),
    "id-space.json": (q(t("a b")), "SPRINT_QUEUE.json: $.tasks[0].id: 'a b' is not a valid task id"),
    "id-leading-dash.json": (q(t("-rf")), "SPRINT_QUEUE.json: $.tasks[0].id: '-rf' is not a valid task id"),
    "priority-str.json": (q(t(priority="high")), "SPRINT_QUEUE.json: $.tasks[0].priority: 'high' is not of type"),
    "priority-float.json": (q(t(priority=1.5)), "SPRINT_QUEUE.json: $.tasks[0].priority: 1.5 is not of type"),
    "deps-str.json": (q(t(dependencies="b")), "SPRINT_QUEUE.json: $.tasks[0].dependencies: 'b' is not of type"),
    "dep-int.json": (q(t(dependencies=[3])), "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: 3 is not of type"),
    "lease-str.json": (q(t(lease="mine")), "SPRINT_QUEUE.json: $.tasks[0].lease:"),
    "lease-token-0.json": (q(t(lease={"token": 0})), "SPRINT_QUEUE.json: $.tasks[0].lease.token: 0 is less than"),
    "lease-token-str.json": (q(t(lease={"token": "7"})), "SPRINT_QUEUE.json: $.tasks[0].lease.token: '7' is not of"),
    "lease-time.json": (q(t(lease={"acquired": "noon"})), "SPRINT_QUEUE.json: $.tasks[0].lease.acquired: 'noon' is"),
    "lease-heartbeat.json": (
        q(t(lease={"last_heartbeat": "2025-13-45T99:00:00Z"})),
        "SPRINT_QUEUE.json: $.tasks[0].lease.last_heartbeat:",
    ),
    "not-before.json": (q(t(not_before="soon")), "SPRINT_QUEUE.json: $.tasks[0].not_before: 'soon' is not a timestamp"),
    "wip-str.json": (q(t(), wip_limits="3"), "SPRINT_QUEUE.json: $.wip_limits: '3' is not of type 'object'"),
    "wip-neg.json": (q(t(), wip_limits={"builder": -1}), "SPRINT_QUEUE.json: $.wip_limits.builder: -1 is less than"),
    "wip-float.json": (q(t(), wip_limits={"builder": 1.5}), "SPRINT_QUEUE.json: $.wip_limits.builder: 1.5 is not of"),
    "subtask-status.json": (
        q(t(subtasks=[t("b", None)])),
        "SPRINT_QUEUE.json: $.tasks[0].subtasks[0].status: null is not of type 'string'",
    ),
    "subtasks-obj.json": (q(t(subtasks={})), "SPRINT_QUEUE.json: $.tasks[0].subtasks: {} is not of type 'array'"),
    "duplicate.json": (q(t("a"), t("a")), "SPRINT_QUEUE.json: $.tasks[1].id: duplicate task id 'a'"),
    "nested-duplicate.json": (
        q(t("a", subtasks=[t("b", subtasks=[t("a")])])),
        "SPRINT_QUEUE.json: $.tasks[0].subtasks[0].subtasks[0].id: duplicate task id 'a'",
    ),
    "unknown-dep.json": (
        q(t(dependencies=["zz"])),
        "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: unknown dependency",
    ),
    "cycle.json": (q(t("a", dependencies=["b"]), t("b", dependencies=["a"])), "dependency cycle: a -> b -> a"),
    "long-cycle.json": (
        q(*[t(f"c{i}", dependencies=[f"c{(i + 1) % 5}"]) for i in range(5)]),
        "dependency cycle: c0 -> c1 -> c2 -> c3 -> c4 -> c0",
    ),
    "self-dep.json": (q(t("a", dependencies=["a"])), "SPRINT_QUEUE.json: $.tasks[0].dependencies[0]: a task cannot"),
    "conflict-markers.json": (
        b'{\n  "tasks": [\n<<<<<<< HEAD\n    {"id": "a", "status": "ready"}\n=======\n    {"id": "a", "status": '
        b'"done"}\n>>>>>>> theirs\n  ]\n}\n',
        "SPRINT_QUEUE.json: line 3: unresolved git conflict marker '<<<<<<<'",
    ),
    "not-utf8.json": (b'{"tasks": [{"id": "a", "status": "r\xe9ady"}]}\n', "SPRINT_QUEUE.json: not UTF-8"),
    "utf16.json": ('{"tasks": []}'.encode("utf-16"), "SPRINT_QUEUE.json: not UTF-8"),
    "attempts-neg.json": (q(t(attempts=-1)), "SPRINT_QUEUE.json: $.tasks[0].attempts: -1 is less than the minimum"),
    "command-empty.json": (q(t(command=[])), "SPRINT_QUEUE.json: $.tasks[0].command: [] should be non-empty"),
    "command-str.json": (q(t(command="rm -rf /")), "SPRINT_QUEUE.json: $.tasks[0].command: 'rm -rf /' is not of type"),
    "title-number.json": (q(t(title=12)), "SPRINT_QUEUE.json: $.tasks[0].title: 12 is not of type"),
    "deep-json.json": (
        b'{"tasks": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "SPRINT_QUEUE.json: not valid JSON",
    ),
    "nan.json": (b'{"tasks": [{"id": "a", "status": "ready", "priority": NaN}]}\n', "SPRINT_QUEUE.json: $.tasks[0]"),
}

# Queue cases whose problem is the file's as a whole: every write stops. In every other queue case the problem is one
# task's own: that task is quarantined and the others flow.
FILE_LEVEL = frozenset(
    {
        "empty.json",
        "whitespace.json",
        "truncated.json",
        "truncated-mid-string.json",
        "trailing-garbage.json",
        "array-top.json",
        "string-top.json",
        "no-tasks.json",
        "tasks-object.json",
        "tasks-null.json",
        "wip-str.json",
        "wip-neg.json",
        "wip-float.json",
        "conflict-markers.json",
        "not-utf8.json",
        "utf16.json",
        "deep-json.json",
    }
)

CONFIGS: dict[str, tuple[bytes, str]] = {
    "bad-toml.toml": (b"queue = \n", "agentd.toml: not valid TOML"),
    "unknown-key.toml": (b'queu = "x.json"\n', "agentd.toml: $: Additional properties are not allowed ('queu'"),
    "interval-str.toml": (b'[defaults]\ninterval = "60"\n', "agentd.toml: $.defaults.interval: '60' is not of type"),
    "interval-zero.toml": (b"[defaults]\ninterval = 0\n", "agentd.toml: $.defaults.interval: 0 is less than or equal"),
    "no-working.toml": (b'[roles.b]\nclaims = "x"\non_success = "y"\n', "agentd.toml: $.roles.b: 'working' is a"),
    "claims-int.toml": (
        b'[roles.b]\nclaims = 1\nworking = "w"\non_success = "y"\n',
        "agentd.toml: $.roles.b.claims: 1 is not of type",
    ),
    "outcome-key.toml": (
        b'[roles.b]\nclaims = "x"\nworking = "w"\non_success = "y"\noutcomes = { fail = "z" }\n',
        "agentd.toml: $.roles.b.outcomes: 'fail' does not match",
    ),
    "command-str.toml": (
        b'[roles.b]\nclaims = "x"\nworking = "w"\non_success = "y"\ncommand = "claude -p"\n',
        "agentd.toml: $.roles.b.command: 'claude -p' is not of type 'array'",
    ),
    "unblock-str.toml": (b'unblock = "yes"\n', "agentd.toml: $.unblock:"),
    "done-empty.toml": (b"done_statuses = []\n", "agentd.toml: $.done_statuses: [] should be non-empty"),
    "backups-neg.toml": (b"[log]\nbackups = -1\n", "agentd.toml: $.log.backups: -1 is less than the minimum"),
    "not-utf8.toml": (b'queue = "q\xff.json"\n', "agentd.toml: not UTF-8"),
    "role-name.toml": (
        b'[roles."bad/name"]\nclaims = "x"\nworking = "w"\non_success = "y"\n',
        "agentd.toml: $.roles: 'bad/name' does not match",
    ),
    "attempts-zero.toml": (b"[defaults]\nmax_attempts = 0\n", "agentd.toml: $.defaults.max_attempts: 0 is less than"),
    "factor-small.toml": (b"[defaults.backoff]\nfactor = 0.5\n", "agentd.toml: $.defaults.backoff.factor: 0.5 is less"),
    "lock-timeout.toml": (b"lock_timeout = -1\n", "agentd.toml: $.lock_timeout: -1 is less than or equal"),
    "empty-roles-claims.toml": (
        b'[roles.b]\nclaims = []\nworking = "w"\non_success = "y"\n',
        "agentd.toml: $.roles.b.claims:",
    ),
    "conflict-markers.toml": (b"<<<<<<< HEAD\nqueue = 'a.json'\n=======\n", "agentd.toml: not valid TOML"),
}

LEASE_BASE = {
    "task_id": "L1",
    "token": 3,
    "role": "builder",
    "host": "h",
    "pid": 1,
    "acquired": "2026-01-01T00:00:00Z",
    "ttl": 60,
}
LEASES: dict[str, tuple[bytes, str]] = {
    "L1.json": (b"{not json", "not valid JSON"),
    "truncated/L1.json": (json.dumps(LEASE_BASE).encode()[:30], "not valid JSON"),
    "token-str/L1.json": (json.dumps({**LEASE_BASE, "token": "3"}).encode(), "$.token: '3' is not of type 'integer'"),
    "no-role/L1.json": (
        json.dumps({k: v for k, v in LEASE_BASE.items() if k != "role"}).encode(),
        "'role' is a required",
    ),
    "bad-time/L1.json": (
        json.dumps({**LEASE_BASE, "acquired": "yesterday"}).encode(),
        "$.acquired: 'yesterday' is not",
    ),
    "other-task/L1.json": (json.dumps({**LEASE_BASE, "task_id": "L2"}).encode(), "$.task_id: names task 'L2'"),
    "binary/L1.json": (b"\xff\xfe\x00garbage", "not valid JSON"),
}

PIDS: dict[str, tuple[bytes, str]] = {
    "empty/builder.pid": (b"", "stopped"),
    "garbage/builder.pid": (b"not a pid file", "stale PID file: its content is not an agentd PID file"),
    "number-only/builder.pid": (b"4242\n", "stale PID file: its content is not an agentd PID file"),
    "pid-str/builder.pid": (
        b'{"pid": "4242", "role": "builder", "host": "h", "started_at": "x", "argv": []}',
        "stale PID file: its content is not an agentd PID file",
    ),
    "other-host/builder.pid": (
        json.dumps(
            {"pid": 1, "role": "builder", "host": "elsewhere", "started_at": "2026-01-01T00:00:00+00:00", "argv": []}
        ).encode(),
        "stale PID file: written on host elsewhere",
    ),
    "reused-pid/builder.pid": (
        json.dumps(
            {
                "pid": 1,
                "role": "builder",
                "host": "HOST",
                "started_at": "2026-01-01T00:00:00+00:00",
                "argv": [],
                "proc_start": 1,
            }
        ).encode(),
        "stale PID file: pid 1",
    ),
}

RESULTS: dict[str, tuple[bytes, str]] = {
    "not-json.json": (b"done!", "not valid JSON"),
    "status-int.json": (b'{"status": 3}', "$.status: 3 is not of type 'string'"),
    "unknown-key.json": (b'{"status": "done", "verdict": "ok"}', "Additional properties are not allowed ('verdict'"),
    "owned-field.json": (b'{"fields": {"lease": null}}', "$.fields:"),
    "fields-list.json": (b'{"fields": ["a"]}', "$.fields: ['a'] is not of type 'object'"),
    "empty.json": (b"", "not valid JSON"),
    "status-empty.json": (b'{"status": ""}', "$.status: '' should be non-empty"),
}


def main() -> None:
    manifest: dict[str, dict[str, str]] = {}
    for kind, cases in (("queue", QUEUES), ("config", CONFIGS), ("lease", LEASES), ("pid", PIDS), ("result", RESULTS)):
        for name, (content, expect) in cases.items():
            path = HERE / kind / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            manifest[f"{kind}/{name}"] = {"expect": expect}
            if kind == "queue":
                manifest[f"{kind}/{name}"]["scope"] = "file" if name in FILE_LEVEL else "task"
    (HERE / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"{len(manifest)} corpus files")


if __name__ == "__main__":
    main()
