"""`queue update`, `queue remove`, and the status and dependency checks of `queue add` / `set-status`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agentd.cli import main
from tests.conftest import run_agentd, small_queue

Agentd = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def agentd(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Agentd:
    """The CLI's entry point run in this process, in ``cwd`` (quicker than a process; the same error boundary)."""
    for name in ("AGENTD_ROOT", "AGENTD_QUEUE", "AGENTD_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), int(info.value.code or 0), out, err)

    return run


def _queue(root: Path) -> dict[str, object]:
    return dict(json.loads((root / "SPRINT_QUEUE.json").read_text()))


def _ids(root: Path) -> list[str]:
    return [t["id"] for t in _queue(root)["tasks"]]  # type: ignore[attr-defined]


def _changed_lines(before: bytes, after: bytes) -> list[tuple[str, str]]:
    old, new = before.decode().splitlines(), after.decode().splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def test_update_changes_only_the_lines_of_the_fields_given(project: object) -> None:
    """update --title/--priority/--field rewrites exactly those lines; every other byte of the file stays."""
    root = project(small_queue())  # type: ignore[operator]
    path = root / "SPRINT_QUEUE.json"
    before = path.read_bytes()
    result = run_agentd(
        "queue", "update", "B2", "--title", "Renamed", "--priority", "7", "--field", "type=null", cwd=root
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "B2: updated type, title, priority"
    changed = _changed_lines(before, path.read_bytes())
    assert len(changed) == 3 and all(line[0].split(":")[0] == line[1].split(":")[0] for line in changed)
    task = json.loads(run_agentd("queue", "show", "B2", "--json", cwd=root).stdout)
    assert (task["title"], task["priority"], task["type"]) == ("Renamed", 7, None)


def test_update_dependencies_and_refusals(project: object, agentd: Agentd) -> None:
    """--depends-on replaces, --no-depends clears; self, unknown ids, protected fields and bad JSON are refused."""
    root = project(small_queue())  # type: ignore[operator]
    assert agentd("queue", "update", "B2", "--depends-on", "B1", cwd=root).returncode == 0
    assert json.loads(agentd("queue", "show", "B2", "--json", cwd=root).stdout)["dependencies"] == ["B1"]
    assert agentd("queue", "update", "B2", "--no-depends", cwd=root).returncode == 0
    assert json.loads(agentd("queue", "show", "B2", "--json", cwd=root).stdout)["dependencies"] == []
    before = (root / "SPRINT_QUEUE.json").read_bytes()
    cases = {
        ("--depends-on", "B2"): (7, "task B2: a task cannot depend on itself"),
        ("--depends-on", "nope"): (7, "task B2: unknown dependencies: nope"),
        ("--field", 'status="done"'): (7, "use `agentd queue set-status`"),
        ("--field", "estimate=three"): (2, "estimate: 'three' is not JSON"),
        (): (2, "nothing to change"),
    }
    for args, (code, message) in cases.items():
        result = agentd("queue", "update", "B2", *args, cwd=root)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert agentd("queue", "update", "ZZ", "--title", "x", cwd=root).returncode == 6
    assert (root / "SPRINT_QUEUE.json").read_bytes() == before


def test_remove_refuses_running_and_depended_on_tasks_unless_forced(project: object, agentd: Agentd) -> None:
    """remove: exit 7 while the task runs or others depend on it; --force removes it and drops it from their deps."""
    queue = small_queue()
    queue["tasks"].append({"id": "R1", "title": "running", "status": "in_progress", "lease": {"token": 3}})
    queue["tasks"].append({"id": "D1", "title": "needs B1", "status": "blocked", "dependencies": ["B1"]})
    root = project(queue)  # type: ignore[operator]
    path = root / "SPRINT_QUEUE.json"
    before = path.read_bytes()
    running = agentd("queue", "remove", "R1", cwd=root)
    assert running.returncode == 7 and "R1 is running" in running.stderr
    depended = agentd("queue", "remove", "B1", cwd=root)
    assert depended.returncode == 7 and "D1" in depended.stderr and "--force" in depended.stderr
    assert path.read_bytes() == before
    plain = agentd("queue", "remove", "T1", cwd=root)
    assert plain.returncode == 0 and plain.stdout.strip() == "removed T1"
    assert "T1" not in _ids(root)
    forced = agentd("queue", "remove", "B1", "--force", cwd=root)
    assert forced.returncode == 0, forced.stderr
    assert "B1" not in _ids(root)
    for dependent in ("B2", "D1"):
        assert json.loads(agentd("queue", "show", dependent, "--json", cwd=root).stdout)["dependencies"] == []
    assert agentd("queue", "validate", cwd=root).returncode == 0


def test_remove_touches_only_the_removed_task(project: object, agentd: Agentd) -> None:
    """Removing a task deletes its own lines; the lines of every other task stay byte for byte."""
    root = project(small_queue())  # type: ignore[operator]
    path = root / "SPRINT_QUEUE.json"
    before = path.read_text()
    task_text = json.dumps(_queue(root)["tasks"][-1], indent=2)  # type: ignore[index]
    assert agentd("queue", "remove", "T1", cwd=root).returncode == 0
    after = path.read_text()
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert len(before.splitlines()) - len(after.splitlines()) == len(task_text.splitlines())
    assert all(line in before.splitlines() for line in after.splitlines())
    assert removed


def test_unknown_status_is_refused_with_a_suggestion_unless_forced(project: object, agentd: Agentd) -> None:
    """set-status ID redy: exit 2, "did you mean 'ready'", file unchanged; --force sets it with a warning."""
    root = project(small_queue())  # type: ignore[operator]
    path = root / "SPRINT_QUEUE.json"
    before = path.read_bytes()
    typo = agentd("queue", "set-status", "B1", "redy", cwd=root)
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        "agentd: status 'redy': no role claims, works in or moves to it, and it is not final; "
        "did you mean 'ready'? (--force sets it anyway)"
    )
    added = agentd("queue", "add", "N1", "--title", "t", "--status", "redy", cwd=root)
    assert added.returncode == 2 and "did you mean 'ready'" in added.stderr
    assert path.read_bytes() == before
    forced = agentd("queue", "set-status", "B1", "redy", "--force", cwd=root)
    assert forced.returncode == 0 and "warning" in forced.stderr
    for status in ("done", "cancelled", "blocked", "needs_adapt", "testing"):
        assert agentd("queue", "set-status", "B2", status, cwd=root).returncode == 0, status


def test_self_dependency_is_named_as_such(project: object, agentd: Agentd) -> None:
    """queue add Z2 --depends-on Z2 says it is a self-dependency, not an unknown one."""
    root = project(small_queue())  # type: ignore[operator]
    result = agentd("queue", "add", "Z2", "--title", "t", "--depends-on", "Z2", cwd=root)
    assert result.returncode == 7
    assert result.stderr.strip() == "agentd: task Z2: a task cannot depend on itself"


def test_remove_takes_nested_subtasks_with_it(project: object, agentd: Agentd) -> None:
    """A task's nested subtasks go with it, and a subtask alone can be removed from its parent's list."""
    queue = small_queue()
    queue["tasks"][0]["subtasks"] = [
        {"id": "S1-a", "title": "a", "status": "needs_plan"},
        {"id": "S1-b", "title": "b", "status": "needs_plan"},
    ]
    root = project(queue)  # type: ignore[operator]
    alone = agentd("queue", "remove", "S1-b", cwd=root)
    assert alone.returncode == 0 and alone.stdout.strip() == "removed S1-b"
    whole = agentd("queue", "remove", "S1", cwd=root)
    assert whole.returncode == 0 and whole.stdout.strip() == "removed S1, S1-a"
    assert _ids(root) == ["B1", "B2", "T1"]
