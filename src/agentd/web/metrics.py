"""``/metrics``: the project in the Prometheus text format, read from the store at scrape time.

Nothing is counted inside the daemons: a custom collector reads the queue, the leases, the PID files and the event
journal whenever Prometheus scrapes, so the numbers need no daemon state and survive restarts. Counters (runs,
recoveries, refusals) and histograms (run duration, pickup latency) are folded from the journal; the fold is
cached until a journal file changes.

Pickup latency is the time from the moment a task became claimable, as the journal tells it (the ``finished``,
``released``, ``recovered`` or ``unblocked`` event that put it in a claimable status, or the end of its backoff), to
its next ``claimed``. Tasks added by hand have no such event and are not counted.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentd.core.clock import parse_timestamp
from agentd.core.control import ALL
from agentd.errors import AgentdError
from agentd.store.base import Event
from agentd.store.file import journal
from agentd.web.data import Source

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
PICKUP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BECOMES_CLAIMABLE = {"finished", "released", "recovered", "unblocked"}


@dataclass
class Histogram:
    """Bucket counts (not cumulative) and the sum of one series."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        for n, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[n] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        counts = self.counts or [0] * (len(self.buckets) + 1)
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


def cause_kind(cause: str) -> str:
    """A recovery's cause without its particulars (ids, tokens, statuses, pids), short enough for a label."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "", cause).split("(")[0].split(":")[0]
    return " ".join(text.split())[:60] or "unknown"


@dataclass
class Fold:
    """What the journal adds up to."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, outcome)
    durations: dict[str, Histogram] = field(default_factory=dict)
    pickups: dict[str, Histogram] = field(default_factory=dict)
    recoveries: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    spend: dict[str, float] = field(default_factory=dict)


def fold(events: Iterable[Event]) -> Fold:
    """Counters and histograms from journal events in order."""
    out = Fold()
    claimable_since: dict[str, datetime] = {}
    for event in events:
        task, role = event.task, event.role or "?"
        if event.name == "finished":
            outcome = str(event.data.get("outcome") or "unknown")
            out.runs[(role, outcome)] += 1
            duration = event.data.get("duration")
            if isinstance(duration, int | float):
                out.durations.setdefault(role, Histogram(DURATION_BUCKETS)).observe(float(duration))
            cost = event.data.get("cost_usd")
            if isinstance(cost, int | float):
                out.spend[role] = out.spend.get(role, 0.0) + float(cost)
        elif event.name == "recovered":
            out.recoveries[cause_kind(str(event.data.get("cause") or ""))] += 1
        elif event.name == "refused":
            out.refused[role] += 1
        if task is None:
            continue
        if event.name == "claimed":
            since = claimable_since.pop(task, None)
            if since is not None and event.time >= since:
                seconds = (event.time - since).total_seconds()
                out.pickups.setdefault(role, Histogram(PICKUP_BUCKETS)).observe(seconds)
        elif event.name == "retry-scheduled":
            until = event.data.get("not_before")
            try:
                claimable_since[task] = parse_timestamp(str(until)) if until else event.time
            except ValueError:
                claimable_since[task] = event.time
        elif event.name in _BECOMES_CLAIMABLE:
            claimable_since[task] = event.time
    return out


class AgentdCollector(Collector):
    """Reads the project at every collect()."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._cache: tuple[object, Fold] | None = None

    def _fold(self) -> Fold:
        marks = []
        for path in journal.rotated_files(self.source.journal_path):
            try:
                st = os.stat(path)
                marks.append((path.name, st.st_ino, st.st_size))
            except OSError:
                continue
        key = tuple(marks)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, fold(self.source.events()))
        return self._cache[1]

    def collect(self) -> Iterator[Metric]:
        source = self.source
        tasks = GaugeMetricFamily("agentd_tasks", "Tasks per status in the queue.", labels=["status"])
        queue_ok = GaugeMetricFamily("agentd_queue_readable", "1 when the queue reads and validates.")
        try:
            statuses = Counter(task.status for task in source.snapshot().tasks)
            queue_ok.add_metric([], 1)
        except AgentdError:
            statuses = Counter()
            queue_ok.add_metric([], 0)
        for status, count in sorted(statuses.items()):
            tasks.add_metric([status], count)
        yield tasks
        yield queue_ok

        report = source.status()
        wip = GaugeMetricFamily("agentd_wip", "Tasks a role holds now.", labels=["role"])
        limit = GaugeMetricFamily("agentd_wip_limit", "A role's WIP limit (absent when it has none).", labels=["role"])
        up = GaugeMetricFamily("agentd_daemon_up", "1 when the daemon's PID file is held.", labels=["role", "instance"])
        seen_roles: set[str] = set()
        for row in report["roles"]:
            role = str(row["role"])
            if role not in seen_roles and row["wip"] is not None:
                wip.add_metric([role], row["wip"])
                if row["wip_limit"] is not None:
                    limit.add_metric([role], row["wip_limit"])
                seen_roles.add(role)
            up.add_metric([role, str(row["instance"] or "")], 1 if row["running"] else 0)
        yield wip
        yield limit
        yield up
        paused = GaugeMetricFamily(
            "agentd_role_paused", "1 while a role is paused (by a person, its command or its budget).", labels=["role"]
        )
        pausing = {str(pause["role"]) for pause in report.get("paused", [])}
        waiting = GaugeMetricFamily(
            "agentd_questions_waiting", "Tasks parked on a question nobody has answered yet.", labels=["role"]
        )
        asked = Counter(str(item["role"]) for item in report.get("waiting", []))
        for role in sorted({str(row["role"]) for row in report["roles"]}):
            paused.add_metric([role], 1 if role in pausing or ALL in pausing else 0)
            waiting.add_metric([role], asked.get(role, 0))
        yield paused
        yield waiting

        found = self._fold()
        runs = CounterMetricFamily("agentd_runs", "Runs finished, by role and outcome.", labels=["role", "outcome"])
        for (role, outcome), count in sorted(found.runs.items()):
            runs.add_metric([role, outcome], count)
        yield runs
        for name, doc, series in (
            ("agentd_run_duration_seconds", "How long runs took, by role.", found.durations),
            ("agentd_pickup_latency_seconds", "From claimable to claimed, by role.", found.pickups),
        ):
            family = HistogramMetricFamily(name, doc, labels=["role"])
            for role, histogram in sorted(series.items()):
                family.add_metric([role], histogram.cumulative(), histogram.total)
            yield family
        recoveries = CounterMetricFamily(
            "agentd_recoveries", "Tasks recovered from dead workers, by cause.", labels=["cause"]
        )
        for cause, count in sorted(found.recoveries.items()):
            recoveries.add_metric([cause], count)
        yield recoveries
        refused = CounterMetricFamily(
            "agentd_refused_completions", "Completions refused (lease lost).", labels=["role"]
        )
        for role, count in sorted(found.refused.items()):
            refused.add_metric([role], count)
        yield refused
        spend = CounterMetricFamily(
            "agentd_spend_usd", "Cost of runs as reported by the agent, by role.", labels=["role"]
        )
        for role, cost in sorted(found.spend.items()):
            spend.add_metric([role], cost)
        yield spend


def registry(source: Source) -> CollectorRegistry:
    """A registry holding only agentd's collector (no process metrics of the web server itself)."""
    out = CollectorRegistry(auto_describe=False)
    out.register(AgentdCollector(source))
    return out
