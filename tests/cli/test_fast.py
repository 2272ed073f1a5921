"""The click-free path of the hot commands (agentd.cli.fast) answers exactly as the click commands do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import small_queue

CONFIG = '[roles.builder]\ncommand = ["true"]\n'

# Each argv runs once through `python -m agentd` (the fast path where it applies) and once through the click group
# alone, each in a fresh copy of the same project.
CASES: tuple[tuple[str, ...], ...] = (
    ("queue", "add", "N1", "--title", "New"),
    (
        "queue",
        "add",
        "N1",
        "--title=New",
        "--type",
        "Build",
        "--priority",
        "3",
        "--depends-on",
        "B1",
        "--depends-on",
        "S1",
        "--prompt",
        "do it",
    ),
    ("queue", "add", "--title", "Options first", "N1"),
    ("queue", "add", "N1", "--title", "one", "--title", "last wins"),
    ("queue", "add", "N1", "--title", "Sub", "--parent", "B1"),
    ("queue", "add", "N1", "--title", "Under nobody", "--parent", "nope"),
    ("queue", "add", "B1", "--title", "Duplicate"),
    ("queue", "add", "../evil", "--title", "Unsafe id"),
    ("queue", "add", "N1", "--title", "Unknown dep", "--depends-on", "nope"),
    ("queue", "add", "N1", "--title", "Odd status", "--status", "redy"),
    ("queue", "add", "N1", "--title", "Forced", "--status", "parked", "--force"),
    ("queue", "add", "N1", "--title", "\x1b[31mred\x1b[0m", "--status", "\x1b[1mbold", "--force"),
    ("queue", "add", "N1", "--title", "Negative", "--priority", "-1"),
    ("queue", "add", "N1", "--title", "Underscored", "--priority", "1_0"),
    ("queue", "add", "N1", "--title", "Bad priority", "--priority", "x"),
    ("queue", "add", "N1"),
    ("queue", "add", "N1", "--title"),
    ("queue", "add", "N1", "N2", "--title", "Two ids"),
    ("queue", "add", "N1", "--title", "t", "--force=yes"),
    ("queue", "add", "N1", "--title", "t", "--", "x"),
    ("queue", "add", "--help"),
    ("queue", "set-status", "B1", "blocked", "--force"),
    ("queue", "set-status", "B1", "awaiting_test", "--note", "why not"),
    ("queue", "set-status", "B1", "awaiting_tst"),
    ("queue", "set-status", "nope", "done"),
    ("queue", "set-status", "B1", "done", "--token", "5"),
    ("queue", "set-status", "B1", "done", "--token", "five"),
    ("queue", "set-status", "B1"),
    ("queue", "set-status", "B1", "done", "--bogus"),
    ("queue", "list"),
    ("queue", "list", "--json"),
    ("queue", "list", "--status", "ready", "--status", "needs_plan"),
    ("queue", "list", "--role", "builder", "--json"),
    ("queue", "list", "--role", "nosuch"),
    ("queue", "list", "extra"),
    ("queue", "list", "-h"),
    ("--queue", "SPRINT_QUEUE.json", "queue", "list"),
    ("--queue", "missing.json", "queue", "list"),
    ("--queue", ".", "queue", "list"),
    ("--root", "SPRINT_QUEUE.json", "queue", "list"),
    ("--root", ".", "queue", "set-status", "B1", "blocked"),
    ("--config", "agentd.toml", "queue", "list", "--json"),
    ("--store", "mysql://x", "queue", "list"),
    ("-v", "queue", "list"),
    ("queue", "--root", ".", "list"),
    ("status",),
    ("status", "builder"),
    ("status", "--json"),
    ("status", "builder", "--json"),
    ("status", "nosuch"),
    ("status", "--every", "0.1"),
    ("status", "--json=1"),
    ("status", "-h"),
    ("--queue", "missing.json", "status"),
)


def _project(root: Path, queue: dict[str, object] | str) -> Path:
    root.mkdir(parents=True)
    (root / "agentd.toml").write_text(CONFIG, encoding="utf-8")
    text = queue if isinstance(queue, str) else json.dumps(queue, indent=2) + "\n"
    (root / "SPRINT_QUEUE.json").write_text(text, encoding="utf-8")
    return root


def _run(argv: tuple[str, ...], cwd: Path, *, click_only: bool) -> tuple[int, str, str, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env["NO_COLOR"] = "1"
    if click_only:
        command = [sys.executable, "-c", "from agentd.cli.root import main; main()", *argv]
    else:
        command = [sys.executable, "-m", "agentd", *argv]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    queue = cwd / "SPRINT_QUEUE.json"
    return done.returncode, done.stdout, done.stderr, queue.read_bytes() if queue.exists() else b""


def _both(tmp_path: Path, argv: tuple[str, ...], queue: dict[str, object] | str) -> None:
    """Both paths in turn, each in a fresh copy of the project at the same path (paths in messages alike)."""
    root = tmp_path / "proj"
    fast = _run(argv, _project(root, queue), click_only=False)
    shutil.rmtree(root)
    slow = _run(argv, _project(root, queue), click_only=True)
    if "status" in argv and "--json" in argv and fast[0] == slow[0] and fast[1] and slow[1]:
        fast, slow = _untimed(fast), _untimed(slow)
    assert fast == slow, argv


def _untimed(result: tuple[int, str, str, bytes]) -> tuple[int, str, str, bytes]:
    data = json.loads(result[1])
    data.pop("generated_at")
    return result[0], json.dumps(data), result[2], result[3]


@pytest.mark.slow
@pytest.mark.parametrize("argv", CASES, ids=lambda argv: " ".join(argv).replace("\x1b", "ESC"))
def test_the_fast_path_answers_as_click_does(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """The same argv through `python -m agentd` and through the click group alone gives the same exit code, stdout,
    stderr and queue file bytes."""
    _both(tmp_path, argv, small_queue())


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ("queue", "list"),
        ("queue", "list", "--json"),
        ("queue", "add", "N1", "--title", "t"),
        ("queue", "set-status", "B1", "blocked"),
        ("status",),
        ("status", "--json"),
    ],
    ids=" ".join,
)
def test_the_fast_path_answers_as_click_on_a_bad_queue(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """A quarantined task, then a queue that does not parse: the same warning, error line and exit code both ways."""
    doc = small_queue()
    doc["tasks"].append({"id": "Q1", "title": 5, "status": "ready"})  # type: ignore[attr-defined]
    _both(tmp_path / "quarantined", argv, doc)
    _both(tmp_path / "broken", argv, '{"tasks": [\n')


@pytest.mark.slow
def test_the_fast_path_answers_as_click_outside_a_project(tmp_path: Path) -> None:
    """In a folder with neither agentd.toml nor a queue, both say so the same way (exit 6), creating nothing."""
    for path in ("fast", "click"):
        (tmp_path / path).mkdir()
    argv = ("queue", "set-status", "B1", "done")
    fast = _run(argv, tmp_path / "fast", click_only=False)
    slow = _run(argv, tmp_path / "click", click_only=True)
    assert fast == slow
    assert fast[0] == 6
    assert list((tmp_path / "fast").iterdir()) == []
