"""`agentd workspace list|path|clean`, `queue show`'s branch and doctor's worktree checks, on real git repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentd.workspaces.manager import Workspaces
from agentd.workspaces.settings import WorkspaceSettings
from tests.conftest import run_agentd
from tests.helpers.daemons import task, write_queue
from tests.helpers.gitrepo import git, new_repo

CONFIG = '[workspaces]\nmode = "worktree"\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git project in worktree mode with tasks B1 (in progress), D1 (done) and a subtask S1 of B1."""
    root = new_repo(tmp_path, "one\n", ".agentd/\n.leases/\nSPRINT_QUEUE.json\nagentd.toml\n")
    (root / "agentd.toml").write_text(CONFIG)
    write_queue(root, [task("B1", "in_progress", subtasks=[task("S1")]), task("D1", "done")])
    return root


def made(root: Path, *ids: str, ready: bool = True) -> Workspaces:
    """Worktrees made for ``ids`` as a run would make them."""
    spaces = Workspaces(root, WorkspaceSettings.from_config({"mode": "worktree"}), root / ".agentd")
    for task_id in ids:
        spaces.ensure(task_id)
        if ready:
            spaces.mark_ready(task_id)
    return spaces


def test_list_shows_each_worktree_with_its_branch_state_size_and_status(repo: Path) -> None:
    """--json lists B1 (ready, in progress), D1 (done) and X9 (half-made, its task gone); the integration one is not
    listed."""
    made(repo, "B1", "D1")
    made(repo, "X9", ready=False)
    done = run_agentd("workspace", "list", "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    rows = {row["task"]: row for row in json.loads(done.stdout)}
    assert sorted(rows) == ["B1", "D1", "X9"]
    assert rows["B1"]["branch"] == "agentd/B1" and rows["B1"]["state"] == "ready" and rows["B1"]["size"] > 0
    assert rows["B1"]["path"] == str(repo / ".agentd" / "worktrees" / "B1") and rows["B1"]["status"] == "in_progress"
    assert rows["X9"]["state"] == "half-made" and rows["X9"]["status"] is None
    text = run_agentd("workspace", "list", cwd=repo)
    assert text.returncode == 0 and "agentd/D1" in text.stdout and "done" in text.stdout


def test_path_prints_the_folder_a_task_works_in(repo: Path) -> None:
    """B1's folder; S1 (a subtask) shares it; an unknown id is exit 6; a task with no worktree yet is exit 6."""
    made(repo, "B1")
    assert run_agentd("workspace", "path", "B1", cwd=repo).stdout.strip() == str(repo / ".agentd/worktrees/B1")
    assert run_agentd("workspace", "path", "S1", cwd=repo).stdout.strip() == str(repo / ".agentd/worktrees/B1")
    unknown = run_agentd("workspace", "path", "NOPE", cwd=repo)
    assert unknown.returncode == 6 and "NOPE" in unknown.stderr
    not_yet = run_agentd("workspace", "path", "D1", cwd=repo)
    assert not_yet.returncode == 6 and "no worktree yet" in not_yet.stderr and len(not_yet.stderr.splitlines()) == 1


def test_clean_removes_worktrees_of_final_and_gone_tasks_only(repo: Path) -> None:
    """--dry-run removes nothing; clean removes D1's (done) and X9's (gone), keeps B1's (in progress), leaves a dirty
    one unless --force, and keeps every branch."""
    made(repo, "B1", "D1", "X9")
    (repo / ".agentd/worktrees/X9/wip.txt").write_text("not committed\n")
    dry = run_agentd("workspace", "clean", "--dry-run", cwd=repo)
    assert dry.returncode == 0 and "would remove" in dry.stdout
    assert (repo / ".agentd/worktrees/D1").is_dir()
    done = run_agentd("workspace", "clean", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert not (repo / ".agentd/worktrees/D1").exists()
    assert (repo / ".agentd/worktrees/B1").is_dir()
    assert (repo / ".agentd/worktrees/X9").is_dir() and "uncommitted" in done.stdout
    forced = run_agentd("workspace", "clean", "--force", cwd=repo)
    assert forced.returncode == 0 and not (repo / ".agentd/worktrees/X9").exists()
    assert git(repo, "branch", "--list", "--format=%(refname:short)", "agentd/*").split() == [
        "agentd/B1",
        "agentd/D1",
        "agentd/X9",
    ]


def test_queue_show_names_the_branch(repo: Path) -> None:
    """In worktree mode `queue show` ends with the task's branch (a subtask's is its parent's)."""
    shown = run_agentd("queue", "show", "S1", cwd=repo)
    assert shown.returncode == 0 and shown.stdout.splitlines()[-1].split() == ["(branch)", "agentd/B1"]


def test_workspace_commands_say_when_worktree_mode_is_off(repo: Path) -> None:
    """mode = none: one line saying so, exit 1."""
    (repo / "agentd.toml").write_text("")
    done = run_agentd("workspace", "list", cwd=repo)
    assert done.returncode == 1 and "worktree mode is off" in done.stderr and len(done.stderr.splitlines()) == 1


def test_doctor_checks_git_and_base_and_cleans_orphans(repo: Path, tmp_path: Path) -> None:
    """A worktree whose task is gone is a warning --fix cleans; a missing base and a folder outside git are errors."""
    made(repo, "B1", "X9")
    found = run_agentd("doctor", "--json", cwd=repo)
    codes = {f["code"]: f for f in json.loads(found.stdout)}
    assert found.returncode == 1 and codes["workspace-orphan"]["subject"] == "X9", codes
    fixed = run_agentd("doctor", "--fix", cwd=repo)
    assert "removed" in fixed.stdout and not (repo / ".agentd/worktrees/X9").exists()
    assert (repo / ".agentd/worktrees/B1").is_dir()
    (repo / "agentd.toml").write_text(CONFIG + 'base = "trunk"\n')
    no_base = json.loads(run_agentd("doctor", "--json", cwd=repo).stdout)
    assert "workspaces-no-base" in {f["code"] for f in no_base}
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "agentd.toml").write_text(CONFIG)
    write_queue(plain, [task("A1")])
    no_git = json.loads(run_agentd("doctor", "--json", cwd=plain).stdout)
    assert "workspaces-no-git" in {f["code"] for f in no_git}


def test_config_show_gives_the_workspaces_table_and_who_merges(repo: Path) -> None:
    """`config show --json`: the [workspaces] table and its origin; the integrator merges by default, no builder."""
    shown = json.loads(run_agentd("config", "show", "--json", cwd=repo).stdout)
    table = shown["settings"]["workspaces"]
    assert table["value"]["mode"] == "worktree" and table["from"] == "agentd.toml"
    roles = shown["roles"]
    assert roles["integrator"]["merge"] == {"value": "merge", "from": "default"}
    assert roles["integrator"]["on_conflict"]["value"] == "needs_adapt"
    assert roles["builder"]["merge"]["value"] is False and "on_conflict" not in roles["builder"]


def test_doctor_names_a_lock_file_a_dead_git_left_and_not_one_a_running_git_holds(repo: Path, tmp_path: Path) -> None:
    """A person's ``git commit -a`` killed in the root checkout leaves ``.git/index.lock``. Doctor (its clock passed
    in) names it once it is a minute old, not before, and not while a git is running in the repository."""
    import os
    import signal
    import subprocess
    import time
    from datetime import UTC, datetime, timedelta

    from agentd import config as config_mod
    from agentd.report import doctor

    def codes(now: datetime) -> dict[str, str]:
        found = doctor.diagnose(config_mod.load(root=repo, environ={}), now, mount_table="")
        return {f.code: f.subject or "" for f in found}

    opened = tmp_path / "opened"
    editor = tmp_path / "editor.sh"
    editor.write_text(f': > "{opened}"\nexec sleep 600\n')
    (repo / "one.txt").write_text("two\n")
    git(repo, "add", "one.txt")
    git(repo, "commit", "-qm", "one")
    (repo / "one.txt").write_text("three\n")
    env = {**os.environ, "GIT_EDITOR": f"sh {editor}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid"}
    person = subprocess.Popen(["git", "commit", "-a"], cwd=repo, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not opened.exists():
            assert person.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        later = datetime.now(UTC) + timedelta(minutes=2)
        assert "git-lock-left" not in codes(later)  # its git is running
    finally:
        os.killpg(person.pid, signal.SIGKILL)
        person.wait()
    assert (repo / ".git/index.lock").exists()
    assert "git-lock-left" not in codes(datetime.now(UTC))  # a moment old: git may be at work
    assert codes(later)["git-lock-left"] == str(repo / ".git/index.lock")
