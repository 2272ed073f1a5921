"""The rule on which lock files a killed git left agentd may remove (agentd.core.gitlocks), case by case."""

from __future__ import annotations

from agentd.core.gitlocks import LockFile, Seen, decide

SINCE = 1_000


def one(lock: LockFile, **seen: object) -> tuple[bool, str]:
    verdict = decide(Seen([lock], **seen))[0]  # type: ignore[arg-type]
    return verdict.remove, verdict.why


def test_a_lock_made_during_unfinished_agentd_git_work_goes_when_nothing_can_own_it() -> None:
    assert one(LockFile("HEAD.lock", SINCE), since_ns=SINCE) == (
        True,
        "left by agentd's git work that ended without cleaning up",
    )


def test_a_lock_older_than_that_work_or_with_no_such_work_stays() -> None:
    for since in (SINCE, None):
        remove, why = one(LockFile("index.lock", SINCE - 1), since_ns=since)
        assert not remove and why.startswith("agentd's git work did not make it")


def test_a_running_git_a_holder_or_an_unseen_process_keeps_it() -> None:
    lock = LockFile("HEAD.lock", SINCE + 5)
    assert one(lock, since_ns=SINCE, gits=["12 git"]) == (False, "git is running in the repository (12 git)")
    assert one(lock, since_ns=SINCE, holders={"HEAD.lock": "7 gitui"}) == (False, "process 7 gitui has it open")
    assert one(lock, since_ns=SINCE, hidden=2)[0] is False


def test_a_reused_worktree_s_lock_goes_only_when_that_worktree_is_idle() -> None:
    lock = LockFile("worktrees/R1/index.lock", 5, worktree="/p/R1")
    assert one(lock, since_ns=None, reused=frozenset({"/p/R1"})) == (
        True,
        "left in the worktree of /p/R1 by a run that was ended",
    )
    assert one(lock, since_ns=None, reused=frozenset({"/p/R2"}))[0] is False
    assert one(lock, since_ns=None, reused=frozenset({"/p/R1"}), gits=["9 git"])[0] is False


def test_each_lock_is_judged_on_its_own() -> None:
    locks = [LockFile("a.lock", SINCE), LockFile("b.lock", SINCE - 10), LockFile("c.lock", SINCE + 1)]
    verdicts = decide(Seen(locks, SINCE, holders={"c.lock": "3 x"}))
    assert [(v.lock.path, v.remove) for v in verdicts] == [("a.lock", True), ("b.lock", False), ("c.lock", False)]
