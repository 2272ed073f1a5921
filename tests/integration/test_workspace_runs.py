"""Worktree mode end to end: real daemons run real agents, each in its task's git worktree, merged back safely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_agentd
from tests.helpers.daemons import start, stop_all, task, tasks_by_id, wait_for, write_config, write_queue
from tests.helpers.gitrepo import GIT_ENV, git, hold_next_update, new_repo

pytestmark = pytest.mark.slow

AGENT = Path(__file__).resolve().parents[1] / "helpers" / "git_agent.py"
FAST = {"backoff": {"initial": 0, "factor": 1, "max": 0}, "interval": 0.5}
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test"}
TESTER = {"claims": "awaiting_test", "working": "testing", "on_success": "ready_for_integrator"}
WT = {"mode": "worktree"}
INTEGRATOR = {"claims": "ready_for_integrator", "working": "integrating", "on_success": "done"}


def agent(log: Path, *args: str) -> list[str]:
    return [sys.executable, str(AGENT), str(log), *args]


def records(log: Path, event: str = "end") -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [r for r in (json.loads(line) for line in log.read_text().splitlines() if line) if r["event"] == event]


def journal(root: Path, event: str) -> list[dict[str, Any]]:
    path = root / ".agentd" / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in (json.loads(line) for line in lines) if r["event"] == event]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git project on main, agentd's own files ignored (the queue, leases, state), one committed file."""
    root = new_repo(
        tmp_path, "line 1\nline 2\nline 3\n", ".agentd/\n.leases/\nSPRINT_QUEUE.json*\nagentd.toml\n*.err\n"
    )
    return root


def drain(root: Path, role: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = run_agentd("--role", role, "--drain", cwd=root, env=GIT_ENV, timeout=timeout)
    assert done.returncode in (0, 1), (role, done.returncode, done.stderr)
    return done


def test_four_builders_edit_the_same_file_each_in_its_own_worktree(repo: Path, tmp_path: Path) -> None:
    """Four runs at once each commit to app.txt in its own worktree and branch; the root checkout stays clean."""
    log = tmp_path / "runs.jsonl"
    write_config(repo, {"builder": {**BUILDER, "command": agent(log, "--wait-for", "4")}}, defaults=FAST, workspaces=WT)
    write_queue(repo, [task(f"B{i}") for i in range(1, 5)], {"builder": 4})
    before = (repo / "app.txt").read_bytes()
    drain(repo, "builder")
    ends = records(log)
    assert sorted(r["task"] for r in ends) == ["B1", "B2", "B3", "B4"], ends
    assert len({r["cwd"] for r in ends}) == 4
    for r in ends:
        expected = repo / ".agentd" / "worktrees" / r["task"]
        assert Path(r["cwd"]) == expected and r["workspace"] == str(expected), r
        assert r["branch"] == r["branch_env"] == f"agentd/{r['task']}", r
        assert git(repo, "show", f"agentd/{r['task']}:app.txt").endswith(f"{r['task']} builder {r['token']}")
    assert (repo / "app.txt").read_bytes() == before
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert {t["status"] for t in tasks_by_id(repo).values()} == {"awaiting_test"}


def test_a_tester_failure_returns_the_task_to_the_builder_in_the_same_worktree(repo: Path, tmp_path: Path) -> None:
    """Builder commits, tester fails (back to ready), builder commits again on the same branch in the same folder;
    once the task is done its worktree is removed and its branch kept."""
    log = tmp_path / "runs.jsonl"
    roles = {
        "builder": {**BUILDER, "command": agent(log)},
        "tester": {**TESTER, "on_success": "done", "outcomes": {"1": "ready"}, "command": agent(log, "--fail-first")},
    }
    write_config(repo, roles, defaults=FAST, workspaces={**WT, "keep": "on-failure"})
    write_queue(repo, [task("B1")], {"builder": 1, "tester": 1})
    drain(repo, "builder")
    drain(repo, "tester")
    assert tasks_by_id(repo)["B1"]["status"] == "ready"
    drain(repo, "builder")
    drain(repo, "tester")
    assert tasks_by_id(repo)["B1"]["status"] == "done"
    runs = records(log)
    assert [r["role"] for r in runs] == ["builder", "tester", "builder", "tester"], runs
    assert len({r["cwd"] for r in runs}) == 1
    builds = [r["head"] for r in runs if r["role"] == "builder"]
    assert git(repo, "merge-base", "--is-ancestor", builds[0], builds[1]) == ""  # the first run's commit is kept
    history = git(repo, "log", "--format=%s", "agentd/B1").splitlines()
    assert [line for line in history if "builder" in line] == [
        f"B1: builder run {runs[2]['token']}",
        f"B1: builder run {runs[0]['token']}",
    ]
    assert not Path(runs[0]["cwd"]).exists()
    assert journal(repo, "workspace-removed")
    assert git(repo, "rev-parse", "--verify", "agentd/B1")
    assert git(repo, "status", "--porcelain") == ""


def built(repo: Path, log: Path, ids: list[str], *agent_args: str, **workspaces: Any) -> None:
    """Tasks built on their branches (each commits to ``{task_id}.txt`` unless told otherwise), ready to merge."""
    roles = {
        "builder": {**BUILDER, "on_success": "ready_for_integrator", "command": agent(log, *agent_args)},
        "integrator": {**INTEGRATOR, "command": agent(log, "--no-commit")},
    }
    write_config(repo, roles, defaults=FAST, workspaces={**WT, **workspaces})
    write_queue(repo, [task(i) for i in ids], {"builder": len(ids), "integrator": len(ids)})
    drain(repo, "builder")
    assert {t["status"] for t in tasks_by_id(repo).values()} == {"ready_for_integrator"}


def test_three_integrators_merge_in_parallel_without_losing_a_commit(repo: Path, tmp_path: Path) -> None:
    """Three integrator daemons merge three branches at once: main ends with every task's commit."""
    log = tmp_path / "runs.jsonl"
    ids = ["M1", "M2", "M3"]
    built(repo, log, ids, "--file", "{task_id}.txt")
    tips = {i: git(repo, "rev-parse", f"agentd/{i}") for i in ids}
    daemons = [start(repo, "integrator", "--concurrency", "1", env=GIT_ENV) for _ in range(3)]
    try:
        wait_for(
            lambda: {t["status"] for t in tasks_by_id(repo).values()} == {"done"}, 120, "every task merged and done"
        )
    finally:
        stop_all(daemons)
    for i, tip in tips.items():
        git(repo, "merge-base", "--is-ancestor", tip, "main")  # raises when the commit is not in main
        assert (repo / f"{i}.txt").read_text().startswith(f"{i} builder")  # the root's checkout was moved along
    assert len(journal(repo, "merged")) == 3
    assert len({r["pid"] for r in journal(repo, "started") if r["role"] == "integrator"}) >= 1
    assert git(repo, "status", "--porcelain") == ""


def test_a_conflicting_merge_goes_to_needs_adapt_and_leaves_base_alone(repo: Path, tmp_path: Path) -> None:
    """Two branches change the same line: the first merges, the second goes to needs_adapt naming app.txt, base
    stays where the first merge put it, and no merge is left half-done anywhere."""
    log = tmp_path / "runs.jsonl"
    built(repo, log, ["C1", "C2"], "--line", "{task_id} was here")
    write_queue(repo, [task("C1", "ready_for_integrator"), task("C2", "ready_for_integrator")], {"integrator": 1})
    drain(repo, "integrator")
    final = tasks_by_id(repo)
    assert final["C1"]["status"] == "done", final
    assert final["C2"]["status"] == "needs_adapt", final
    assert "merge conflict in app.txt" in final["C2"]["status_note"]
    conflicts = journal(repo, "merge-conflict")
    assert [(r["task"], r["paths"]) for r in conflicts] == [("C2", ["app.txt"])]
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", "HEAD")
    git(repo, "merge-base", "--is-ancestor", "agentd/C1", "main")
    assert subprocess.run(["git", "merge-base", "--is-ancestor", "agentd/C2", "main"], cwd=repo).returncode != 0
    assert (repo / "app.txt").read_text().endswith("C1 was here\n")
    assert git(repo, "status", "--porcelain") == ""
    integration = repo / ".agentd" / "worktrees" / ".integration"
    assert git(integration, "status", "--porcelain") == ""
    assert (repo / ".agentd" / "worktrees" / "C2").is_dir()  # still there for the refiner


SETUP = [sys.executable, "-c", "open('.setup-runs', 'a').write('setup\\n')"]


@pytest.mark.parametrize("point", ["workspace.after-add", "workspace.after-setup"])
def test_sigkill_while_making_a_worktree_is_repaired_on_the_next_run(point: str, repo: Path, tmp_path: Path) -> None:
    """Killed after `git worktree add` or after setup, before the ready mark: the next run makes the worktree
    again, runs setup once in it, and the task completes; git knows no stray worktree."""
    log = tmp_path / "runs.jsonl"
    roles = {"builder": {**BUILDER, "command": agent(log)}}
    write_config(repo, roles, defaults=FAST, workspaces={**WT, "setup": SETUP})
    write_queue(repo, [task("K1")], {"builder": 1})
    crashed = run_agentd("--role", "builder", "--once", cwd=repo, env={**GIT_ENV, "AGENTD_CRASH_AT": f"{point}:kill"})
    assert crashed.returncode == 1, crashed.stderr
    assert tasks_by_id(repo)["K1"]["last_run"]["outcome"] == "crash"
    assert records(log) == []  # the command never ran
    assert not (repo / ".agentd" / "workspaces" / "K1.ready").exists()
    drain(repo, "builder")
    assert tasks_by_id(repo)["K1"]["status"] == "awaiting_test"
    path = repo / ".agentd" / "worktrees" / "K1"
    assert (path / ".setup-runs").read_text() == "setup\n"
    assert (repo / ".agentd" / "workspaces" / "K1.ready").exists()
    listed = git(repo, "worktree", "list", "--porcelain").count("worktree ")
    assert listed == 2 and git(repo, "worktree", "prune", "--dry-run", "-v") == ""
    assert [r["cwd"] for r in records(log)] == [str(path)]


@pytest.mark.parametrize("point", ["merge.before-base-move", "merge.after-base-move"])
def test_sigkill_while_merging_is_repaired_on_the_next_run(point: str, repo: Path, tmp_path: Path) -> None:
    """Killed with the merge made but base not moved, or base moved but the outcome not recorded: the next run
    merges (or finds the branch already in base) and the task is done with exactly one merge in main."""
    log = tmp_path / "runs.jsonl"
    built(repo, log, ["G1"], "--file", "{task_id}.txt")
    env = {**GIT_ENV, "AGENTD_CRASH_AT": f"{point}:kill"}
    crashed = run_agentd("--role", "integrator", "--once", cwd=repo, env=env)
    assert crashed.returncode == 1, crashed.stderr
    assert tasks_by_id(repo)["G1"]["status"] == "ready_for_integrator"
    moved = subprocess.run(["git", "merge-base", "--is-ancestor", "agentd/G1", "main"], cwd=repo).returncode == 0
    assert moved == (point == "merge.after-base-move")
    drain(repo, "integrator")
    assert tasks_by_id(repo)["G1"]["status"] == "done"
    git(repo, "merge-base", "--is-ancestor", "agentd/G1", "main")
    assert git(repo, "log", "--merges", "--format=%s", "main").splitlines() == ["Merge agentd/G1 (task G1)"]
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo / ".agentd" / "worktrees" / ".integration", "status", "--porcelain") == ""


def test_a_run_killed_while_its_git_holds_the_base_s_locks_is_merged_by_the_next(repo: Path, tmp_path: Path) -> None:
    """The integrator's git is fast-forwarding main in the root checkout, its ref locks taken (a reference-transaction
    hook holds it there), when the run's process group is SIGKILLed: git's lock files stay and every git that
    updates main would fail. The next run removes them (journalled) and merges: the task is done, main has its work,
    and no lock file is left."""
    log = tmp_path / "runs.jsonl"
    built(repo, log, ["H1"], "--file", "{task_id}.txt")
    held = tmp_path / "held"
    hold_next_update(repo, "refs/heads/main", tmp_path / "hold", held)
    daemon = start(repo, "integrator", env=GIT_ENV)
    try:
        wait_for(held.exists, 60, "the merge's git to hold main's locks")
        stat = Path(f"/proc/{held.read_text().strip()}/stat").read_text()
        os.killpg(int(stat[stat.rfind(")") + 2 :].split()[2]), signal.SIGKILL)  # the run's process group
        wait_for(lambda: tasks_by_id(repo)["H1"]["status"] == "done", 60, "the next run to merge")
    finally:
        stop_all([daemon])
    git(repo, "merge-base", "--is-ancestor", "agentd/H1", "main")
    assert (repo / "H1.txt").exists() and git(repo, "status", "--porcelain") == ""
    assert sorted((repo / ".git").rglob("*.lock")) == []
    removed = [event["message"] for event in journal(repo, "workspace-repaired")]
    assert any("removed the git lock file" in message and "main.lock" in message for message in removed), removed


HOLDS_LEASE = (
    "import os, sys\n"
    "lease = os.stat(sys.argv[1])\n"
    "def same(fd):\n"
    "    try:\n"
    "        info = os.stat(f'/proc/self/fd/{fd}')\n"
    "    except OSError:\n"
    "        return False\n"
    "    return (info.st_dev, info.st_ino) == (lease.st_dev, lease.st_ino)\n"
    "open(sys.argv[2], 'a').write(str(any(same(fd) for fd in os.listdir('/proc/self/fd'))) + '\\n')\n"
)


@pytest.mark.parametrize("mode", ["worktree", "none"])
def test_the_command_holds_its_lease_s_descriptor_in_a_worktree_as_without(
    mode: str, repo: Path, tmp_path: Path
) -> None:
    """The lease's locked descriptor goes down to the command (and so to what it leaves running) in worktree mode as
    without: the lock lives as long as any process of the run, and a daemon finds by it what escaped the run."""
    seen = tmp_path / "seen.txt"
    command = [sys.executable, "-c", HOLDS_LEASE, str(repo / ".leases" / "L1.json"), str(seen)]
    write_config(repo, {"builder": {**BUILDER, "command": command}}, defaults=FAST, workspaces={"mode": mode})
    write_queue(repo, [task("L1")], {"builder": 1})
    drain(repo, "builder")
    assert tasks_by_id(repo)["L1"]["status"] == "awaiting_test"
    assert seen.read_text() == "True\n"


def test_a_task_id_git_refuses_as_a_branch_fails_that_task_alone(repo: Path, tmp_path: Path) -> None:
    """Task "v1.lock" cannot have a branch: it goes to on_failure with git's reason (reported once) while "OK1" next
    to it is built; the daemon carries on and nothing is made on disk for the bad one."""
    log = tmp_path / "runs.jsonl"
    write_config(repo, {"builder": {**BUILDER, "command": agent(log)}}, defaults=FAST, workspaces=WT)
    write_queue(repo, [task("v1.lock"), task("OK1")], {"builder": 2})
    done = drain(repo, "builder")
    final = tasks_by_id(repo)
    assert final["OK1"]["status"] == "awaiting_test"
    assert final["v1.lock"]["status"] == "blocked", final["v1.lock"]
    assert "makes branch 'agentd/v1.lock', which git refuses" in final["v1.lock"]["status_note"]
    assert done.stderr.count("v1.lock' makes branch") == 1, done.stderr
    assert [r["task"] for r in records(log)] == ["OK1"]
    assert not (repo / ".agentd" / "worktrees" / "v1.lock").exists()


def test_a_base_checkout_in_the_way_waits_without_spending_an_attempt(repo: Path, tmp_path: Path) -> None:
    """The root has app.txt changed and not committed: the merge waits (merge-waiting, base unmoved), and once the
    change is gone it goes through; the task is done with no failed attempt."""
    log = tmp_path / "runs.jsonl"
    built(repo, log, ["W1"])
    (repo / "app.txt").write_text("a person's edit\n")
    before = git(repo, "rev-parse", "main")
    daemon = start(repo, "integrator", env=GIT_ENV)
    try:
        wait_for(lambda: journal(repo, "merge-waiting"), 60, "the merge to wait for the root checkout")
        assert git(repo, "rev-parse", "main") == before
        assert tasks_by_id(repo)["W1"]["status"] == "integrating"
        git(repo, "checkout", "--", "app.txt")
        wait_for(lambda: tasks_by_id(repo)["W1"]["status"] == "done", 60, "the merge once the change is gone")
    finally:
        stop_all([daemon])
    git(repo, "merge-base", "--is-ancestor", "agentd/W1", "main")
    assert not tasks_by_id(repo)["W1"].get("attempts")
    assert git(repo, "status", "--porcelain") == ""


def test_a_daemon_start_removes_worktrees_its_killed_predecessor_left(repo: Path, tmp_path: Path) -> None:
    """D1 is done and C1 cancelled but their worktrees are still there (a daemon died before removing them): the next
    daemon's start removes D1's and keeps C1's (keep = on-failure); branches stay."""
    from agentd.workspaces.manager import Workspaces
    from agentd.workspaces.settings import WorkspaceSettings

    spaces = Workspaces(repo, WorkspaceSettings.from_config(WT), repo / ".agentd")
    for task_id in ("D1", "C1"):
        spaces.ensure(task_id)
        spaces.mark_ready(task_id)
    write_config(
        repo, {"builder": {**BUILDER, "command": agent(tmp_path / "runs.jsonl")}}, defaults=FAST, workspaces=WT
    )
    write_queue(repo, [task("D1", "done"), task("C1", "cancelled")])
    done = run_agentd("--role", "builder", "--once", cwd=repo, env=GIT_ENV)
    assert done.returncode == 0, done.stderr
    assert not (repo / ".agentd" / "worktrees" / "D1").exists()
    assert (repo / ".agentd" / "worktrees" / "C1").is_dir()
    assert [r["task"] for r in journal(repo, "workspace-removed")] == ["D1"]
    assert git(repo, "rev-parse", "--verify", "agentd/D1")


def test_subtasks_share_their_parents_worktree_unless_they_have_their_own(repo: Path, tmp_path: Path) -> None:
    """S1 and S2 (subtasks of P1) commit in P1's worktree on agentd/P1; S3 ("workspace": "own") gets its own. Their
    ends do not remove P1's worktree while P1 is not final; once it is, the next daemon start does."""
    log = tmp_path / "runs.jsonl"
    roles = {"builder": {**BUILDER, "on_success": "done", "command": agent(log)}}
    write_config(repo, roles, defaults=FAST, workspaces=WT)
    subtasks = [task("S1"), task("S2"), task("S3", workspace="own")]
    write_queue(repo, [task("P1", "epic", subtasks=subtasks)], {"builder": 1})
    drain(repo, "builder")
    runs = {r["task"]: r for r in records(log)}
    shared = repo / ".agentd" / "worktrees" / "P1"
    assert Path(runs["S1"]["cwd"]) == Path(runs["S2"]["cwd"]) == shared
    assert runs["S1"]["branch"] == runs["S2"]["branch"] == "agentd/P1"
    assert runs["S3"]["branch"] == "agentd/S3" and Path(runs["S3"]["cwd"]) != shared
    assert len(git(repo, "log", "--format=%s", "main..agentd/P1").splitlines()) == 2
    assert shared.is_dir()  # P1 is not final
    assert not Path(runs["S3"]["cwd"]).exists()  # its own, and done
    assert run_agentd("queue", "set-status", "P1", "done", "--force", cwd=repo).returncode == 0
    again = run_agentd("--role", "builder", "--once", cwd=repo, env=GIT_ENV)
    assert again.returncode == 0, again.stderr
    assert not shared.exists()


def test_a_final_parent_keeps_its_worktree_while_a_subtask_works_in_it(repo: Path, tmp_path: Path) -> None:
    """P1 is done but its subtask S1 (sharing P1's worktree) is still in progress: a daemon's sweep leaves it."""
    from agentd.workspaces.manager import Workspaces
    from agentd.workspaces.settings import WorkspaceSettings

    spaces = Workspaces(repo, WorkspaceSettings.from_config(WT), repo / ".agentd")
    spaces.ensure("P1")
    spaces.mark_ready("P1")
    write_config(
        repo, {"builder": {**BUILDER, "command": agent(tmp_path / "runs.jsonl")}}, defaults=FAST, workspaces=WT
    )
    write_queue(repo, [task("P1", "done", subtasks=[task("S1", "testing")])])
    done = run_agentd("--role", "builder", "--once", cwd=repo, env=GIT_ENV)
    assert done.returncode == 0, done.stderr
    assert (repo / ".agentd" / "worktrees" / "P1").is_dir()
    assert journal(repo, "workspace-removed") == []


def test_status_names_the_branch_of_each_running_task(repo: Path, tmp_path: Path) -> None:
    """While B1 runs, `agentd status --json` gives its branch and the text view says `branch agentd/B1`."""
    log, release = tmp_path / "runs.jsonl", tmp_path / "release"
    write_config(
        repo, {"builder": {**BUILDER, "command": agent(log, "--hold", str(release))}}, defaults=FAST, workspaces=WT
    )
    write_queue(repo, [task("B1")], {"builder": 1})
    daemon = start(repo, "builder", env=GIT_ENV)
    try:

        def running() -> list[dict[str, Any]]:
            shown = run_agentd("status", "--json", cwd=repo)
            roles = json.loads(shown.stdout).get("roles", []) if shown.stdout.strip() else []
            return [t for r in roles if r.get("role") == "builder" for t in r.get("tasks") or []]

        tasks = wait_for(running, 60, "B1 to show as running")
        assert tasks[0]["id"] == "B1" and tasks[0]["branch"] == "agentd/B1", tasks
        assert "branch agentd/B1" in run_agentd("status", cwd=repo).stdout
    finally:
        release.write_text("")
        stop_all([daemon])


def test_a_workspace_that_cannot_be_made_is_a_failure_not_an_outcome(repo: Path, tmp_path: Path) -> None:
    """base = "trunk" does not exist: the tester's run fails (exit 125, not its outcomes' 1 = needs_adapt) and the
    task's note names the missing branch; the command never runs."""
    log = tmp_path / "runs.jsonl"
    tester = {**TESTER, "outcomes": {"1": "needs_adapt"}, "max_attempts": 1, "command": agent(log)}
    write_config(repo, {"tester": tester}, defaults=FAST, workspaces={**WT, "base": "trunk"})
    write_queue(repo, [task("T1", "awaiting_test")], {"tester": 1})
    drain(repo, "tester")
    final = tasks_by_id(repo)["T1"]
    assert final["status"] == "blocked", final
    assert final["last_run"]["exit_code"] == 125
    assert "'trunk' does not exist" in final["status_note"], final
    assert records(log) == []
