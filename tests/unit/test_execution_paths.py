"""What Executor.start uses of its config's paths, made once per config."""

from __future__ import annotations

import os
from pathlib import Path

from agentd import config as config_mod
from agentd.core.clock import FakeClock
from agentd.run.execution import Executor, _make_folder

ROLE = '[roles.builder]\nclaims = "ready"\nworking = "in_progress"\non_success = "done"\ncommand = ["true"]\n'


def _config(root: Path) -> config_mod.Config:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agentd.toml").write_text(ROLE, encoding="utf-8")
    (root / "SPRINT_QUEUE.json").write_text('{"tasks": []}\n', encoding="utf-8")
    return config_mod.load(root=root, environ={})


def test_the_paths_a_start_uses_are_the_configs_and_follow_a_new_config(tmp_path: Path) -> None:
    """The root, queue, config file, task-log and result folders are the config's own (as its properties give them),
    made once for a config, and made again for another config given to the executor."""
    first = _config(tmp_path / "one")
    executor = Executor(first, first.roles["builder"], FakeClock())
    paths = executor.paths()
    assert (paths.root, paths.queue, paths.config_file) == (first.root, first.queue_path, first.path)
    assert Path(paths.task_logs) == first.state_dir / "logs" / "tasks"
    assert Path(paths.results) == first.state_dir / "results"
    assert executor.paths() is paths
    second = _config(tmp_path / "two")
    executor.config = second
    assert executor.paths().root == second.root and Path(executor.paths().results) == second.state_dir / "results"


def test_the_results_folder_is_made_when_missing_and_refused_when_a_file_holds_its_place(tmp_path: Path) -> None:
    """As Path.mkdir(parents=True, exist_ok=True): missing parents are made, an existing folder is fine, a file in
    its place is FileExistsError (the task then cannot start)."""
    folder = tmp_path / "a" / "b"
    _make_folder(str(folder))
    _make_folder(str(folder))
    assert folder.is_dir()
    (tmp_path / "f").write_text("", encoding="utf-8")
    try:
        _make_folder(str(tmp_path / "f"))
    except FileExistsError:
        pass
    else:
        raise AssertionError("a file in the folder's place was taken for the folder")
    assert not os.path.isdir(tmp_path / "f")
