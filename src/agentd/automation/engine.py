"""One automation pass: due schedules, settled file rules and new journal events become tasks and hook deliveries.

:meth:`Engine.tick` takes the time (wall clock for schedules, monotonic for debounce) and returns how long it may
sleep. Tasks go through :mod:`agentd.automation.sink` (exactly once by their deterministic ids); hook deliveries run
on worker threads, so a slow or dead endpoint delays nothing else. The journal cursor in the memory file moves past
an event only once each of its deliveries is done: after a crash or a takeover the next active process delivers the
rest again (at least once), and its rules add nothing twice (the ids exist).

A problem (the queue unreadable, a task refused) is reported once, journaled as ``automation-failed``, and tried
again on later passes; it never stops the process.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from agentd import faults
from agentd.automation import sink
from agentd.automation.deliver import deliver
from agentd.automation.hooks import Hook
from agentd.automation.rules import Debouncer, Rule, open_task, shorten
from agentd.automation.schedule import Schedule, due, open_firing
from agentd.automation.settings import Automation
from agentd.config import Config
from agentd.core.clock import format_timestamp, parse_timestamp
from agentd.errors import AgentdError, display_path
from agentd.store.file.automation_state import (
    Switches,
    memory_path,
    read_memory,
    read_switches,
    state_path,
    write_atomic,
)
from agentd.store.file.journal import Event, Journal
from agentd.store.file.journal_tail import Cursor, JournalTail
from agentd.store.file.queuefile import QueueStore

log = logging.getLogger(__name__)
POLL = 0.25  # seconds between looks at the journal and the switches
WORKERS = 4  # hook deliveries at once


def journal_path(config: Config) -> Path:
    return config.state_dir / "events.jsonl"


class Engine:
    """Schedules, rules and hooks of one project, run by the active automation process."""

    def __init__(self, config: Config, journal: Journal, hooks: list[Hook], stopping: threading.Event) -> None:
        self.config = config
        self.automation = config.automation or Automation()
        self.journal = journal
        self.hooks = hooks
        self.stopping = stopping
        self.store = QueueStore(config.queue_path, workflow=config.workflow, lock_timeout=config.lock_timeout)
        self.memory: dict[str, Any] = read_memory(config.state_dir)
        for key in ("schedules", "rules", "hooks"):
            if not isinstance(self.memory.get(key), dict):
                self.memory[key] = {}
        self.debouncers = [Debouncer(rule) for rule in self.automation.rules if rule.on == "file"]
        self.event_rules = [rule for rule in self.automation.rules if rule.on == "event"]
        self.changes: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
        self.tail = JournalTail(journal_path(config))
        self.backlog: list[Event] = []
        self.pending: deque[list[Any]] = deque()  # [cursor, deliveries not done yet], journal order
        self.executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="agentd-hook")
        self.lock = threading.Lock()  # the memory and the pending counts (delivery threads change them)
        self.switches = Switches()
        self._switch_stamp: tuple[int, int] | None = None
        self._reported: set[str] = set()
        self._saved: str | None = None
        self._ignored = self._own_paths()

    # -- start and stop ------------------------------------------------------------------------------------------------

    def start(self) -> int:
        """Read the journal from the cursor (or from its end, the first time); how many events are waiting."""
        cursor = Cursor.from_dict(self.memory.get("cursor"))
        if cursor is None:
            newest = self.tail.last()
            self.tail.start(None)
            if newest is not None:
                self.memory["cursor"] = Cursor.of(newest).to_dict()
        else:
            self.backlog = self.tail.start(cursor)
        self._refresh_switches()
        return len(self.backlog)

    def close(self) -> None:
        """Stop the deliveries (those not done are delivered again by the next active process) and save."""
        self.stopping.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.tail.close()
        self._advance_cursor()
        self.save()

    # -- one pass ------------------------------------------------------------------------------------------------------

    def tick(self, now: datetime, mono: float) -> float:
        """One pass; the seconds until the next one is needed."""
        self._refresh_switches()
        wake = POLL
        wake = min(wake, self._schedules(now))
        wake = min(wake, self._file_rules(now, mono))
        self._events(now)
        self._advance_cursor()
        self.save()
        return max(wake, 0.01)

    def file_changed(self, paths: list[str]) -> None:
        """Paths (relative to the root, ``/``-separated) a watcher saw change; any thread may call this."""
        self.changes.put(paths)

    # -- switches ------------------------------------------------------------------------------------------------------

    def _refresh_switches(self) -> None:
        path = state_path(self.config.state_dir)
        try:
            info = path.stat()
            stamp: tuple[int, int] | None = (info.st_mtime_ns, info.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._switch_stamp and self._switch_stamp is not None:
            return
        try:
            switches = read_switches(self.config.state_dir)
        except AgentdError as exc:
            self._problem("switches", f"{exc}; the switches stay as they were")
            return
        except OSError as exc:
            self._problem(
                "switches", f"{display_path(path)}: cannot read: {exc.strerror or exc}; the switches stay as they were"
            )
            return
        self._solved("switches")
        if switches != self.switches:
            log.info(
                "automation switches: %s",
                "everything on" if not switches.off else ", ".join(sorted(switches.off)) + " off",
            )
        self.switches, self._switch_stamp = switches, stamp

    # -- schedules -----------------------------------------------------------------------------------------------------

    def _schedules(self, now: datetime) -> float:
        wake = POLL
        for schedule in self.automation.schedules:
            seen = self.memory["schedules"].setdefault(schedule.name, {})
            last = _time(seen.get("handled"))
            decided = due(schedule, last, now)
            wake = min(wake, (decided.next_at - now).total_seconds())
            if not decided.fire:
                seen["handled"] = format_timestamp(decided.handled)
                continue
            if not self.switches.enabled(schedule.name):
                seen["handled"] = format_timestamp(decided.handled)  # off: its firings pass, none is caught up later
                continue
            candidates = [(schedule.make_task(at, now), self._schedule_blocker(schedule)) for at in decided.fire]
            outcomes = self._add(f"schedule {schedule.name}", candidates)
            if outcomes is None:
                continue  # reported; tried again on the next pass
            faults.point("automation.after-fire")
            for at, outcome in zip(decided.fire, outcomes, strict=True):
                self._record_firing(schedule, at, outcome)
            seen["handled"] = format_timestamp(decided.handled)
            if decided.missed:
                log.info(
                    "schedule %s: %d firing(s) missed while nothing ran (catch_up = %s)",
                    schedule.name,
                    decided.missed,
                    schedule.catch_up.value,
                )
        return wake

    def _schedule_blocker(self, schedule: Schedule) -> sink.Blocker:
        return lambda statuses: open_firing(schedule, statuses, self.config.workflow.is_final)

    def _record_firing(self, schedule: Schedule, at: datetime, outcome: sink.Outcome) -> None:
        seen = self.memory["schedules"][schedule.name]
        fields: dict[str, Any] = {
            "schedule": schedule.name,
            "task": outcome.task_id,
            "scheduled_for": format_timestamp(at),
        }
        if outcome.result == "added":
            seen.update(fired=format_timestamp(at), task=outcome.task_id)
            self.journal.emit("schedule-fired", f"schedule {schedule.name}: added {outcome.task_id}", **fields)
        elif outcome.result == "open":
            seen.update(skipped=format_timestamp(at), open_task=outcome.open_task)
            self.journal.emit(
                "schedule-skipped",
                f"schedule {schedule.name}: skipped the firing for {format_timestamp(at)}: "
                f"{outcome.open_task} is still open (skip_if_open)",
                open_task=outcome.open_task,
                **fields,
            )
        else:
            seen.update(fired=format_timestamp(at), task=outcome.task_id)
            log.info("schedule %s: %s is already in the queue (fired before)", schedule.name, outcome.task_id)

    # -- file rules ----------------------------------------------------------------------------------------------------

    def _own_paths(self) -> set[str]:
        """The queue file and its lock, relative to the root: agentd's own writes never trigger a rule."""
        out = set()
        for path in (self.store.path, self.store.lock_path):
            with contextlib.suppress(ValueError):
                out.add(path.resolve().relative_to(self.config.root).as_posix())
        return out

    def _file_rules(self, now: datetime, mono: float) -> float:
        wake = POLL
        while True:
            try:
                paths = self.changes.get_nowait()
            except queue.Empty:
                break
            paths = [path for path in paths if path not in self._ignored and not path.endswith(".agentd-tmp")]
            for debouncer in self.debouncers:
                if self.switches.enabled(debouncer.rule.name):
                    debouncer.add(paths, mono)
        for debouncer in self.debouncers:
            rule = debouncer.rule
            deadline = debouncer.deadline()
            if deadline is None:
                continue
            if deadline > mono:
                wake = min(wake, deadline - mono)
                continue
            if not self.switches.enabled(rule.name):
                debouncer.due(mono)
                continue
            changed = debouncer.changed.copy()
            task = rule.make_task(now, changed=sorted(changed))
            outcomes = self._add(f"rule {rule.name}", [(task, self._rule_blocker(rule))])
            if outcomes is None:
                continue  # kept pending: tried again on the next pass
            debouncer.due(mono)
            self._record_trigger(rule, now, outcomes[0], f"{len(changed)} changed path(s): {shorten(sorted(changed))}")
        return wake

    def _rule_blocker(self, rule: Rule) -> sink.Blocker:
        return lambda statuses: open_task(rule, statuses, self.config.workflow.is_final)

    def _record_trigger(self, rule: Rule, now: datetime, outcome: sink.Outcome, why: str) -> None:
        self.memory["rules"][rule.name] = {
            "at": format_timestamp(now),
            "task": outcome.task_id,
            "result": outcome.result,
        }
        fields: dict[str, Any] = {"rule": rule.name, "task": outcome.task_id}
        if outcome.result == "added":
            self.journal.emit("rule-fired", f"rule {rule.name}: added {outcome.task_id} ({why})", **fields)
        elif outcome.result == "open":
            self.memory["rules"][rule.name]["open_task"] = outcome.open_task
            self.journal.emit(
                "rule-coalesced",
                f"rule {rule.name}: {outcome.open_task} is still open; nothing added ({why})",
                open_task=outcome.open_task,
                **fields,
            )
        else:
            log.info("rule %s: %s is already in the queue", rule.name, outcome.task_id)

    # -- events: rules and hooks ---------------------------------------------------------------------------------------

    def _events(self, now: datetime) -> None:
        self.backlog += self.tail.poll()
        if not self.backlog:
            return
        batch, self.backlog = self.backlog, []
        candidates: list[tuple[dict[str, Any], sink.Blocker]] = []
        fired: list[tuple[Rule, Event]] = []
        for event in batch:
            for rule in self.event_rules:
                if (
                    self.switches.enabled(rule.name)
                    and event.data.get("rule") != rule.name
                    and rule.matches_event(event.data)
                ):
                    candidates.append((rule.make_task(now, event=event.data), self._rule_blocker(rule)))
                    fired.append((rule, event))
        if candidates:
            outcomes = self._add("event rules", candidates)
            if outcomes is None:
                self.backlog = batch + self.backlog  # the queue could not be written: the same events next pass
                return
            for (rule, event), outcome in zip(fired, outcomes, strict=True):
                self._record_trigger(rule, now, outcome, f"event {event.name} at {format_timestamp(event.time)}")
        for event in batch:
            takers = [hook for hook in self.hooks if self.switches.enabled(hook.name) and hook.takes(event.data)]
            entry = [Cursor.of(event), len(takers)]
            with self.lock:
                self.pending.append(entry)
            for hook in takers:
                self.executor.submit(self._deliver, hook, event, entry)

    def _deliver(self, hook: Hook, event: Event, entry: list[Any]) -> None:
        result = deliver(hook, event.data, self.config.root, self.stopping)
        if result.stopped:
            return  # not done: the cursor stays before this event, the next active process delivers it
        fields: dict[str, Any] = {
            "hook": hook.name,
            "topic": event.name,
            "event_time": format_timestamp(event.time),
            "attempts": result.attempts,
        }
        if event.task is not None:
            fields["task"] = event.task
        if result.ok:
            self.journal.emit(
                "hook-delivered", f"hook {hook.name}: {event.name} delivered ({result.attempts} attempt(s))", **fields
            )
        else:
            self.journal.emit(
                "hook-failed",
                hook.redact(
                    f"hook {hook.name}: {event.name} not delivered after {result.attempts} attempt(s): {result.error}"
                ),
                level=logging.WARNING,
                error=hook.redact(result.error or ""),
                **fields,
            )
        with self.lock:
            self.memory["hooks"][hook.name] = {
                "at": format_timestamp(self.journal.clock.now()),
                "topic": event.name,
                "ok": result.ok,
                "attempts": result.attempts,
                **({"error": hook.redact(result.error or "")} if not result.ok else {}),
            }
            entry[1] -= 1

    def _advance_cursor(self) -> None:
        with self.lock:
            while self.pending and self.pending[0][1] <= 0:
                cursor: Cursor = self.pending.popleft()[0]
                self.memory["cursor"] = cursor.to_dict()

    # -- the queue and the memory --------------------------------------------------------------------------------------

    def _add(self, source: str, candidates: list[tuple[dict[str, Any], sink.Blocker]]) -> list[sink.Outcome] | None:
        try:
            outcomes = sink.add_tasks(self.store, candidates)
        except (AgentdError, OSError) as exc:
            self._problem(source, f"{source}: cannot add {', '.join(t['id'] for t, _ in candidates)}: {exc}")
            return None
        self._solved(source)
        return outcomes

    def _problem(self, key: str, message: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        self.journal.emit("automation-failed", message + " (tried again on each pass)", level=logging.ERROR)

    def _solved(self, key: str) -> None:
        if key in self._reported:
            self._reported.discard(key)
            log.info("%s: works again", key)

    def save(self) -> None:
        """Write the memory file if it changed (atomically)."""
        with self.lock:
            snapshot = _copy(self.memory)
        text = repr(sorted(snapshot.items()))
        if text == self._saved:
            return
        try:
            write_atomic(memory_path(self.config.state_dir), snapshot)
        except OSError as exc:
            self._problem("memory", f"cannot write {memory_path(self.config.state_dir)}: {exc.strerror or exc}")
            return
        self._solved("memory")
        self._saved = text


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _copy(value) if isinstance(value, Mapping) else value for key, value in data.items()}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None
