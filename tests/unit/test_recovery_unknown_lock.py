"""Recovery of a lease whose lock state is unknown (``locked=None``: on PostgreSQL, not renewed since the server
restarted) on a task not in a working status: a claim cut by the restart leaves one on a still-claimable task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentd.config import build
from agentd.core.model import views
from agentd.core.scheduler import LeaseObservation
from agentd.run import recovery

WORKFLOW = build({"roles": {"builder": {"command": ["true"]}}}, root=Path("/"), path=None).workflow
NOW = datetime(2026, 12, 3, 13, 57, tzinfo=UTC)
TASKS = views({"tasks": [{"id": "T0110", "status": "ready", "dependencies": []}]})


def lease(beat_age: float) -> LeaseObservation:
    return LeaseObservation(
        "T0110",
        token=27,
        role="builder",
        host="beta",
        pid=29773,
        locked=None,
        heartbeat_at=NOW - timedelta(seconds=beat_age),
        acquired=NOW - timedelta(seconds=beat_age),
        ttl=3.0,
        boot_id="another boot",
    )


def test_a_stale_lease_of_unknown_lock_on_a_ready_task_is_removed() -> None:
    """Seen in the multi-host torture: a claim's lease row committed, the server restarted before the claim's queue
    write, its daemon killed: the lease (heartbeat older than the server's start, ttl 3 s, 354 s old) blocked the
    ready task for ever. Past its ttl it is removed, broken as held (its lock state unknown)."""
    plans = recovery.plan(TASKS, {"T0110": lease(354.0)}, WORKFLOW, NOW, this_host="alpha", this_boot="this boot")
    assert [(p.task_id, p.action, p.kill) for p in plans] == [("T0110", recovery.Action.REMOVE, False)]
    assert "orphaned (task is 'ready')" in plans[0].cause


def test_a_lease_of_unknown_lock_within_its_ttl_is_left_for_its_holder_to_renew() -> None:
    """Within its ttl a live holder may still renew it (taking its lock again first): left alone."""
    plans = recovery.plan(TASKS, {"T0110": lease(1.0)}, WORKFLOW, NOW, this_host="alpha", this_boot="this boot")
    assert plans == []
