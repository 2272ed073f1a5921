"""When a daemon asks its zygote for the next supervisors: at the start of the pass after the starts that used the
ones forked ahead, once that pass has gathered the ends it waits for, never right after those starts nor while it
waits (forked then, they would take a core from the supervisors still running). Real daemons, a real zygote and real
commands; only the zygote's socket is watched."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.run import daemon as daemon_module
from agentd.run import zygote as zygote_module
from agentd.run.daemon import Daemon, Mode
from agentd.run.zygote import Zygote
from tests.helpers.daemons import task, tasks_by_id, wait_for, write_config, write_queue
from tests.integration.test_zygote import CountingSocket, children_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")

GATED = 'if [ "$AGENTD_TASK_ID" = A ]; then while [ ! -e gate ]; do sleep 0.02; done; fi'
GATED_EACH = 'while [ ! -e "gate-$AGENTD_TASK_ID" ]; do sleep 0.02; done'  # (each task waits for its own gate)
BUILDER = {"claims": "ready", "working": "in_progress", "on_success": "done", "command": ["sh", "-c", GATED]}


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Zygote, CountingSocket]]:
    """This process's default zygote, a fresh one, with one supervisor forked ahead (as a daemon's start asks) before
    its socket is watched. Its supervisors run one task each (AGENTD_SUPERVISOR_REUSE=0): these tests are about the
    spares asked for ahead, which a reused supervisor makes needless."""
    monkeypatch.setenv("AGENTD_SUPERVISOR_REUSE", "0")
    z = Zygote()
    monkeypatch.setattr(zygote_module, "_default", z)
    try:
        z.prestart(1)
        wait_for(lambda: z.pid is not None and len(children_of(z.pid)) == 1, 60, "the spare forked ahead")
        counting = CountingSocket(z._sock)
        z._sock = counting  # type: ignore[assignment]
        yield z, counting
    finally:
        z.close()


def test_a_pass_asks_for_no_spare_after_its_starts_and_the_next_asks_for_all(
    tmp_path: Path, watched: tuple[Zygote, CountingSocket]
) -> None:
    """The pass that starts A uses the spare forked ahead and asks for nothing; its successor is asked for, in one
    request, when the daemon next works (Executor.replenish at the top of its loop)."""
    _z, counting = watched
    write_config(tmp_path, {"builder": BUILDER})
    write_queue(tmp_path, [task("A")], {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert daemon.tick().claimed == ["A"]
    assert counting.asked == [], "a spare was asked for right after the start, while A's supervisor starts"
    daemon.executor.replenish()
    assert counting.asked == [b"S1"]
    daemon.executor.replenish()  # (none missing: nothing asked)
    assert counting.asked == [b"S1"]
    (tmp_path / "gate").touch()
    wait_for(lambda: daemon.tick().finished, 60, "A to be recorded")
    assert tasks_by_id(tmp_path)["A"]["status"] == "done"


def test_a_chain_runs_every_task_in_a_spare_asked_for_ahead(
    tmp_path: Path, watched: tuple[Zygote, CountingSocket]
) -> None:
    """A draining daemon over a chain: each task after the first runs in a spare its pass asked for when it began
    (``S1``), none in one forked on demand at its start (``S``: what a daemon that never asked would do)."""
    _z, counting = watched
    (tmp_path / "gate").touch()
    write_config(tmp_path, {"builder": BUILDER})
    chain = [task("A"), task("B", dependencies=["A"]), task("C", dependencies=["B"])]
    write_queue(tmp_path, chain, {"builder": 1})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert daemon.run(Mode.DRAIN) == 0
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    assert b"S" not in counting.sent, counting.sent
    assert counting.asked.count(b"S1") >= 2, counting.sent


def test_the_spares_are_asked_for_once_the_pass_has_gathered_its_ends_not_while_it_waits(
    tmp_path: Path, watched: tuple[Zygote, CountingSocket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A draining daemon runs A and B, each held by its own gate. A ends first; the pass that is to record it holds
    for B (the group commit, made here to hold for as long as B runs). Until B ends no spare is asked for, though
    A's end is collected; once B has ended, the spares for both are asked for in one request. (Asked for at the top
    of the loop, as before, the request came as soon as the daemon woke for A's end, while B still ran.)"""
    _z, counting = watched
    monkeypatch.setattr(daemon_module, "group_hold", lambda _took, ended, running: 600.0 if ended and running else 0.0)
    write_config(tmp_path, {"builder": {**BUILDER, "command": ["sh", "-c", GATED_EACH]}})
    write_queue(tmp_path, [task("A"), task("B")], {"builder": 2})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", concurrency=2, watch=False)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(daemon.run(Mode.DRAIN)), daemon=True)
    runner.start()
    try:
        wait_for(
            lambda: all((run := daemon.running.get(t)) is not None and run.proc is not None for t in "AB"),
            60,
            "A and B started",
        )
        counting.sent.clear()  # (the spares asked for as the daemon began: not this test's concern)
        (tmp_path / "gate-A").touch()
        wait_for(lambda: (run := daemon.running.get("A")) is not None and run.exit is not None, 60, "A's end seen")
        assert counting.asked == [], f"spares asked for while the pass waited for B: {counting.sent}"
    finally:
        (tmp_path / "gate-A").touch()
        (tmp_path / "gate-B").touch()
        runner.join(timeout=120)
    assert codes == [0]
    assert counting.asked[:1] == [b"S2"], counting.sent
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}


def test_a_daemon_without_concurrency_keeps_as_many_spares_forked_as_its_wip_limit(
    tmp_path: Path, watched: tuple[Zygote, CountingSocket]
) -> None:
    """No --concurrency: the queue's wip_limits (3) say how many tasks a pass may start, so as many supervisors are
    kept forked ahead. Three waves of three tasks (each wave depends on the whole previous one, so each starts in one
    pass): the first wave's pass learns the limit only as it reads the queue, and forks two of its supervisors on
    demand (``S``); the next passes find three waiting (``S3`` asked for after the first wave), and fork none.
    (With one spare kept, whatever the limit, each wave forked two on demand.)"""
    _z, counting = watched
    (tmp_path / "gate").touch()
    write_config(tmp_path, {"builder": BUILDER})
    waves = [[f"W{w}T{i}" for i in range(3)] for w in range(3)]
    tasks = [task(t, dependencies=waves[w - 1] if w else []) for w, wave in enumerate(waves) for t in wave]
    write_queue(tmp_path, tasks, {"builder": 3})
    daemon = Daemon(config_mod.load(root=tmp_path, environ={}), "builder", watch=False)
    assert daemon.concurrency is None
    assert daemon.run(Mode.DRAIN) == 0
    assert {t["status"] for t in tasks_by_id(tmp_path).values()} == {"done"}
    assert counting.sent.count(b"S") == 2, counting.sent
    assert counting.asked[2:3] == [b"S3"], counting.sent
