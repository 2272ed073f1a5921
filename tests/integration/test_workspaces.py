"""Worktrees per task on real git repositories: made, reused, merged back in parallel, conflicts, crash repair."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.workspaces.manager import WorkspaceError, Workspaces
from agentd.workspaces.settings import WorkspaceSettings, WorkspacesInvalid, branch_problem
from tests.helpers.gitrepo import GIT_ENV, git, new_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project that is a git repository with one commit on main (and .agentd/ ignored, as agentd init does)."""
    root = new_repo(tmp_path, "line 1\nline 2\nline 3\n", ".agentd/\n")
    return root


def spaces(root: Path, **settings: object) -> Workspaces:
    """The project's workspaces in worktree mode."""
    return Workspaces(root, WorkspaceSettings.from_config({"mode": "worktree", **settings}), root / ".agentd")


def commit_in(path: Path, name: str, text: str, message: str) -> None:
    """What an agent does in its worktree: write a file and commit it."""
    (path / name).write_text(text)
    git(path, "add", name)
    git(path, "commit", "-qm", message)


def test_a_task_gets_its_own_worktree_and_branch_and_keeps_them(repo: Path) -> None:
    """First claim makes agentd/B1 from main; the next claim reuses it with the agent's work in it."""
    ws = spaces(repo)
    made = ws.ensure("B1")
    assert made.created and made.branch == "agentd/B1" and made.path == repo / ".agentd/worktrees/B1"
    assert git(made.path, "rev-parse", "--abbrev-ref", "HEAD") == "agentd/B1"
    ws.mark_ready("B1")
    commit_in(made.path, "app.txt", "changed\n", "B1 work")
    (made.path / "notes.txt").write_text("uncommitted\n")
    again = ws.ensure("B1")
    assert not again.created and (again.path / "notes.txt").read_text() == "uncommitted\n"
    assert git(repo, "status", "--porcelain") == ""


def test_four_agents_edit_the_same_file_and_the_root_checkout_stays_clean(repo: Path) -> None:
    """Four processes, each in its own worktree, change app.txt and commit: four branches, root untouched."""
    script = (
        "import sys, subprocess, os; from pathlib import Path;"
        "from agentd.workspaces.manager import Workspaces;"
        "from agentd.workspaces.settings import WorkspaceSettings;"
        "root = Path(sys.argv[1]); task = sys.argv[2];"
        "ws = Workspaces(root, WorkspaceSettings(mode='worktree'), root / '.agentd');"
        "w = ws.ensure(task); ws.mark_ready(task);"
        "(w.path / 'app.txt').write_text(f'{task} was here\\n');"
        "subprocess.run(['git', 'commit', '-qam', task], cwd=w.path, check=True)"
    )
    env = {**os.environ, **GIT_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(repo), f"B{n}"], env=env) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    for n in range(4):
        assert git(repo, "show", f"agentd/B{n}:app.txt") == f"B{n} was here"
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "app.txt").read_text() == "line 1\nline 2\nline 3\n"


def test_three_merges_in_parallel_lose_no_commit(repo: Path) -> None:
    """Three integrators merge three branches at once (the git lock serialises them): main has all three."""
    ws = spaces(repo)
    for n in range(3):
        made = ws.ensure(f"I{n}")
        commit_in(made.path, f"file{n}.txt", f"{n}\n", f"I{n} work")
    git(repo, "checkout", "-q", "--detach")  # main is checked out nowhere: moved by update-ref
    script = (
        "import sys; from pathlib import Path;"
        "from agentd.workspaces.manager import Workspaces;"
        "from agentd.workspaces.settings import WorkspaceSettings;"
        "root = Path(sys.argv[1]);"
        "r = Workspaces(root, WorkspaceSettings(mode='worktree'), root / '.agentd').merge(sys.argv[2]);"
        "sys.exit(0 if r.merged else 3)"
    )
    env = {**os.environ, **GIT_ENV}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(repo), f"I{n}"], env=env) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    log = git(repo, "log", "--format=%s", "main")
    assert all(f"I{n} work" in log for n in range(3))
    assert sorted(git(repo, "ls-tree", "--name-only", "main").split()) == [
        ".gitignore",
        "app.txt",
        "file0.txt",
        "file1.txt",
        "file2.txt",
    ]


def test_a_conflict_names_the_paths_and_leaves_base_alone(repo: Path) -> None:
    """Two tasks change the same line: the first merges, the second is refused with app.txt named, main unchanged."""
    ws = spaces(repo)
    for task in ("C1", "C2"):
        made = ws.ensure(task)
        commit_in(made.path, "app.txt", f"line 1\n{task}\nline 3\n", f"{task} work")
    assert ws.merge("C1").merged
    tip = git(repo, "rev-parse", "main")
    result = ws.merge("C2")
    assert not result.merged and result.conflicts == ("app.txt",) and not result.retry
    assert git(repo, "rev-parse", "main") == tip
    assert git(repo, "status", "--porcelain") == ""
    assert ws.repair() == []  # the merge was aborted: nothing left half-done


def test_the_root_checkout_on_base_is_fast_forwarded_or_left_alone(repo: Path) -> None:
    """main checked out in the root: a merge fast-forwards it, keeping unrelated edits; an edit in the way holds
    the merge back (retry later), with main and the edit untouched."""
    ws = spaces(repo)
    made = ws.ensure("R1")
    commit_in(made.path, "app.txt", "line 1\nR1\nline 3\n", "R1 work")
    (repo / "scratch.txt").write_text("mine\n")
    assert ws.merge("R1").merged
    assert (repo / "app.txt").read_text() == "line 1\nR1\nline 3\n" and (repo / "scratch.txt").exists()
    made = ws.ensure("R2")
    commit_in(made.path, "app.txt", "line 1\nR2\nline 3\n", "R2 work")
    (repo / "app.txt").write_text("a person's edit\n")
    tip = git(repo, "rev-parse", "main")
    result = ws.merge("R2")
    assert not result.merged and result.retry and "checked out in" in result.note
    assert git(repo, "rev-parse", "main") == tip and (repo / "app.txt").read_text() == "a person's edit\n"


@pytest.mark.parametrize("strategy", ["ff", "rebase"])
def test_fast_forward_and_rebase(repo: Path, strategy: str) -> None:
    """ff refuses once base moved on; rebase replays the task's commits on top of it."""
    ws = spaces(repo)
    for task in ("S1", "S2"):
        made = ws.ensure(task)
        commit_in(made.path, f"{task}.txt", "x\n", f"{task} work")
    assert ws.merge("S1", strategy).merged
    second = ws.merge("S2", strategy)
    if strategy == "ff":
        assert not second.merged and "not a fast-forward" in second.note
    else:
        assert second.merged and git(repo, "log", "--format=%s", "-2", "main").splitlines() == ["S2 work", "S1 work"]


def test_a_rebase_leaves_the_tasks_worktree_on_the_rebased_branch_and_clean(repo: Path) -> None:
    """After a rebase merge the task's own worktree (its branch checked out there) shows the rebased commit and no
    phantom changes, so the next role working there starts clean."""
    ws = spaces(repo)
    for task in ("R1", "R2"):
        made = ws.ensure(task)
        commit_in(made.path, f"{task}.txt", "x\n", f"{task} work")
    assert ws.merge("R1", "rebase").merged
    assert ws.merge("R2", "rebase").merged
    path = ws.path_of("R2")
    assert git(path, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert git(path, "status", "--porcelain") == ""
    assert (path / "R1.txt").exists()


def test_a_half_made_worktree_is_made_again(repo: Path) -> None:
    """A daemon killed inside git worktree add leaves a registered worktree without the ready marker: it is
    removed and made again from the branch, never used half-checked-out."""
    ws = spaces(repo)
    made = ws.ensure("H1")
    (made.path / "app.txt").unlink()  # what an interrupted checkout looks like
    again = ws.ensure("H1")
    assert again.created and (again.path / "app.txt").exists()


def test_repair_aborts_a_merge_left_half_done_and_prunes_lost_worktrees(repo: Path) -> None:
    """A merge interrupted in the integration worktree is aborted; a worktree folder deleted by hand is pruned."""
    ws = spaces(repo)
    for task in ("M1", "M2"):
        made = ws.ensure(task)
        commit_in(made.path, "app.txt", f"{task}\n", f"{task} work")
    assert ws.merge("M1").merged
    integration = repo / ".agentd/worktrees/.integration"
    done = subprocess.run(["git", "merge", "--no-ff", "agentd/M2"], cwd=integration, capture_output=True, check=False)
    assert done.returncode != 0  # a conflict left in place, as a killed daemon would
    shutil.rmtree(repo / ".agentd/worktrees/M2")
    actions = ws.repair()
    assert any("aborted a merge" in line for line in actions) and any("pruned" in line for line in actions)
    assert ws.merge("M2").conflicts == ("app.txt",)


def test_someone_elses_folder_at_a_worktree_path_is_never_deleted(repo: Path) -> None:
    """A folder with a person's files where a worktree should go is refused, not removed."""
    ws = spaces(repo)
    folder = repo / ".agentd/worktrees/P1"
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me\n")
    with pytest.raises(WorkspaceError, match="not a worktree agentd made"):
        ws.ensure("P1")
    assert (folder / "precious.txt").read_text() == "keep me\n"


def test_ids_that_make_no_branch_and_bad_settings_are_named() -> None:
    """git refuses A..B and x.lock as branch names: the task is refused saying why; bad settings name their key."""
    assert branch_problem("agentd/A..B") and branch_problem("agentd/x.lock") and branch_problem("agentd/v1.")
    assert branch_problem("agentd/B-1.2_x") is None
    with pytest.raises(ValueError, match="git refuses"):
        WorkspaceSettings(mode="worktree").branch_for("A..B")
    for spec, key in (
        ({"mode": "copy"}, "mode"),
        ({"path": "/abs/{task_id}"}, "path"),
        ({"branch": "x"}, "branch"),
        ({"keep": "maybe"}, "keep"),
        ({"path": "../out/{task_id}"}, "path"),
    ):
        with pytest.raises(WorkspacesInvalid) as caught:
            WorkspaceSettings.from_config(spec)
        assert caught.value.key == key


def test_the_base_branch_must_exist(repo: Path) -> None:
    """A base that is not there is named."""
    with pytest.raises(WorkspaceError, match="base branch 'trunk' does not exist"):
        spaces(repo, base="trunk").ensure("B1")
