"""Lock files a killed git leaves in a repository: agentd clears what its own killed git work left, and never what a
running git, a person's, may still use.

Every git here is real, and killed the way agentd kills a task's process group: SIGKILL to the whole group while
git holds its locks. git is held at the right instant by its own extension points (a ``reference-transaction``
hook while its ref locks are taken, a smudge filter while ``git worktree add`` checks out, an editor while ``git
commit`` holds the index), which signal a file and wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.workspaces.manager import Workspaces
from agentd.workspaces.settings import WorkspaceSettings
from tests.helpers.gitrepo import GIT_ENV, git, hold_next_update, new_repo

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see git's processes")

WAIT = 60.0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return new_repo(tmp_path, "line 1\nline 2\nline 3\n", ".agentd/\n")


def spaces(root: Path) -> Workspaces:
    return Workspaces(root, WorkspaceSettings.from_config({"mode": "worktree"}), root / ".agentd")


def commit_in(path: Path, name: str, text: str, message: str) -> None:
    (path / name).write_text(text)
    git(path, "add", name)
    git(path, "commit", "-qm", message)


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists (what the held git writes once it holds its locks); fails if ``proc`` ends first."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert proc.poll() is None, f"the process ended ({proc.returncode}) before it was held"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's whole group, as agentd ends a task's run."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT)


def lock_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in (root / ".git").rglob("*.lock"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # (not a group's leader: one started in this process's group)
                proc.kill()
            proc.wait()


def python(
    procs: list[subprocess.Popen[bytes]], code: str, *args: str, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """``code`` in a Python process of its own session (a process group, as a task's run)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env={**os.environ, **GIT_ENV}, start_new_session=True, cwd=cwd
    )
    procs.append(proc)
    return proc


def person(
    procs: list[subprocess.Popen[bytes]], cwd: Path, editor: Path, *args: str, own_group: bool = True
) -> subprocess.Popen[bytes]:
    """A person's ``git commit`` whose editor stays open until it is told to close (in a process group of its own,
    unless ``own_group`` is False: then in this process's, as a git an agent left running is in its run's)."""
    proc = subprocess.Popen(
        ["git", "commit", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV, "GIT_EDITOR": f"sh {editor}"},
        start_new_session=own_group,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    procs.append(proc)
    return proc


def editor(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """An editor script: signals ``open`` and waits for ``close`` (the person closing it)."""
    opened, close = tmp_path / f"{name}.open", tmp_path / f"{name}.close"
    script = tmp_path / f"{name}.sh"
    script.write_text(
        f': > "{opened}"\nn=0\nwhile [ ! -e "{close}" ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done\n'
        'echo edited > "$1"\n'
    )
    return script, opened, close


MERGE = (
    "import sys; from pathlib import Path;"
    "from agentd.workspaces.manager import Workspaces;"
    "from agentd.workspaces.settings import WorkspaceSettings;"
    "root = Path(sys.argv[1]);"
    "ws = Workspaces(root, WorkspaceSettings.from_config({'mode': 'worktree'}), root / '.agentd');"
    "print(ws.merge(sys.argv[2]))"
)


def kill_merge_at(repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]], ref: str) -> list[str]:
    """M1's branch has a commit; its merge (a process of its own) is killed once a git of it holds the locks of an
    update of ``ref``. Returns the lock files left."""
    ws = spaces(repo)
    made = ws.ensure("M1")
    ws.mark_ready("M1")
    commit_in(made.path, "app.txt", "M1 was here\n", "M1 work")
    held = tmp_path / "held"
    hold_next_update(repo, ref, tmp_path / "hold", held)
    merging = python(procs, MERGE, str(repo), "M1")
    wait_for(held, merging)
    kill_group(merging)
    return lock_files(repo)


def killed_merge(repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    """M1's merge killed while git fast-forwards main in the root checkout, holding its ref locks. Returns M1's
    tip."""
    assert kill_merge_at(repo, tmp_path, procs, "refs/heads/main"), "the killed git left no lock file"
    stuck = subprocess.run(["git", "merge", "--ff-only", "agentd/M1"], cwd=repo, capture_output=True, text=True)
    assert stuck.returncode != 0 and "File exists" in stuck.stderr  # the repository is stuck until the lock goes
    return git(repo, "rev-parse", "agentd/M1")


def test_a_merge_killed_while_git_holds_its_locks_is_finished_by_the_next(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The next merge finds the mark agentd's killed git work left, removes the lock files made since, and merges:
    main and the root checkout have M1's work, no lock file is left, and the removal is reported."""
    tip = killed_merge(repo, tmp_path, procs)
    ws = spaces(repo)
    result = ws.merge("M1")
    assert result.merged, result.note
    assert git(repo, "merge-base", "--is-ancestor", tip, "main") == ""
    assert (repo / "app.txt").read_text() == "M1 was here\n" and git(repo, "status", "--porcelain") == ""
    assert lock_files(repo) == []
    cleared = ws.take_cleared()
    assert cleared and all("removed the git lock file" in line for line in cleared)
    assert not (repo / ".agentd/workspaces/git.busy").exists()  # the work ended cleanly: no mark left


@pytest.mark.parametrize("own_group", [True, False], ids=["its-own-group", "this-process-group"])
def test_a_lock_a_running_git_may_own_stays_until_that_git_ends(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]], own_group: bool
) -> None:
    """After a killed merge, an agent's ``git commit -a`` is open in its editor in another task's worktree (holding
    that worktree's index lock, made after the killed work began), in a process group of its own or in the merging
    process's own (as a git an agent left running is in its run's). The next merge removes nothing and waits, saying
    why; the agent's commit then succeeds, and the merge after it goes through."""
    other = spaces(repo).ensure("M2")
    (other.path / "app.txt").write_text("M2 is working\n")
    tip = killed_merge(repo, tmp_path, procs)
    script, opened, close = editor(tmp_path, "agent")
    committing = person(procs, other.path, script, "-a", own_group=own_group)
    wait_for(opened, committing)
    before = lock_files(repo)
    assert ".git/worktrees/M2/index.lock" in before and ".git/refs/heads/main.lock" in before
    waiting = spaces(repo).merge("M1")
    assert not waiting.merged and waiting.retry
    assert "git is running in the repository" in waiting.note, waiting.note
    assert lock_files(repo) == before
    close.write_text("")
    assert committing.wait(timeout=WAIT) == 0
    assert git(repo, "show", "agentd/M2:app.txt") == "M2 is working"
    result = spaces(repo).merge("M1")
    assert result.merged, result.note
    assert git(repo, "merge-base", "--is-ancestor", tip, "main") == ""
    assert lock_files(repo) == []


def test_a_lock_no_agentd_git_made_is_left_to_its_owner_and_named(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A person's ``git commit`` killed in the root checkout leaves ``index.lock``. No agentd git work was under way
    then: the merge waits, names the file and says why it stays, and the file stays."""
    ws = spaces(repo)
    made = ws.ensure("M1")
    commit_in(made.path, "app.txt", "M1 was here\n", "M1 work")
    (repo / ".gitignore").write_text(".agentd/\n*.tmp\n")
    script, opened, _ = editor(tmp_path, "person")
    committing = person(procs, repo, script, "-a")
    wait_for(opened, committing)
    kill_group(committing)
    assert lock_files(repo) == [".git/index.lock"]
    result = spaces(repo).merge("M1")
    assert not result.merged and result.retry
    assert "index.lock stays: agentd's git work did not make it" in result.note, result.note
    assert lock_files(repo) == [".git/index.lock"]


def test_a_worktree_add_killed_while_it_checks_out_is_made_again(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """``git worktree add`` killed during its checkout leaves the worktree registered and locked ("initializing"),
    which ``git worktree remove --force`` refuses. The next claim removes it and makes it again."""
    flag, held = tmp_path / "hold", tmp_path / "held"
    filter_script = tmp_path / "smudge.sh"
    filter_script.write_text(f'if [ -e "{flag}" ]; then rm -f "{flag}"; : > "{held}"; exec sleep 600; fi\nexec cat\n')
    git(repo, "config", "filter.hold.smudge", f"sh {filter_script}")
    git(repo, "config", "filter.hold.clean", "cat")
    (repo / ".gitattributes").write_text("app.txt filter=hold\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-qm", "attributes")
    flag.write_text("")
    ensure = (
        "import sys; from pathlib import Path;"
        "from agentd.workspaces.manager import Workspaces;"
        "from agentd.workspaces.settings import WorkspaceSettings;"
        "root = Path(sys.argv[1]);"
        "Workspaces(root, WorkspaceSettings.from_config({'mode': 'worktree'}), root / '.agentd').ensure('W1')"
    )
    making = python(procs, ensure, str(repo))
    wait_for(held, making)
    kill_group(making)
    assert "locked initializing" in git(repo, "worktree", "list", "--porcelain")
    made = spaces(repo).ensure("W1")
    assert made.created and (made.path / "app.txt").read_text() == "line 1\nline 2\nline 3\n"
    assert "locked" not in git(repo, "worktree", "list", "--porcelain")
    assert git(made.path, "status", "--porcelain") == ""


def test_a_worktree_a_person_locked_is_not_removed(repo: Path) -> None:
    """A worktree someone locked on purpose (``git worktree lock``) is never forced away: the error says how."""
    ws = spaces(repo)
    made = ws.ensure("L1")  # no ready marker: the next ensure would make it again
    git(repo, "worktree", "lock", "--reason", "mine", str(made.path))
    with pytest.raises(Exception, match=r"is locked \(mine\): `git worktree unlock"):
        ws.ensure("L1")
    assert made.path.exists() and "locked mine" in git(repo, "worktree", "list", "--porcelain")


def test_an_agent_s_git_killed_with_its_run_is_cleared_when_the_worktree_is_reused(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """An agent's ``git commit`` in its task's worktree is killed with the run (the index's lock stays in the
    worktree's admin folder). While a process still works in that worktree the lock stays; once none does, the
    next run's reuse of the worktree removes it, and the agent can commit again."""
    ws = spaces(repo)
    made = ws.ensure("R1")
    ws.mark_ready("R1")
    (made.path / "app.txt").write_text("R1 was here\n")
    script, opened, _ = editor(tmp_path, "agent")
    committing = person(procs, made.path, script, "-a")
    wait_for(opened, committing)
    kill_group(committing)
    left = lock_files(repo)
    assert left == [".git/worktrees/R1/index.lock"]
    lingering = subprocess.Popen(["sleep", "600"], cwd=made.path, start_new_session=True)
    procs.append(lingering)  # (a Popen of bytes)
    again = spaces(repo).ensure("R1")
    assert not again.created and lock_files(repo) == left  # something still works there: left alone
    kill_group(lingering)
    reuse = spaces(repo)
    assert not reuse.ensure("R1").created
    assert lock_files(repo) == []
    assert any("worktree of" in line and "R1" in line for line in reuse.take_cleared())
    git(made.path, "commit", "-qam", "again")
    assert git(repo, "show", "agentd/R1:app.txt") == "R1 was here"


def test_a_lock_older_than_the_killed_work_stays_while_the_work_s_own_go(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A person's ``git commit -a`` killed in another worktree left its index lock before agentd's merge was
    killed. The next merge removes the merge's own lock files, merges, and leaves the older one to its owner."""
    other = spaces(repo).ensure("M2")
    (other.path / "app.txt").write_text("M2 is working\n")
    script, opened, _ = editor(tmp_path, "person")
    committing = person(procs, other.path, script, "-a")
    wait_for(opened, committing)
    kill_group(committing)
    theirs = ".git/worktrees/M2/index.lock"
    assert lock_files(repo) == [theirs]
    tip = killed_merge(repo, tmp_path, procs)
    assert len(lock_files(repo)) > 1
    result = spaces(repo).merge("M1")
    assert result.merged, result.note
    assert git(repo, "merge-base", "--is-ancestor", tip, "main") == ""
    assert lock_files(repo) == [theirs]


def test_a_lock_a_process_has_open_stays(repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """A program that is not git (a library's git, working from elsewhere) has one of the killed merge's lock files
    open: that file stays while it does, and the note names the program; once it ends, the merge goes through."""
    killed_merge(repo, tmp_path, procs)
    held = repo / ".git/refs/heads/main.lock"
    opened = tmp_path / "opened"
    holder = python(
        procs,
        "import sys, time; f = open(sys.argv[1]); open(sys.argv[2], 'w').close(); time.sleep(600)",
        str(held),
        str(opened),
        cwd="/",
    )
    wait_for(opened, holder)
    waiting = spaces(repo).merge("M1")
    assert not waiting.merged and f"process {holder.pid} python" in waiting.note, waiting.note
    assert ".git/refs/heads/main.lock" in lock_files(repo)
    kill_group(holder)
    assert spaces(repo).merge("M1").merged and lock_files(repo) == []


def test_a_worktree_whose_git_file_points_by_a_relative_path_is_cleared_too(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A worktree's ``.git`` file may name its admin folder relative to the worktree (git's relative worktree paths):
    an agent's killed commit there is cleared on reuse as with an absolute one."""
    ws = spaces(repo)
    made = ws.ensure("R2")
    ws.mark_ready("R2")
    admin = Path(git(made.path, "rev-parse", "--git-dir"))
    (made.path / ".git").write_text(f"gitdir: {os.path.relpath(admin, made.path)}\n")
    assert git(made.path, "rev-parse", "--abbrev-ref", "HEAD") == "agentd/R2"  # (git reads it)
    (made.path / "app.txt").write_text("R2 was here\n")
    script, opened, _ = editor(tmp_path, "agent")
    committing = person(procs, made.path, script, "-a")
    wait_for(opened, committing)
    kill_group(committing)
    assert lock_files(repo) == [".git/worktrees/R2/index.lock"]
    assert not spaces(repo).ensure("R2").created
    assert lock_files(repo) == []


def test_a_merge_killed_while_it_makes_agentd_s_integration_worktree_is_finished_by_the_next(
    repo: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The first merge's ``git worktree add`` of agentd's integration worktree is killed while it sets the new
    worktree's HEAD (its lock taken, the worktree still locked "initializing"). The next merge removes the lock,
    reuses or remakes the integration worktree, and merges."""
    left = kill_merge_at(repo, tmp_path, procs, "HEAD")
    assert left and all(".integration" in lock or "-integration" in lock for lock in left), left
    result = spaces(repo).merge("M1")
    assert result.merged, result.note
    assert (repo / "app.txt").read_text() == "M1 was here\n"
    assert lock_files(repo) == []
    integration = repo / ".agentd/worktrees/.integration"
    assert git(integration, "status", "--porcelain") == ""


def test_git_work_nested_in_the_same_thread_keeps_the_outer_mark(repo: Path) -> None:
    """The git lock is re-entrant in a thread: git work nested in other git work leaves the outer work's mark in
    place until the outer work ends (else a git killed after the inner work would leave locks no mark covers)."""
    ws = spaces(repo)
    busy = repo / ".agentd/workspaces/git.busy"
    with ws.locked():
        since = busy.stat().st_mtime_ns
        with ws.locked():
            assert busy.stat().st_mtime_ns == since
        assert busy.exists() and busy.stat().st_mtime_ns == since
    assert not busy.exists()
