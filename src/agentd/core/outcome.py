"""How an attempt ended and what that does to its task: :class:`Kind`, :class:`Outcome`, :func:`classify`,
:class:`Decision`, :func:`decide`.

Part of the decision core (:mod:`agentd.core.scheduler` re-exports every name here, as it always had them); a module of
its own so that what only reads the queue (``agentd status``, ``agentd queue why``) does not build these classes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta

from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.core.record import Record, set_field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from agentd.core.model import Task
    from agentd.core.workflow import Role, Workflow


# -- outcomes -------------------------------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    """How an attempt ended."""

    SUCCESS = "success"  # exit 0
    EXIT_CODE = "exit-code"  # an exit code listed in the role's outcomes
    RESULT = "result"  # the command wrote a result file naming the next status
    FAILURE = "failure"  # any other exit code
    TIMEOUT = "timeout"
    CRASH = "crash"  # killed by a signal, or its supervisor died
    INTERRUPTED = "interrupted"  # agentd shut down while it ran
    STOPPED = "stopped"  # stopped because someone moved its task to a final status (cancelled it) while it ran
    NOT_STARTED = "not-started"  # agentd itself could not start the command (no descriptors, processes or memory)
    RECOVERED = "recovered"  # its lease went stale (the daemon died or hung)
    ASKED = "asked"  # the command asked a person a question: the task waits for the answer (no attempt spent)
    PAUSED = "paused"  # the command paused its role (a usage limit): the task goes back (no attempt spent)
    FENCED = "fenced"  # its supervisor killed it: its daemon had not renewed the lease for lease_ttl - fence_margin


class Outcome(Record):
    """What the runner saw."""

    _fields = ("kind", "exit_code", "signal", "status", "note", "fields", "question", "session", "pause_until", "usage")

    kind: Kind
    exit_code: int | None = None
    signal: int | None = None
    status: str | None = None  # from a result file
    note: str | None = None
    fields: Mapping[str, Any]
    question: str | None = None  # ASKED: what the command asked
    session: str | None = None  # the agent's session id (to resume it), from the result file or its output
    pause_until: datetime | None = None  # PAUSED: until when (None: the role's pause_for)
    usage: Mapping[str, float]  # cost_usd and token counts, where reported

    def __init__(
        self,
        kind: Kind,
        exit_code: int | None = None,
        signal: int | None = None,
        status: str | None = None,
        note: str | None = None,
        fields: Mapping[str, Any] | None = None,
        question: str | None = None,
        session: str | None = None,
        pause_until: datetime | None = None,
        usage: Mapping[str, float] | None = None,
    ) -> None:
        set_field(self, "kind", kind)
        set_field(self, "exit_code", exit_code)
        set_field(self, "signal", signal)
        set_field(self, "status", status)
        set_field(self, "note", note)
        set_field(self, "fields", {} if fields is None else fields)
        set_field(self, "question", question)
        set_field(self, "session", session)
        set_field(self, "pause_until", pause_until)
        set_field(self, "usage", {} if usage is None else usage)


def classify(
    role: Role,
    *,
    exit_code: int | None,
    signal: int | None = None,
    timed_out: bool = False,
    result: Mapping[str, Any] | None = None,
) -> Outcome:
    """Turn a process exit (and an optional result file) into an Outcome."""
    fields = dict((result or {}).get("fields") or {})
    note = (result or {}).get("note")
    if result and result.get("question"):
        return Outcome(Kind.ASKED, exit_code, signal, None, note, fields, question=str(result["question"]))
    if result and isinstance(result.get("pause"), Mapping):
        pause = result["pause"]
        until = parse_timestamp(pause["until"]) if isinstance(pause.get("until"), str) else None
        reason = pause.get("reason") if isinstance(pause.get("reason"), str) else None
        return Outcome(
            Kind.PAUSED, exit_code, signal, None, reason or note or "paused by its command", pause_until=until
        )
    if exit_code is not None and exit_code in role.pause_on_exit and not timed_out:
        return Outcome(Kind.PAUSED, exit_code, signal, None, note or f"exit code {exit_code} (pause_on_exit)")
    if result and result.get("status"):
        return Outcome(Kind.RESULT, exit_code, signal, result["status"], note, fields)
    if timed_out:
        return Outcome(Kind.TIMEOUT, exit_code, signal, None, note, fields)
    if exit_code is not None and exit_code in role.outcomes:  # an explicit mapping wins, even for 0
        return Outcome(Kind.EXIT_CODE, exit_code, None, role.outcomes[exit_code], note, fields)
    if exit_code == 0:
        return Outcome(Kind.SUCCESS, 0, None, None, note, fields)
    if exit_code is None:
        return Outcome(Kind.CRASH, None, signal, None, note, fields)
    return Outcome(Kind.FAILURE, exit_code, signal, None, note, fields)


class Decision(Record):
    """What to do with a task after an attempt: its next status and the fields to set (None = remove)."""

    _fields = ("status", "patch", "retry", "final_failure", "note", "stood", "looped")

    status: str
    patch: Mapping[str, Any]
    retry: bool = False
    final_failure: bool = False
    note: str | None = None
    stood: bool = False  # the command set the task's status itself while it ran, and that status stands
    looped: bool = False  # stopped: it ran max_repeats times in a row without leaving the role's claimed statuses

    def __init__(
        self,
        status: str,
        patch: Mapping[str, Any],
        retry: bool = False,
        final_failure: bool = False,
        note: str | None = None,
        stood: bool = False,
        looped: bool = False,
    ) -> None:
        set_field(self, "status", status)
        set_field(self, "patch", patch)
        set_field(self, "retry", retry)
        set_field(self, "final_failure", final_failure)
        set_field(self, "note", note)
        set_field(self, "stood", stood)
        set_field(self, "looped", looped)


def decide(task: Task, role: Role, outcome: Outcome, now: datetime, workflow: Workflow | None = None) -> Decision:
    """The next status and fields after ``outcome``. A status the command set itself meanwhile stands."""
    patch: dict[str, Any] = dict(outcome.fields)
    if outcome.note:
        patch["status_note"] = outcome.note
    if task.status != role.working:
        # The command (an agent editing the queue) moved the task itself: that status stands.
        return Decision(task.status, patch, note=f"status {task.status!r} set while the task ran", stood=True)
    if outcome.kind in (Kind.SUCCESS, Kind.EXIT_CODE, Kind.RESULT):
        status = role.on_success if outcome.kind is Kind.SUCCESS else str(outcome.status)
        patch["not_before"] = None
        if task.question is not None:
            patch["question"] = None  # answered and resumed: the exchange stays in its feedback list
        if task.attempts:
            patch["attempts"] = 0  # attempts count failures at one stage; the next stage starts afresh
        return _repeat_guard(task, role, status, patch, workflow)
    if outcome.kind is Kind.INTERRUPTED:
        patch.update(status_note=outcome.note or "interrupted by shutdown")
        return Decision(role.retry_status, patch, retry=True, note="interrupted by shutdown")
    if outcome.kind is Kind.NOT_STARTED:  # agentd's own failure, not the task's: no attempt spent
        patch.update(status_note=outcome.note or "not started: agentd could not start its command")
        return Decision(role.retry_status, patch, retry=True, note=patch["status_note"])
    if outcome.kind is Kind.ASKED:  # a question for a person: it waits, the lease and WIP slot go (no attempt)
        patch["not_before"] = None
        patch["question"] = {
            "role": role.name,
            "attempt": task.attempts + 1,
            "text": outcome.question,
            "session": outcome.session,
            "asked_at": format_timestamp(now),
        }
        patch["status_note"] = f"waiting for an answer: {outcome.question}"
        return Decision(role.waiting, patch, note=patch["status_note"])
    if outcome.kind is Kind.PAUSED:  # the role pauses (a usage limit): the task goes back unspent
        patch["status_note"] = f"paused: {outcome.note}"
        return Decision(role.retry_status, patch, retry=True, note=patch["status_note"])
    if outcome.kind is Kind.STOPPED:  # moved to a final status, then back by hand before the run ended: no attempt
        patch.update(status_note=outcome.note or "stopped: its task was moved to a final status while it ran")
        return Decision(role.retry_status, patch, retry=True, note=patch["status_note"])
    failures = task.attempts + 1
    cause = describe(outcome)
    if failures >= role.max_attempts:
        patch.update(attempts=failures, not_before=None)
        if task.question is not None:
            patch["question"] = None
        patch["status_note"] = f"gave up after {failures} attempt{'s' * (failures != 1)}: {cause}"
        if workflow is not None and workflow.unblock is not None and role.on_failure == workflow.unblock.from_status:
            patch["blocked_reason"] = f"failed {failures} attempt{'s' * (failures != 1)} ({cause})"
        return Decision(role.on_failure, patch, final_failure=True, note=patch["status_note"])
    # A recovered or fenced task did not fail: its worker died or hung. It goes back at once (an attempt is counted, as
    # for any interrupted run; a fenced run whose lease a peer recovered first is counted once, by that recovery).
    delay = 0.0 if outcome.kind in (Kind.RECOVERED, Kind.FENCED) else role.backoff.delay(failures)
    patch.update(attempts=failures, not_before=format_timestamp(now + timedelta(seconds=delay)) if delay else None)
    patch["status_note"] = f"attempt {failures} failed ({cause})" + (f"; retry in {delay:g} s" if delay else "")
    return Decision(role.retry_status, patch, retry=True, note=patch["status_note"])


def _repeat_guard(task: Task, role: Role, status: str, patch: dict[str, Any], workflow: Workflow | None) -> Decision:
    """A success that leaves the task where this role claims it again is a repeat; ``max_repeats`` in a row sends
    it to ``on_failure`` (a hot loop stopped). A success that moves it on clears the count."""
    if status not in role.claims:
        if task.repeats:
            patch["repeat_runs"] = None
        return Decision(status, patch)
    runs = task.repeats + 1
    if runs < role.max_repeats:
        patch["repeat_runs"] = runs
        return Decision(status, patch)
    patch["repeat_runs"] = None
    note = f"ran {runs} times in a row without its status changing (max_repeats {role.max_repeats}); stopped"
    patch["status_note"] = note
    if workflow is not None and workflow.unblock is not None and role.on_failure == workflow.unblock.from_status:
        patch["blocked_reason"] = note
    return Decision(role.on_failure, patch, final_failure=True, note=note, looped=True)


def describe(outcome: Outcome) -> str:
    """A few words on how an attempt ended."""
    if outcome.kind is Kind.TIMEOUT:
        return "timed out"
    if outcome.kind is Kind.RECOVERED:
        return outcome.note or "lease went stale"
    if outcome.kind is Kind.FENCED:
        return outcome.note or "fenced: its daemon stopped renewing the lease"
    if outcome.note:  # say, a result file that did not validate
        return outcome.note
    if outcome.signal:
        return f"killed by signal {outcome.signal}"
    if outcome.exit_code is None:
        return "crashed"
    return f"exit code {outcome.exit_code}"
