"""Roles and the status transitions they make (pure data, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from agentd.core.record import Record, set_field

FENCE_MARGIN_SHARE = 0.2  # of lease_ttl: the default self-fencing margin ...
FENCE_MARGIN_MIN = 2.0  # ... at least this many seconds ...
FENCE_MARGIN_MAX_SHARE = 0.5  # ... but never more than this share of the ttl (a short ttl keeps room for heartbeats)


def fence_margin_for(lease_ttl: float) -> float:
    """The default self-fencing margin for a lease ttl: 20 % of it, at least 2 s, at most half of it.

    A run is fenced ``lease_ttl - margin`` seconds after its last renewal (on its host's boot clock), a peer may take
    the task over ``lease_ttl`` seconds after it (on the store's clock): the margin covers the supervisor's kill and
    the two clocks' disagreement over that span (see docs/concepts/lease-protocol.md, "Self-fencing")."""
    return min(max(FENCE_MARGIN_MIN, FENCE_MARGIN_SHARE * lease_ttl), FENCE_MARGIN_MAX_SHARE * lease_ttl)


class Backoff(Record):
    """Exponential backoff between failed attempts: ``initial * factor**(n-1)``, capped at ``max``."""

    _fields = (
        "initial",
        "factor",
        "max",
    )

    initial: float = 30.0
    factor: float = 2.0
    max: float = 1800.0

    def __init__(self, initial: float = 30.0, factor: float = 2.0, max: float = 1800.0) -> None:
        set_field(self, "initial", initial)
        set_field(self, "factor", factor)
        set_field(self, "max", max)

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        if failures <= 0:
            return 0.0
        return float(min(self.max, self.initial * self.factor ** (failures - 1)))


DEFAULT_BACKOFF = Backoff()  # (immutable: one instance shared by the roles that set none)


class Role(Record):
    """One role: which statuses it claims, where it works, where tasks go afterwards, and how it runs them."""

    _fields = (
        "name",
        "claims",
        "working",
        "on_success",
        "on_failure",
        "outcomes",
        "types",
        "wip",
        "command",
        "prompt",
        "env",
        "interval",
        "lease_ttl",
        "heartbeat",
        "timeout",
        "max_attempts",
        "backoff",
        "grace",
        "kill_after",
        "fence_margin",
        "allow_loop",
        "max_repeats",
        "waiting",
        "resume_command",
        "max_waiting",
        "waiting_expiry",
        "pause_on_exit",
        "pause_for",
        "budget_usd_per_day",
        "output",
    )

    name: str
    claims: tuple[str, ...]
    working: str
    on_success: str
    on_failure: str = "blocked"
    outcomes: Mapping[int, str]
    types: tuple[str, ...] | None = None
    wip: int | None = None
    command: tuple[str, ...] | None = None
    prompt: str | None = None
    env: Mapping[str, str]
    interval: float = 60.0
    lease_ttl: float = 5400.0
    heartbeat: float = 60.0
    timeout: float = 3600.0
    max_attempts: int = 3
    backoff: Backoff = DEFAULT_BACKOFF
    grace: float = 15.0
    kill_after: float = 5.0
    fence_margin: float | None = None  # s before lease_ttl at which a run's supervisor fences it; None: derived
    allow_loop: bool = False  # on_success may be a status this role claims (it means to run tasks again)
    max_repeats: int = 10  # consecutive successes leaving a task where this role claims it, then on_failure
    waiting: str = "needs_feedback"  # where a task waits after its command asked a question
    resume_command: tuple[str, ...] | None = None  # run instead of command when resuming an answered question
    max_waiting: int | None = None  # with this many of its tasks waiting for answers, the role takes no new task
    waiting_expiry: float | None = None  # s a question may wait; then the task goes to on_failure
    pause_on_exit: tuple[int, ...] = ()  # exit codes that pause the role (a usage limit): no attempt spent
    pause_for: float = 3600.0  # s a role pauses itself for when its command gives no time
    budget_usd_per_day: float | None = None  # spend per day (in the project's time zone) that pauses the role
    output: str | None = None  # an output adapter reading the command's own output (claude-json)

    def __init__(
        self,
        name: str,
        claims: tuple[str, ...],
        working: str,
        on_success: str,
        on_failure: str = "blocked",
        outcomes: Mapping[int, str] | None = None,
        types: tuple[str, ...] | None = None,
        wip: int | None = None,
        command: tuple[str, ...] | None = None,
        prompt: str | None = None,
        env: Mapping[str, str] | None = None,
        interval: float = 60.0,
        lease_ttl: float = 5400.0,
        heartbeat: float = 60.0,
        timeout: float = 3600.0,
        max_attempts: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
        grace: float = 15.0,
        kill_after: float = 5.0,
        fence_margin: float | None = None,
        allow_loop: bool = False,
        max_repeats: int = 10,
        waiting: str = "needs_feedback",
        resume_command: tuple[str, ...] | None = None,
        max_waiting: int | None = None,
        waiting_expiry: float | None = None,
        pause_on_exit: tuple[int, ...] = (),
        pause_for: float = 3600.0,
        budget_usd_per_day: float | None = None,
        output: str | None = None,
    ) -> None:
        set_field(self, "name", name)
        set_field(self, "claims", claims)
        set_field(self, "working", working)
        set_field(self, "on_success", on_success)
        set_field(self, "on_failure", on_failure)
        set_field(self, "outcomes", dict() if outcomes is None else outcomes)
        set_field(self, "types", types)
        set_field(self, "wip", wip)
        set_field(self, "command", command)
        set_field(self, "prompt", prompt)
        set_field(self, "env", dict() if env is None else env)
        set_field(self, "interval", interval)
        set_field(self, "lease_ttl", lease_ttl)
        set_field(self, "heartbeat", heartbeat)
        set_field(self, "timeout", timeout)
        set_field(self, "max_attempts", max_attempts)
        set_field(self, "backoff", backoff)
        set_field(self, "grace", grace)
        set_field(self, "kill_after", kill_after)
        set_field(self, "fence_margin", fence_margin)
        set_field(self, "allow_loop", allow_loop)
        set_field(self, "max_repeats", max_repeats)
        set_field(self, "waiting", waiting)
        set_field(self, "resume_command", resume_command)
        set_field(self, "max_waiting", max_waiting)
        set_field(self, "waiting_expiry", waiting_expiry)
        set_field(self, "pause_on_exit", pause_on_exit)
        set_field(self, "pause_for", pause_for)
        set_field(self, "budget_usd_per_day", budget_usd_per_day)
        set_field(self, "output", output)

    @property
    def margin(self) -> float:
        """Seconds of the lease ttl kept in reserve by self-fencing: ``fence_margin``, else :func:`fence_margin_for`."""
        return fence_margin_for(self.lease_ttl) if self.fence_margin is None else self.fence_margin

    @property
    def fence_after(self) -> float:
        """Seconds without a lease renewal after which a run's supervisor kills its command's tree (self-fencing):
        ``lease_ttl - margin``, so that the run is gone before any peer may judge the lease stale."""
        return self.lease_ttl - self.margin

    @property
    def retry_status(self) -> str:
        """Where a task goes back to for another attempt: the first status the role claims."""
        return self.claims[0]

    def statuses(self) -> set[str]:
        """Every status this role reads or writes."""
        return {*self.claims, self.working, self.on_success, self.on_failure, self.waiting, *self.outcomes.values()}

    def accepts_type(self, task_type: object) -> bool:
        """Whether the role's type filter lets a task of this type through."""
        return self.types is None or task_type in self.types


class UnblockRule(Record):
    """Move tasks from ``from_status`` to ``to_status`` once their dependencies are done."""

    _fields = (
        "from_status",
        "to_status",
    )

    from_status: str = "blocked"
    to_status: str = "ready"

    def __init__(self, from_status: str = "blocked", to_status: str = "ready") -> None:
        set_field(self, "from_status", from_status)
        set_field(self, "to_status", to_status)


DEFAULT_UNBLOCK = UnblockRule()

DEFAULT_PIPELINE: tuple[tuple[str, str, str, str], ...] = (
    # role, claims, working, on_success   (on_failure is "blocked" for every default role)
    ("planner", "needs_plan", "planning", "ready"),
    ("builder", "ready", "in_progress", "awaiting_test"),
    ("tester", "awaiting_test", "testing", "ready_for_integrator"),
    ("refiner", "needs_adapt", "adapting", "awaiting_test"),
    ("integrator", "ready_for_integrator", "integrating", "done"),
)

# Exit code -> status for the default roles: a tester whose command exits 1 (tests fail) hands the task to the refiner.
DEFAULT_OUTCOMES: Mapping[str, Mapping[int, str]] = {"tester": {1: "needs_adapt"}}


class Workflow(Record):
    """All roles plus the statuses that end a task's life."""

    _fields = (
        "roles",
        "done_statuses",
        "final_statuses",
        "unblock",
    )

    roles: Mapping[str, Role]
    done_statuses: frozenset[str] = frozenset({"done", "completed"})
    final_statuses: frozenset[str] = frozenset({"cancelled"})
    unblock: UnblockRule | None = DEFAULT_UNBLOCK

    def __init__(
        self,
        roles: Mapping[str, Role],
        done_statuses: frozenset[str] = frozenset({"done", "completed"}),
        final_statuses: frozenset[str] = frozenset({"cancelled"}),
        unblock: UnblockRule | None = DEFAULT_UNBLOCK,
    ) -> None:
        set_field(self, "roles", roles)
        set_field(self, "done_statuses", done_statuses)
        set_field(self, "final_statuses", final_statuses)
        set_field(self, "unblock", unblock)

    def role(self, name: str) -> Role:
        """The role called ``name``; KeyError when unknown."""
        return self.roles[name]

    def role_claiming(self, status: str) -> list[Role]:
        """Roles that claim tasks in ``status``."""
        return [role for role in self.roles.values() if status in role.claims]

    def role_working_in(self, status: str) -> list[Role]:
        """Roles whose working status is ``status``."""
        return [role for role in self.roles.values() if role.working == status]

    def known_statuses(self) -> frozenset[str]:
        """Every status some role or rule knows (worked out once per workflow: reading a queue asks it per task)."""
        known: frozenset[str] | None = self.__dict__.get("_known")
        if known is None:
            found = set(self.done_statuses) | set(self.final_statuses)
            for role in self.roles.values():
                found |= role.statuses()
            if self.unblock is not None:
                found |= {self.unblock.from_status, self.unblock.to_status}
            known = frozenset(found)
            set_field(self, "_known", known)
        return known

    def is_final(self, status: str) -> bool:
        """Done or otherwise finished (never claimed again without a human)."""
        return status in self.done_statuses or status in self.final_statuses
