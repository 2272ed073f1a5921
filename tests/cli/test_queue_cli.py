"""The queue commands end to end, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from agentd.cli import cli
from tests.conftest import run_agentd, small_queue


def test_init_creates_config_queue_and_leases(tmp_path: Path) -> None:
    """init writes agentd.toml, an empty valid queue and .leases/, and never overwrites them."""
    first = run_agentd("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "agentd.toml").is_file() and (tmp_path / ".leases").is_dir()
    assert json.loads((tmp_path / "SPRINT_QUEUE.json").read_text())["tasks"] == []
    (tmp_path / "SPRINT_QUEUE.json").write_text('{"tasks": [{"id": "x", "status": "ready"}]}')
    again = run_agentd("init", cwd=tmp_path)
    assert "exists, left as it is" in again.stdout
    assert "x" in (tmp_path / "SPRINT_QUEUE.json").read_text()
    assert run_agentd("queue", "validate", cwd=tmp_path).stdout.strip() == "SPRINT_QUEUE.json: valid (1 tasks)"


def test_add_list_show_and_json(project: object, tmp_path: Path) -> None:
    """add appends in the file's style; list and show read it back, as text and JSON."""
    root = project(small_queue())  # type: ignore[operator]
    added = run_agentd(
        "queue", "add", "B3", "--title", "Third", "--type", "Build", "--priority", "0", "--depends-on", "B1", cwd=root
    )
    assert added.returncode == 0, added.stderr
    listing = json.loads(run_agentd("queue", "list", "--status", "ready", "--json", cwd=root).stdout)
    assert [t["id"] for t in listing] == ["B1", "B2", "B3"]
    shown = json.loads(run_agentd("queue", "show", "B3", "--json", cwd=root).stdout)
    assert shown == {
        "id": "B3",
        "title": "Third",
        "type": "Build",
        "status": "ready",
        "priority": 0,
        "agent": None,
        "lease": None,
        "dependencies": ["B1"],
    }
    plain = run_agentd("queue", "list", "--role", "tester", cwd=root).stdout
    assert plain.splitlines()[0].split() == ["ID", "STATUS", "PRIO", "TYPE", "AGENT", "TITLE"]


def test_add_refuses_duplicates_unknown_deps_and_bad_ids(project: object) -> None:
    """Duplicate ids and unsafe ids are refused with exit 7; the file is unchanged."""
    root = project(small_queue())  # type: ignore[operator]
    before = (root / "SPRINT_QUEUE.json").read_bytes()
    for args in (["B1"], ["../evil"], ["X", "--depends-on", "nope"]):
        result = run_agentd("queue", "add", *args, "--title", "t", cwd=root)
        assert result.returncode == 7, result.stderr
        assert result.stderr.count("\n") == 1
    assert (root / "SPRINT_QUEUE.json").read_bytes() == before


def test_add_under_a_parent_follows_the_queue_convention(project: object) -> None:
    """--parent nests under subtasks when the queue nests, else links with a parent field."""
    root = project(small_queue())  # type: ignore[operator]
    assert run_agentd("queue", "add", "S1-a", "--title", "sub", "--parent", "S1", cwd=root).returncode == 0
    data = json.loads((root / "SPRINT_QUEUE.json").read_text())
    assert data["tasks"][-1]["parent"] == "S1"
    nested = small_queue()
    nested["tasks"][0]["subtasks"] = []
    root = project(nested)  # type: ignore[operator]
    assert run_agentd("queue", "add", "S1-b", "--title", "sub", "--parent", "S1", cwd=root).returncode == 0
    assert json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][0]["subtasks"][0]["id"] == "S1-b"


def test_set_status_with_token_is_fenced(project: object) -> None:
    """--token must match the task's current lease token, or the write is refused (exit 7)."""
    queue = small_queue()
    queue["tasks"][1].update(status="in_progress", lease={"token": 4, "role": "builder"})
    root = project(queue)  # type: ignore[operator]
    refused = run_agentd("queue", "set-status", "B1", "awaiting_test", "--token", "3", cwd=root)
    assert refused.returncode == 7 and "fencing token 3 is not current (current token is 4)" in refused.stderr
    ok = run_agentd("queue", "set-status", "B1", "awaiting_test", "--token", "4", "--note", "built", cwd=root)
    assert ok.returncode == 0 and ok.stdout.strip() == "B1: in_progress -> awaiting_test"
    task = json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][1]
    assert task["status"] == "awaiting_test" and task["status_note"] == "built"


def test_retry_and_cancel(project: object) -> None:
    """retry sends a failed task back to its role's claimable status with attempts reset; cancel ends it."""
    queue = small_queue()
    queue["tasks"][1].update(
        status="blocked",
        agent="builder",
        attempts=3,
        blocked_reason="failed 3 attempts",
        not_before="2030-01-01T00:00:00+00:00",
    )
    root = project(queue)  # type: ignore[operator]
    assert run_agentd("queue", "retry", "B1", cwd=root).stdout.strip() == "B1: back to ready (attempts reset)"
    task = json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][1]
    assert task["status"] == "ready" and task["attempts"] == 0
    assert "blocked_reason" not in task and "not_before" not in task
    assert run_agentd("queue", "cancel", "B2", cwd=root).returncode == 0
    assert json.loads((root / "SPRINT_QUEUE.json").read_text())["tasks"][2]["status"] == "cancelled"


def test_unknown_task_is_exit_6(project: object) -> None:
    """An unknown id is a one-line error with exit code 6."""
    root = project(small_queue())  # type: ignore[operator]
    result = run_agentd("queue", "show", "NOPE", cwd=root)
    assert result.returncode == 6 and result.stderr.strip() == "agentd: SPRINT_QUEUE.json: no task with id 'NOPE'"


def test_missing_queue_says_how_to_create_one(tmp_path: Path) -> None:
    """No queue file: exit 4 and a hint to run agentd init (exit 6 where there is no project at all)."""
    result = run_agentd("queue", "list", cwd=tmp_path)
    assert result.returncode == 6 and "agentd init" in result.stderr
    (tmp_path / "agentd.toml").write_text("")
    result = run_agentd("queue", "list", cwd=tmp_path)
    assert result.returncode == 4 and "agentd init" in result.stderr


def test_usage_error_is_exit_2(tmp_path: Path) -> None:
    """A bad option is a usage error, exit 2."""
    assert run_agentd("queue", "list", "--bogus", cwd=tmp_path).returncode == 2


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # a lazy group imports a command's module on get_command
        command = group.get_command(ctx, name)
        assert command is not None, name
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, prefix + name + " "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(cli), ids=[n for n, _ in _commands(cli)])
def test_every_command_has_help_with_examples(name: str, command: click.Command) -> None:
    """--help of every leaf command shows at least one example."""
    if isinstance(command, click.Group):
        return
    assert command.help and "Example" in command.help, name


def test_retry_refuses_a_finished_task(project: object) -> None:
    """retry of a done task is refused (exit 7): reopening is a set-status decision."""
    queue = small_queue()
    queue["tasks"][1].update(status="done", agent="integrator")
    root = project(queue)  # type: ignore[operator]
    result = run_agentd("queue", "retry", "B1", cwd=root)
    assert result.returncode == 7 and "final" in result.stderr


def test_queue_path_option_is_relative_to_the_current_folder(project: object) -> None:
    """--queue is taken from where the user stands, not from the project root."""
    root = project(small_queue())  # type: ignore[operator]
    sub = root / "sub"
    sub.mkdir()
    (root / "agentd.toml").write_text("")
    result = run_agentd("--queue", "../SPRINT_QUEUE.json", "queue", "show", "B1", "--json", cwd=sub)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "B1"


def test_validate_refuses_an_id_with_a_final_newline(project: object) -> None:
    """An id ending in a newline fails `queue validate` (exit 4) naming the file and JSON path; file untouched."""
    queue = small_queue()
    queue["tasks"][0]["id"] = "X1\n"
    root = project(queue)  # type: ignore[operator]
    before = (root / "SPRINT_QUEUE.json").read_bytes()
    result = run_agentd("queue", "validate", cwd=root)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "SPRINT_QUEUE.json: $.tasks[0].id: 'X1\\n' is not a valid task id" in result.stderr + result.stdout
    assert (root / "SPRINT_QUEUE.json").read_bytes() == before


def test_read_commands_print_lone_surrogates_as_escapes(project: object) -> None:
    """queue list/show (text and JSON) print a title with a lone surrogate as a \\u escape, never a traceback."""
    queue = small_queue()
    queue["tasks"][1]["title"] = "half an emoji \ud83d"
    root = project(queue)  # type: ignore[operator]
    for args in (["list"], ["list", "--json"], ["show", "B1"], ["show", "B1", "--json"]):
        result = run_agentd("queue", *args, cwd=root)
        assert "Traceback" not in result.stderr, result.stderr
        assert "half an emoji \\ud83d" in result.stdout, (args, result.stdout, result.stderr)
    shown = json.loads(run_agentd("queue", "show", "B1", "--json", cwd=root).stdout)
    assert shown["title"] == "half an emoji \ud83d"
