"""agentd.toml + environment + command line -> one frozen :class:`Config`.

Defaults come from ``schemas/config.schema.json`` (the source of truth); no file at all means the five-role pipeline.
A ``[roles.NAME]`` table named after a default role inherits that role's keys and overrides only what it sets; the
other default roles stay unless ``roles_replace_defaults = true``. Each value's origin is kept in ``Config.sources``
(``agentd config show``).
Precedence for the queue path: ``--queue`` > ``AGENTD_QUEUE`` > ``queue`` in agentd.toml > ``SPRINT_QUEUE.json``; for
the store: ``--store`` > ``AGENTD_STORE`` > ``store`` in agentd.toml > ``"file"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agentd import schema
from agentd.core.duration import parse_duration
from agentd.core.record import Record, set_field
from agentd.core.workflow import DEFAULT_OUTCOMES, DEFAULT_PIPELINE, Backoff, Role, UnblockRule, Workflow
from agentd.errors import ConfigInvalid, RoleNotFound, display_path
from agentd.workspaces.settings import WorkspaceSettings, WorkspacesInvalid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from agentd.automation.settings import Automation

    StrPath = str | os.PathLike[str]

CONFIG_NAME = "agentd.toml"
TUNABLES = ("interval", "lease_ttl", "heartbeat", "timeout", "max_attempts", "grace", "kill_after", "max_repeats")
ROLE_KEYS = (
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
    "allow_loop",
    "merge",
    "on_conflict",
    "waiting",
    "resume_command",
)
# Tunables with no default value (unset: no limit), settable per role or in [defaults].
OPTIONAL_TUNABLES = (
    "max_waiting",
    "waiting_expiry",
    "pause_for",
    "pause_on_exit",
    "budget",
    "output",
    "fence_margin",  # none: derived from lease_ttl (see Role.margin)
)
REQUIRED_ROLE_KEYS = ("claims", "working", "on_success")
DEFAULT = "default"


def _defaults() -> dict[str, Any]:
    """Every documented default, read from the config schema."""
    config = schema.load("config")
    props = config["properties"]
    tun = config["$defs"]["tunables"]["properties"]
    log = props["log"]["properties"]
    return {
        "queue": props["queue"]["default"],
        "done_statuses": props["done_statuses"]["default"],
        "final_statuses": props["final_statuses"]["default"],
        "lock_timeout": props["lock_timeout"]["default"],
        "store": props["store"]["default"],
        "leases_dir": props["leases_dir"]["default"],
        "state_dir": props["state_dir"]["default"],
        "unblock": props["unblock"]["default"],
        "tunables": {name: tun[name]["default"] for name in TUNABLES},
        "backoff": {name: spec["default"] for name, spec in tun["backoff"]["properties"].items()},
        "log": {name: spec["default"] for name, spec in log.items()},
    }


class LogConfig(Record):
    """Role log rotation and task log pruning."""

    _fields = ("max_bytes", "backups", "keep_task_logs", "keep_task_log_days", "max_task_log", "journal_keep_days")

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    keep_task_logs: int = 20
    keep_task_log_days: float = 14.0
    max_task_log: int = 10 * 1024 * 1024  # bytes of one task output log (head and tail kept); 0: no cap
    journal_keep_days: float = 0.0  # PostgreSQL: journal events older than this are pruned (0: by size only)

    def __init__(
        self,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        keep_task_logs: int = 20,
        keep_task_log_days: float = 14.0,
        max_task_log: int = 10 * 1024 * 1024,
        journal_keep_days: float = 0.0,
    ) -> None:
        set_field(self, "max_bytes", max_bytes)
        set_field(self, "backups", backups)
        set_field(self, "keep_task_logs", keep_task_logs)
        set_field(self, "keep_task_log_days", keep_task_log_days)
        set_field(self, "max_task_log", max_task_log)
        set_field(self, "journal_keep_days", journal_keep_days)

    @property
    def journal_keep_bytes(self) -> int:
        """What the journal keeps at most: what the file journal's rotation keeps (the live file and its backups)."""
        return self.max_bytes * (self.backups + 1)


def _as_path(name: str) -> Path:
    from pathlib import Path  # (here: see Config)

    return Path(name)


def _norm(path: StrPath) -> str:
    """``str(Path(path))`` without pathlib: '.' parts and repeated or trailing slashes dropped."""
    name = os.fspath(path)
    if not name:
        return "."
    lead = "/" if name.startswith("/") else ""
    if name.startswith("//") and not name.startswith("///"):
        lead = "//"  # (POSIX leaves a path's two leading slashes to the system: pathlib keeps them)
    parts = [part for part in name.split("/") if part and part != "."]
    return lead + "/".join(parts) if parts or lead else "."


def _relative(path: str, folder: str) -> str | None:
    """``str(Path(path).relative_to(folder))`` for two normalised paths (by name, as written), None when ``path`` is
    not inside ``folder``."""
    if path == folder:
        return "."
    if _root(path) != _root(folder):  # ("//" is a root of its own to POSIX and pathlib: "//x" is not inside "/")
        return None
    if folder == ".":
        return None if path.startswith("/") else path
    prefix = folder if folder.endswith("/") else folder + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _root(path: str) -> str:
    """The root of a normalised path as pathlib tells it: "//" (kept by POSIX), "/" or none."""
    return "//" if path.startswith("//") else "/" if path.startswith("/") else ""


def _join(folder: str, name: StrPath) -> str:
    """``str(Path(folder) / name)`` without pathlib."""
    return _norm(os.path.join(folder, os.fspath(name)))


class Config(Record):
    """Everything a command needs to know about one project."""

    _fields = (
        "root",
        "path",
        "queue_path",
        "workflow",
        "lock_timeout",
        "leases_dir",
        "state_dir",
        "log",
        "store",
        "workspaces",
        "timezone",
        "sources",
        "automation",
    )
    _no_compare = (
        "sources",
        "automation",
    )

    # root, path, queue_path, leases_dir and state_dir: Paths (properties below), kept as the strings that
    # root_folder, config_file, queue_file, leases_folder and state_folder give: the commands an agent calls per task
    # use those, and import no pathlib (with fnmatch, urllib.parse and ipaddress, 0.6 times the interpreter's start).
    workflow: Workflow
    lock_timeout: float = 30.0
    log: LogConfig
    store: str = "file"  # which store holds the queue, leases and journal (see agentd.store.open_store)
    workspaces: WorkspaceSettings
    timezone: str = "UTC"  # budgets count spend per calendar day here
    sources: Mapping[str, str]  # "roles.builder.command" -> origin
    automation: Automation | None = None  # [[schedule]], [[rules]], [[hooks]]

    def __init__(
        self,
        root: StrPath,
        path: StrPath | None,
        queue_path: StrPath,
        workflow: Workflow,
        lock_timeout: float = 30.0,
        leases_dir: StrPath = ".leases",
        state_dir: StrPath = ".agentd",
        log: LogConfig | None = None,
        store: str = "file",
        workspaces: WorkspaceSettings | None = None,
        timezone: str = "UTC",
        sources: Mapping[str, str] | None = None,
        automation: Automation | None = None,
    ) -> None:
        set_field(self, "root_folder", _norm(root))
        set_field(self, "config_file", None if path is None else _norm(path))
        set_field(self, "queue_file", _norm(queue_path))
        set_field(self, "workflow", workflow)
        set_field(self, "lock_timeout", lock_timeout)
        set_field(self, "leases_folder", _norm(leases_dir))
        set_field(self, "state_folder", _norm(state_dir))
        set_field(self, "log", LogConfig() if log is None else log)
        set_field(self, "store", store)
        set_field(self, "workspaces", WorkspaceSettings() if workspaces is None else workspaces)
        set_field(self, "timezone", timezone)
        set_field(self, "sources", dict() if sources is None else sources)
        set_field(self, "automation", automation)

    root_folder: str
    config_file: str | None
    queue_file: str
    leases_folder: str
    state_folder: str

    @property
    def root(self) -> Path:
        """The project's folder."""
        return _as_path(self.root_folder)

    @property
    def path(self) -> Path | None:
        """agentd.toml (None: the project has none)."""
        return None if self.config_file is None else _as_path(self.config_file)

    @property
    def queue_path(self) -> Path:
        """The queue file."""
        return _as_path(self.queue_file)

    @property
    def leases_dir(self) -> Path:
        """The lease folder."""
        return _as_path(self.leases_folder)

    @property
    def state_dir(self) -> Path:
        """The project's state folder (``.agentd``)."""
        return _as_path(self.state_folder)

    @property
    def roles(self) -> Mapping[str, Role]:
        """The workflow's roles by name."""
        return self.workflow.roles

    def role(self, name: str) -> Role:
        """The role called ``name``; RoleNotFound (exit 6) when unknown."""
        try:
            return self.workflow.role(name)
        except KeyError:
            raise RoleNotFound(name, sorted(self.workflow.roles)) from None

    def with_role(self, role: Role) -> Config:
        """A copy with one role replaced (command-line overrides)."""
        roles = dict(self.workflow.roles)
        roles[role.name] = role
        return self.replace(workflow=self.workflow.replace(roles=roles))


def find_root(start: Path | None = None) -> Path:
    """The nearest folder upwards from ``start`` that holds agentd.toml, else ``start`` itself."""
    return _as_path(_find_root(os.fspath(start) if start else None))


def _find_root(start: str | None) -> str:
    """:func:`find_root`, a string."""
    here = folder = os.path.realpath(start or os.getcwd())  # (Path.resolve() is os.path.realpath)
    while True:
        if os.path.isfile(os.path.join(folder, CONFIG_NAME)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return here
        folder = parent


def _read_toml(path: str, *, cache: bool = False) -> tuple[dict[str, Any], bytes | None, bool]:
    """The parsed file; its bytes when ``cache`` and the cache missed or is to be kept again (:mod:`agentd.configcache`:
    to keep); whether the data passed the config schema as it is now (a cache hit that says so)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigInvalid(path, None, f"cannot read: {exc.strerror or exc}") from None
    if cache:
        from agentd import configcache

        cached = configcache.get(path, raw)
        if cached is not None:
            data, checked = cached
            return data, None if checked else raw, checked
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(path, None, f"not UTF-8 (byte {exc.start})") from None
    import tomllib  # (not needed when the cache holds the file)

    try:
        return tomllib.loads(text), raw if cache else None, False
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid(path, None, f"not valid TOML: {exc}") from None


def _claims(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _role(name: str, spec: Mapping[str, Any], tunables: Mapping[str, Any], backoff: Mapping[str, Any]) -> Role:
    merged_backoff = {**backoff, **spec.get("backoff", {})}
    values = {key: spec.get(key, tunables[key]) for key in TUNABLES}
    extra = {key: spec.get(key, tunables.get(key)) for key in OPTIONAL_TUNABLES}
    budget = extra["budget"] or {}
    return Role(
        name=name,
        claims=_claims(spec["claims"]),
        working=spec["working"],
        on_success=spec["on_success"],
        on_failure=spec.get("on_failure", "blocked"),
        outcomes={int(code): status for code, status in spec.get("outcomes", {}).items()},
        types=tuple(spec["types"]) if "types" in spec else None,
        wip=spec.get("wip"),
        command=tuple(spec["command"]) if "command" in spec else None,
        prompt=spec.get("prompt"),
        env=dict(spec.get("env", {})),
        interval=float(values["interval"]),
        lease_ttl=float(values["lease_ttl"]),
        heartbeat=float(values["heartbeat"]),
        timeout=float(values["timeout"]),
        max_attempts=int(values["max_attempts"]),
        grace=float(values["grace"]),
        kill_after=float(values["kill_after"]),
        fence_margin=None if extra["fence_margin"] is None else float(extra["fence_margin"]),
        max_repeats=int(values["max_repeats"]),
        allow_loop=bool(spec.get("allow_loop", False)),
        waiting=str(spec.get("waiting", "needs_feedback")),
        resume_command=tuple(spec["resume_command"]) if "resume_command" in spec else None,
        max_waiting=extra["max_waiting"],
        waiting_expiry=parse_duration(extra["waiting_expiry"]) if extra["waiting_expiry"] is not None else None,
        pause_on_exit=tuple(extra["pause_on_exit"] or ()),
        pause_for=parse_duration(extra["pause_for"]) if extra["pause_for"] is not None else 3600.0,
        budget_usd_per_day=float(budget["cost_usd_per_day"]) if "cost_usd_per_day" in budget else None,
        output=extra["output"],
        backoff=Backoff(
            initial=float(merged_backoff["initial"]),
            factor=float(merged_backoff["factor"]),
            max=float(merged_backoff["max"]),
        ),
    )


def _check_fencing(role: Role, spec: Mapping[str, Any], defaults: Mapping[str, Any], path: str) -> None:
    """Self-fencing must leave room: the margin under the lease's ttl, a heartbeat under ``lease_ttl - margin``."""

    def where(key: str) -> str:
        return f"$.roles.{role.name}.{key}" if key in spec else f"$.defaults.{key}"

    if role.margin >= role.lease_ttl:
        raise ConfigInvalid(
            path,
            where("fence_margin"),
            f"fence_margin {role.margin:g} s must be under lease_ttl {role.lease_ttl:g} s (role {role.name!r})",
        )
    if role.heartbeat >= role.fence_after:
        key = "heartbeat" if "heartbeat" in spec or "heartbeat" in defaults else "lease_ttl"
        raise ConfigInvalid(
            path,
            where(key),
            f"heartbeat {role.heartbeat:g} s must be under lease_ttl - fence_margin = {role.fence_after:g} s "
            f"(role {role.name!r}): a run is fenced when no heartbeat renews its lease for that long",
        )


def default_role_specs() -> dict[str, dict[str, Any]]:
    """The five-role pipeline as agentd.toml tables."""
    specs: dict[str, dict[str, Any]] = {}
    for name, claims, working, success in DEFAULT_PIPELINE:
        specs[name] = {"claims": claims, "working": working, "on_success": success, "on_failure": "blocked"}
        if name in DEFAULT_OUTCOMES:
            specs[name]["outcomes"] = {str(code): status for code, status in DEFAULT_OUTCOMES[name].items()}
    return specs


def _role_specs(data: Mapping[str, Any], where: str, path: str, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each role's effective table: a default role's keys overridden by what its [roles.NAME] table sets."""
    own: Mapping[str, Mapping[str, Any]] = data.get("roles") or {}
    replacing = bool(data.get("roles_replace_defaults", False))
    base = {} if replacing else default_role_specs()
    if replacing and not own:
        raise ConfigInvalid(path, "$.roles", "roles_replace_defaults = true, but no [roles.NAME] table is given")
    specs: dict[str, dict[str, Any]] = {}
    for name in [*base, *(name for name in own if name not in base)]:
        inherited, given = base.get(name, {}), own.get(name, {})
        spec = {**inherited, **given}
        for key in REQUIRED_ROLE_KEYS:
            if key not in spec:
                why = "roles_replace_defaults is set" if replacing else f"{name!r} is not a default role"
                raise ConfigInvalid(path, f"$.roles.{name}", f"{key!r} is a required property ({why})")
        claims = [spec["claims"]] if isinstance(spec["claims"], str) else spec["claims"]
        if spec["on_success"] in claims and not spec.get("allow_loop", False):
            raise ConfigInvalid(
                path,
                f"$.roles.{name}.on_success",
                f"{spec['on_success']!r} is a status this role claims, so every success would run the task again "
                "at once (a hot loop); set allow_loop = true in the table if that is meant",
            )
        for key in (*ROLE_KEYS, *TUNABLES, *OPTIONAL_TUNABLES, "backoff"):
            if key in given:
                sources[f"roles.{name}.{key}"] = f"{where} [roles.{name}]"
            elif key in inherited:
                sources[f"roles.{name}.{key}"] = DEFAULT
        specs[name] = spec
    return specs


def build(data: Mapping[str, Any], *, root: StrPath, path: StrPath | None, checked: bool = False) -> Config:
    """Validate parsed agentd.toml data and build the Config (queue path not yet overridden). ``checked``: the data
    passed the config schema already (:mod:`agentd.configcache` keeps only such data)."""
    folder, named = _norm(root), None if path is None else _norm(path)
    config_file = named or _join(folder, CONFIG_NAME)
    problem = None if checked else schema.first_error(data, "config")
    if problem is not None:
        raise ConfigInvalid(config_file, problem[0], problem[1])
    where = DEFAULT
    if named is not None:
        relative = _relative(named, folder)
        where = display_path(named) if relative is None else relative
    sources: dict[str, str] = {}
    defaults = _defaults()
    tunables = {**defaults["tunables"], **{k: v for k, v in data.get("defaults", {}).items() if k != "backoff"}}
    backoff = {**defaults["backoff"], **data.get("defaults", {}).get("backoff", {})}
    specs = _role_specs(data, where, config_file, sources)
    roles = {name: _role(name, spec, tunables, backoff) for name, spec in specs.items()}
    for name, spec in specs.items():
        _check_fencing(roles[name], spec, data.get("defaults", {}), config_file)
        for key in (*TUNABLES, *OPTIONAL_TUNABLES, "backoff"):
            if key not in spec:
                given = key in data.get("defaults", {})
                sources[f"roles.{name}.{key}"] = f"{where} [defaults]" if given else DEFAULT
    settings = ("queue", "store", "done_statuses", "final_statuses", "lock_timeout", "leases_dir", "state_dir")
    for key in (*settings, "unblock", "timezone"):
        sources[key] = where if key in data else DEFAULT
    unblock_spec = data.get("unblock", defaults["unblock"])
    unblock = UnblockRule(unblock_spec["from"], unblock_spec["to"]) if unblock_spec else None
    workflow = Workflow(
        roles=roles,
        done_statuses=frozenset(data.get("done_statuses", defaults["done_statuses"])),
        final_statuses=frozenset(data.get("final_statuses", defaults["final_statuses"])),
        unblock=unblock,
    )
    _check_waiting(workflow, config_file)
    log = {**defaults["log"], **data.get("log", {})}
    automation = None
    if any(key in data for key in ("schedule", "rules", "hooks")):
        from agentd.automation import settings as automation_settings  # cron, globs: only where automation is set

        automation = automation_settings.parse(data, _as_path(config_file), workflow)
    try:
        workspaces = WorkspaceSettings.from_config(data.get("workspaces", {})).with_roles(specs)
    except WorkspacesInvalid as exc:
        where_key = exc.key if exc.key.startswith("roles.") else f"workspaces.{exc.key}"
        raise ConfigInvalid(config_file, f"$.{where_key}", exc.reason) from None
    sources["workspaces"] = where if "workspaces" in data else DEFAULT
    return Config(
        root=folder,
        path=named,
        queue_path=_join(folder, data.get("queue", defaults["queue"])),
        workflow=workflow,
        lock_timeout=float(data.get("lock_timeout", defaults["lock_timeout"])),
        leases_dir=_join(folder, data.get("leases_dir", defaults["leases_dir"])),
        state_dir=_join(folder, data.get("state_dir", defaults["state_dir"])),
        log=LogConfig(**log),
        store=str(data.get("store", defaults["store"])),
        workspaces=workspaces,
        timezone=_timezone(data["timezone"], config_file) if "timezone" in data else "UTC",
        sources=sources,
        automation=automation,
    )


def _check_waiting(workflow: Workflow, path: str) -> None:
    """A waiting status must be one no role claims or works in (else a parked task would be taken at once), and
    not a done or final status (else it would never come back)."""
    for role in workflow.roles.values():
        others = [other.name for other in workflow.roles.values() if role.waiting in (*other.claims, other.working)]
        if others or workflow.is_final(role.waiting):
            why = f"{', '.join(others)} claims or works in it" if others else "it is a done or final status"
            raise ConfigInvalid(
                path,
                f"$.roles.{role.name}.waiting",
                f"{role.waiting!r} cannot be where tasks wait for answers: {why}",
            )


def _timezone(name: str, path: str) -> str:
    """The time zone named in agentd.toml, checked (ConfigInvalid naming ``$.timezone`` when unknown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (reading the zone costs a CLI call milliseconds)

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigInvalid(
            path, "$.timezone", f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Berlin)"
        ) from None
    return name


def load(
    *,
    root: StrPath | None = None,
    config_path: StrPath | None = None,
    queue: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
    store: str | None = None,
    cache: bool = False,
) -> Config:
    """Find the project, read agentd.toml (if any) and apply the environment and command-line overrides.

    With ``cache`` (the CLI's hot commands), agentd.toml is parsed through :mod:`agentd.configcache`, kept when the
    project's state folder is the default one beside it."""
    env = os.environ if environ is None else environ
    # (strings, not Paths: see Config; Path.resolve() is os.path.realpath)
    folder = None if root is None else os.fspath(root)
    given = None if config_path is None else _norm(config_path)
    if folder is None and env.get("AGENTD_ROOT"):
        folder = env["AGENTD_ROOT"]
    if given is None and env.get("AGENTD_CONFIG"):
        given = _norm(env["AGENTD_CONFIG"])
    if folder is None:
        folder = os.path.dirname(os.path.realpath(given)) if given else _find_root(None)
    folder = os.path.realpath(folder)
    if given is None and os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        given = _join(folder, CONFIG_NAME)
    data, parsed, checked = _read_toml(given, cache=cache) if given is not None else ({}, None, False)
    config = build(data, root=folder, path=given, checked=checked)
    if parsed is not None and given is not None and config.state_folder == _join(os.path.dirname(given), ".agentd"):
        from agentd import configcache

        configcache.put(given, parsed, data)
    origin = "flag --queue"
    if queue is None and env.get("AGENTD_QUEUE"):
        queue, origin = env["AGENTD_QUEUE"], "env AGENTD_QUEUE"
    if queue is not None:  # typed by a person: relative to where they are, not to the project root
        queue_file = os.path.realpath(queue)
        config = config.replace(queue_path=queue_file, sources={**config.sources, "queue": origin})
    origin = "flag --store"
    if store is None and env.get("AGENTD_STORE"):
        store, origin = env["AGENTD_STORE"], "env AGENTD_STORE"
    if store is not None:
        config = config.replace(store=store, sources={**config.sources, "store": origin})
    return config
