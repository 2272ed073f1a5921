"""``agentd doctor``: look at the whole project and say what needs attention, with the command that fixes each finding.

It decides nothing itself and reads through the project's :class:`~agentd.store.base.Store`: queue problems come
from its read and :mod:`agentd.core.validate`, stale leases and stuck tasks from :func:`agentd.run.recovery.plan`
(which judges with :func:`agentd.core.scheduler.judge`), WIP from :mod:`agentd.core.scheduler`, daemons from the
store's registry. The lease folder's own shape (stray entries, a symlink out of the project) and the file systems
under the project are the file store's, looked at directly. Its safe fixes are the very code path of
``agentd leases prune`` and the removal of PID files whose lock is free. The mount-table parser is a pure function.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from agentd import actions
from agentd.config import CONFIG_NAME, Config
from agentd.core import command, control, scheduler
from agentd.core.clock import SystemClock, boottime, format_timestamp
from agentd.core.model import Task, valid_task_id
from agentd.core.scheduler import LeaseObservation
from agentd.errors import AgentdError, QueueInvalid, display_path
from agentd.hostinfo import boot_id, pid_namespace, process_name
from agentd.run import recovery
from agentd.service import background as service
from agentd.store import open_store
from agentd.store.base import Store
from agentd.store.file import leases
from agentd.store.file.leases import LeaseDir
from agentd.store.file.pidfile import role_of, silence
from agentd.store.file.queuefile import QueueMissing
from agentd.store.file.queuefile import Snapshot as FileSnapshot

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
PRUNE = "agentd leases prune"
EDIT_QUEUE = "edit the file; `agentd queue validate` to check"
LOG_LIMIT = 500 * 1024 * 1024
# A queue file this large, holding this many finished top-level tasks, is named with the archive as its fix: every
# daemon pass copies the whole file (docs/benchmarks.md, issue 18: 10,000 finished tasks, 6 MB, drain at about 0.55 x a
# small queue's rate, whatever characters the file holds).
QUEUE_LARGE_BYTES = 1 << 20
QUEUE_LARGE_FINISHED = 1000
MOUNT_TABLES = (Path("/proc/self/mountinfo"), Path("/proc/mounts"))
# Filesystems where flock is missing, local to one client, or emulated: two hosts (or even two processes) can each
# believe they hold the queue or a lease.
NETWORK_FS = (
    frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "9p", "vboxsf", "davfs"})
    | frozenset({"lustre", "glusterfs"})
    | frozenset({"fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse", "fuse.glusterfs", "fuse.ceph-fuse"})
)


@dataclass(frozen=True)
class Finding:
    """One thing doctor found, and how to fix it. ``safe_fix``: ``agentd doctor --fix`` applies the fix."""

    severity: Severity
    code: str
    message: str
    fix: str = ""
    safe_fix: bool = False
    subject: str | None = None  # the task id, file, role or status it is about

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_attention(findings: Iterable[Finding]) -> bool:
    """Whether anything beyond information was found (doctor's exit code 1)."""
    return any(finding.severity != "info" for finding in findings)


# -- the mount table (pure) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    point: str
    fstype: str
    source: str = ""

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_FS


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def parse_mount_table(text: str) -> list[Mount]:
    """Mounts from ``/proc/self/mountinfo`` or ``/proc/mounts`` text (either format), in table order."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 9 and "-" in parts[6:]:  # mountinfo: id parent dev root point options [optional...] - type src
            separator = parts.index("-", 6)
            source = parts[separator + 2] if len(parts) > separator + 2 else ""
            mounts.append(Mount(_unescape(parts[4]), parts[separator + 1], _unescape(source)))
        elif len(parts) >= 3:  # /proc/mounts: source point type options dump pass
            mounts.append(Mount(_unescape(parts[1]), parts[2], _unescape(parts[0])))
    return mounts


def mount_of(path: str, mounts: Iterable[Mount]) -> Mount | None:
    """The mount an absolute, resolved path lives on: the longest mount point above it (the later one on a tie)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def network_findings(places: Mapping[str, str], mounts: list[Mount]) -> list[Finding]:
    """A warning per network mount holding any of ``places`` (label -> absolute resolved path)."""
    by_mount: dict[Mount, list[str]] = {}
    for label, path in places.items():
        mount = mount_of(path, mounts)
        if mount is not None and mount.network:
            by_mount.setdefault(mount, []).append(label)
    return [
        Finding(
            "warning",
            "network-fs",
            f"{' and '.join(labels)} {'is' if len(labels) == 1 else 'are'} on {mount.fstype} ({mount.source} at "
            f"{mount.point}): flock is unreliable there, so two daemons could both believe they hold a lock",
            "move the project (queue, .leases/, .agentd/) to a local disk, or run every daemon on one host",
            subject=mount.point,
        )
        for mount, labels in by_mount.items()
    ]


# -- the checks -----------------------------------------------------------------------------------------------------


@dataclass
class _Queue:
    tasks: list[Task] | None = None  # None: the queue could not be read
    limits: Mapping[str, int] | None = None
    writable: bool = False  # readable as a whole, so a transaction (prune) can run
    quarantined: frozenset[str] = frozenset()  # tasks with a problem of their own: nothing touches them
    raw: bytes = b""  # the queue file's bytes as read (the file store's; b"" for a database's rows)


def _queue_findings(config: Config, store: Store, out: list[Finding]) -> _Queue:
    name = display_path(store.where)  # (the queue file, or a database store's address)
    try:
        snapshot = store.read()
    except QueueMissing as exc:
        out.append(Finding("error", "queue-missing", str(exc), "agentd init (or point --queue / AGENTD_QUEUE at it)"))
        return _Queue()
    except QueueInvalid as exc:
        # The store reports the first conflict marker as its reason (with its line); it carries no code of its own.
        marker = exc.json_path is None and "unresolved git conflict marker" in exc.reason
        code, fix = ("conflict-marker", "resolve the merge, " + EDIT_QUEUE) if marker else ("queue-invalid", EDIT_QUEUE)
        out.append(Finding("error", code, str(exc), fix, subject=str(config.queue_path)))
        return _Queue()
    fixes = {
        "duplicate": "give one of the tasks a new id; `agentd queue validate` to check",
        "unknown-dep": "add the missing task or drop the dependency; `agentd queue validate` to check",
        "cycle": "remove one dependency of the cycle; `agentd queue validate` to check",
        "task-invalid": f"fix that field of the task in {name}; `agentd queue validate` to check",
        "unencodable": f"retype that text in {name} (half a character is left there); `agentd queue validate` to check",
    }
    for problem in snapshot.errors:
        message = f"{problem.line(name)} (task {problem.task} is quarantined: nothing claims, runs or changes it)"
        out.append(
            Finding("error", problem.code, message, fixes.get(problem.code, EDIT_QUEUE), subject=problem.task or name)
        )
    for problem in snapshot.warnings:
        if problem.code != "unknown-status":  # covered, per status, by the never-picked-up check
            out.append(Finding("warning", problem.code, problem.line(name), EDIT_QUEUE, subject=name))
    if not snapshot.errors:
        out.append(Finding("info", "queue-valid", f"{name}: valid ({len(snapshot.tasks)} tasks)"))
    quarantined = frozenset(snapshot.quarantined)
    raw = snapshot.raw if isinstance(snapshot, FileSnapshot) else b""
    return _Queue(snapshot.tasks, snapshot.wip_limits, writable=True, quarantined=quarantined, raw=raw)


def queue_size_finding(name: str, size: int, finished: int, total: int) -> Finding | None:
    """The ``queue-large`` finding for a queue file of ``size`` bytes holding ``finished`` finished top-level tasks of
    its ``total`` top-level ones (pure): None under :data:`QUEUE_LARGE_BYTES` or :data:`QUEUE_LARGE_FINISHED`."""
    if size < QUEUE_LARGE_BYTES or finished < QUEUE_LARGE_FINISHED:
        return None
    message = (
        f"{name}: {size / 2**20:.1f} MB, {finished:,} of its {total:,} tasks finished: each daemon pass copies the "
        "whole file"
    )
    fix = "agentd queue archive --older-than 7d (finished tasks move to the archive and stay readable)"
    return Finding("info", "queue-large", message, fix, subject=name)


def _size_findings(config: Config, store: Store, queue: _Queue, out: list[Finding]) -> None:
    """A big queue file, with the archive as its fix (the file store's, from the bytes its check read: a database's
    rows are not copied a pass)."""
    raw = queue.raw
    if queue.tasks is None or not raw:
        return
    top = [task for task in queue.tasks if task.parent is None]  # (what the archive moves: a task with its subtasks)
    finished = sum(1 for task in top if config.workflow.is_final(task.status))
    total = len(top)
    found = queue_size_finding(display_path(store.where), len(raw), finished, total)
    if found is not None:
        out.append(found)


def _lease_dir_findings(config: Config, store: Store, queue: _Queue, now: datetime, out: list[Finding]) -> None:
    """The lease folder's own shape (only the file store has one: it is looked at, never created), then the leases."""
    folder_path = config.leases_dir
    shown = display_path(folder_path)
    observed: dict[str, LeaseObservation] = {}
    names: list[str] = []
    if folder_path.exists() or folder_path.is_symlink():  # never created here: doctor only looks
        folder = LeaseDir(folder_path, config.root)
        try:
            observed = folder.observe_all()
            names = sorted(os.listdir(folder_path))
        except (AgentdError, OSError) as exc:
            problem = str(exc) if isinstance(exc, AgentdError) else f"{shown}: {exc.strerror or exc}"
            fix = f"make {shown} a folder inside the project (remove what is there; agentd recreates it)"
            out.append(Finding("error", "lease-dir-unsafe", problem, fix, subject=str(folder_path)))
            return
        finally:
            folder.close()
    if queue.tasks is not None:
        _recovery_findings(config, store, queue, observed, now, out)
    else:
        for task_id, seen in sorted(observed.items()):
            if seen.error is not None:
                message = f"{shown}/{task_id}{leases.SUFFIX}: unparsable lease file: {seen.error}"
                fix = f"fix the queue first, then `{PRUNE}`"
                out.append(Finding("error", "unparsable-lease", message, fix, subject=task_id))
    for name in names:
        is_lease = name.endswith(leases.SUFFIX) and valid_task_id(name[: -len(leases.SUFFIX)])
        if not is_lease and name not in (leases.TOKENS, leases.TOKENS + ".tmp") and leases.spare_owner(name) is None:
            message = f"{shown}/{name}: not a lease file (agentd ignores it)"
            out.append(Finding("warning", "stray-lease-entry", message, f"rm -r {shown}/{name}", subject=name))


def _hung_note(store: Store, item: recovery.Recovery) -> str:
    """What prune can do about a hung holder on this kernel: kill it, unless it lives in another PID namespace."""
    record = store.read_lease(item.task_id)
    if record is not None and record.pid_ns is not None and pid_namespace() not in (None, record.pid_ns):
        where = record.owner or record.host
        return (
            f"; its holder ({where}) is hung in another PID namespace (a container) on this kernel: its lock is never"
            " broken and prune cannot kill it; stop it from its own container"
        )
    return f"; its holder is hung: prune kills {_holders(store, item.task_id)}"


def _holders(store: Store, task_id: str) -> str:
    """The processes really holding a lease's lock, named (``pid 812 (sleep), pid 790 (python3)``)."""
    try:
        pids = store.holders(task_id)
    except (AgentdError, OSError):
        pids = []
    return ", ".join(f"pid {pid} ({process_name(pid)})" for pid in pids) or "the processes holding its lock"


def _recovery_findings(
    config: Config,
    store: Store,
    queue: _Queue,
    observed: Mapping[str, LeaseObservation],
    now: datetime,
    out: list[Finding],
) -> None:
    assert queue.tasks is not None
    shown = display_path(config.leases_dir)
    fix = PRUNE if queue.writable else f"fix the queue first, then `{PRUNE}`"
    plans = recovery.plan(queue.tasks, observed, config.workflow, now, held=queue.quarantined)
    planned = {item.task_id for item in plans}
    status = {task.id: task.status for task in queue.tasks}
    for item in plans:
        seen = observed.get(item.task_id)
        file = f"{shown}/{item.task_id}{leases.SUFFIX}"
        requeue = item.action is recovery.Action.REQUEUE
        if seen is not None and seen.error is not None:
            also = f"; task {item.task_id} is stuck in {status[item.task_id]!r}" if requeue else ""
            message = f"{file}: unusable lease file, no holder: {seen.error}{also}"
            out.append(Finding("error", "unparsable-lease", message, fix, queue.writable, item.task_id))
        elif requeue and seen is None:
            message = f"task {item.task_id} is {item.cause}"
            out.append(Finding("error", "stuck-task", message, fix, queue.writable, item.task_id))
        elif requeue:
            hung = _hung_note(store, item) if item.kill and seen else ""
            message = f"task {item.task_id} in {status[item.task_id]!r} has a stale lease: {item.cause}{hung}"
            out.append(Finding("error", "stale-lease", message, fix, queue.writable, item.task_id))
        else:
            out.append(Finding("warning", "orphaned-lease", f"{file}: {item.cause}", fix, queue.writable, item.task_id))
    for task_id, seen in sorted(observed.items()):
        if seen.error is None or task_id in planned:
            continue
        file = f"{shown}/{task_id}{leases.SUFFIX}"
        if seen.locked is None:  # unopenable, or a folder with files in it: agentd leaves it alone
            stuck = status.get(task_id)
            also = f"; task {task_id} ({stuck!r}) cannot be claimed or recovered until it is gone" if stuck else ""
            fix_alone = f"look at it (ls -la {file}); if no agentd of another user holds it, remove it (rm -r {file})"
            message = f"{file}: {seen.error}{also}"
            out.append(Finding("error", "blocked-lease-path", message, fix_alone, subject=task_id))
            continue
        message = f"{file}: unparsable lease file, but its lock is held: {seen.error}"  # a live process owns it
        fix_held = f"let its holder finish (or stop it), then `{PRUNE}`"
        out.append(Finding("warning", "unparsable-lease", message, fix_held, subject=task_id))


def _workflow_findings(config: Config, queue: _Queue, out: list[Finding]) -> None:
    settings = display_path(config.path) if config.path else CONFIG_NAME
    for role in config.workflow.roles.values():
        if role.command is None:
            message = f"role {role.name!r} has no command: its daemon refuses to start"
            fix = f"set [roles.{role.name}] command in {settings}"
            out.append(Finding("warning", "role-no-command", message, fix, subject=role.name))
        unknown = command.unknown_placeholders(role)
        if unknown:
            fix = f"fix the spelling in [roles.{role.name}] of {settings}, or remove the braces"
            message = command.describe_unknown(role, unknown)
            out.append(Finding("warning", "unknown-placeholder", message, fix, subject=role.name))
    if queue.tasks is None:
        return
    _wip_findings(config, queue.tasks, queue.limits or {}, out)
    _status_findings(config, queue.tasks, settings, out)


def _wip_findings(config: Config, tasks: list[Task], limits: Mapping[str, int], out: list[Finding]) -> None:
    for role in config.workflow.roles.values():
        holders = scheduler.in_progress(tasks, role)
        limit = scheduler.wip_limit(role, limits)
        if len(holders) > limit:
            holding = ", ".join(task.id for task in holders)
            message = (
                f"{role.name}: {len(holders)} tasks in {role.working!r}, over its WIP limit of {limit} ({holding})"
            )
            fix = (
                f"no automatic fix: {role.name} claims nothing new until they finish; raise [roles.{role.name}] wip "
                f"or the queue's wip_limits if the limit is too low"
            )
            out.append(Finding("warning", "wip-over-limit", message, fix, subject=role.name))


def _status_findings(config: Config, tasks: list[Task], settings: str, out: list[Finding]) -> None:
    """Statuses no role claims or works in, that are not final and that the unblock rule does not move."""
    workflow = config.workflow
    waiting: dict[str, list[str]] = {}
    unblock_from = workflow.unblock.from_status if workflow.unblock is not None else None
    asking: list[str] = []
    for task in tasks:
        status = task.status
        if workflow.role_claiming(status) or workflow.role_working_in(status) or workflow.is_final(status):
            continue
        asker = workflow.roles.get(task.asked_by or "")
        if asker is not None and status == asker.waiting and not task.answered:
            asking.append(task.id)  # waits for a person, not forgotten
            continue
        if status != unblock_from:
            waiting.setdefault(status, []).append(task.id)
    known = workflow.known_statuses()
    for stuck, ids in waiting.items():
        unknown = "" if stuck in known else ", and no role or rule knows it (a typo?)"
        listed = ", ".join(ids)
        message = f"{len(ids)} task(s) in status {stuck!r} are never picked up ({listed}): no role claims it{unknown}"
        fix = f"add {stuck!r} to a role's claims in {settings}, or move them: `agentd queue set-status {ids[0]} STATUS`"
        out.append(Finding("warning", "never-picked-up", message, fix, subject=stuck))
    if asking:
        message = f"{len(asking)} task(s) wait for an answer to their question ({', '.join(asking)})"
        fix = f"`agentd queue waiting` lists the questions; `agentd queue answer {asking[0]} TEXT` answers one"
        out.append(Finding("info", "waiting-for-answers", message, fix, subject=asking[0]))


def _pause_findings(store: Store, now: datetime, out: list[Finding]) -> None:
    """Pauses in force (people's, commands', budgets'), and a state file that cannot be read."""
    try:
        pauses = actions.project_state(store).pauses
    except (AgentdError, OSError) as exc:
        where = actions.state_where(store)
        fix = f"fix or remove {display_path(where)} (it holds pauses and automation switches: removing it clears both)"
        out.append(Finding("error", "state-invalid", str(exc), fix, subject=str(where)))
        return
    for pause in pauses:
        if not pause.active(now):
            continue
        who = "every role" if pause.role == control.ALL else pause.role
        until = f"until {format_timestamp(pause.until)}" if pause.until else "until resumed"
        by = f" by {pause.by}" if pause.by else ""
        message = f"{who} is paused {until}{by}: {pause.reason or 'no reason given'}; it claims nothing"
        fix = f"agentd resume {'' if pause.role == control.ALL else pause.role}".strip()
        out.append(Finding("info", "paused", message, fix, subject=pause.role))


def _pid_findings(store: Store, now: datetime, out: list[Finding]) -> None:
    for seen in store.daemons():
        path = seen.path
        name = ".".join(part for part in role_of(path) if part)
        quiet = silence(seen.info, now, boottime(), boot_id()) if seen.running and seen.info else None
        if seen.running and seen.info is not None and quiet is not None:
            message = (
                f"{name} daemon (pid {seen.info.pid}) holds its PID file but has not responded for {quiet:.0f} s"
                " (stopped: SIGSTOP, a debugger): its leases go stale and peers kill it"
            )
            fix = f"kill -CONT {seen.info.pid} if it was stopped; else agentd stop {seen.info.role}"
            out.append(Finding("error", "daemon-not-responding", message, fix, subject=str(path)))
        elif seen.running:
            pid = f" (pid {seen.info.pid})" if seen.info else ""
            out.append(Finding("info", "daemon-running", f"{name} daemon is running{pid}", subject=str(path)))
        elif seen.error is not None:
            message = f"{display_path(path)}: PID file of a {name} daemon: {seen.error}; running or not is unknown"
            fix = f"ls -l {display_path(path)}; if no daemon of another user runs, rm {display_path(path)}"
            out.append(Finding("error", "unreadable-pid-file", message, fix, subject=str(path)))
        elif os.path.lexists(path):
            why = seen.stale or "empty file"
            message = f"{display_path(path)}: PID file of a {name} daemon that is not running ({why})"
            out.append(Finding("warning", "dead-pid-file", message, f"rm {display_path(path)}", True, str(path)))


def _filesystem_findings(config: Config, mount_table: str | None, out: list[Finding]) -> None:
    if mount_table is None:
        for table in MOUNT_TABLES:
            with contextlib.suppress(OSError):
                mount_table = table.read_text(encoding="utf-8", errors="replace")
                break
    if mount_table is None:
        out.append(Finding("info", "fs-unknown", "no mount table to read: the network-filesystem check was skipped"))
        return
    places = {
        "the queue": os.path.dirname(os.path.realpath(config.queue_path)),
        "the lease folder": os.path.realpath(config.leases_dir),
        "the PID files": os.path.realpath(service.run_dir(config)),
    }
    out.extend(network_findings(places, parse_mount_table(mount_table)))


def _tree_bytes(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_size
    return total


def _log_findings(config: Config, limit: int, out: list[Finding]) -> None:
    folder = config.state_dir / "logs"
    if not folder.is_dir():
        return
    size = _tree_bytes(folder)
    shown = f"{display_path(folder)}: {size / 2**20:.1f} MB of logs"
    if size > limit:
        message = f"{shown}, over {limit / 2**20:.0f} MB"
        fix = "lower [log] keep_task_logs / keep_task_log_days (and max_bytes / backups) in agentd.toml"
        out.append(Finding("warning", "logs-large", message, fix, subject=str(folder)))
    else:
        out.append(Finding("info", "logs-size", shown, subject=str(folder)))


def _workspace_findings(config: Config, queue: _Queue, out: list[Finding], now: datetime) -> None:
    """Worktree mode: git and the base branch are there; lock files a dead git left; worktrees whose task is gone
    (a safe fix removes them)."""
    if not config.workspaces.enabled:
        return
    from agentd.workspaces import inventory
    from agentd.workspaces.git import GitError

    trouble = inventory.problems(config)
    for code, message, how in trouble:
        out.append(Finding("error", code, message, how, subject=str(config.root)))
    if trouble:
        return
    try:
        stale = inventory.stale_locks(config, now.timestamp())
    except (GitError, OSError):  # (git failing here is what the checks above report)
        stale = []
    for path, age in stale:
        message = (
            f"git's lock file {display_path(path)} was left {age / 60:.0f} min ago by a git that is no longer running:"
            " every git that needs it fails (merges wait)"
        )
        fix = f"rm {path} (agentd removes only the ones its own killed git work left)"
        out.append(Finding("warning", "git-lock-left", message, fix, subject=str(path)))
    if queue.tasks is None:
        return
    statuses = {task.id: task.status for task in queue.tasks}
    for entry in inventory.inventory(config, statuses, sizes=False):
        if entry.status is None:
            where = display_path(entry.path)
            message = f"the worktree {where} belongs to task {entry.task_id}, which is not in the queue"
            out.append(Finding("warning", "workspace-orphan", message, "agentd workspace clean", True, entry.task_id))


def diagnose(
    config: Config, now: datetime, *, mount_table: str | None = None, log_limit: int = LOG_LIMIT
) -> list[Finding]:
    """Every finding for the project, errors first (then in check order). Reads; never writes or creates anything.

    ``mount_table`` is the text of ``/proc/self/mountinfo`` (read from the system when None).
    """
    found: list[Finding] = []
    try:
        store = open_store(config)
    except AgentdError as exc:
        fix = 'store = "file" in agentd.toml (the default), or unset --store / AGENTD_STORE'
        found.append(Finding("error", "store-unavailable", str(exc), fix))
        return found
    queue = _queue_findings(config, store, found)
    _size_findings(config, store, queue, found)
    _lease_dir_findings(config, store, queue, now, found)
    _workflow_findings(config, queue, found)
    _pid_findings(store, now, found)
    _pause_findings(store, now, found)
    _filesystem_findings(config, mount_table, found)
    _log_findings(config, log_limit, found)
    _workspace_findings(config, queue, found, now)
    return sorted(found, key=lambda finding: SEVERITIES.index(finding.severity))


# -- the safe fixes -------------------------------------------------------------------------------------------------


def _prune(config: Config) -> list[str]:
    """Exactly what ``agentd leases prune`` does (:func:`agentd.run.recovery.prune`), at the time it is done."""
    try:
        store = open_store(config)
    except AgentdError as exc:
        return [f"could not prune stale leases: {exc}"]
    try:
        done, hung = recovery.prune(store, config.workflow, SystemClock())
    except (AgentdError, OSError) as exc:
        return [f"could not prune stale leases: {exc}"]
    finally:
        store.close()
    lines = [f"killed the hung holder of {item.task_id}; its lease is still locked: run again" for item in hung]
    for item in done:
        what = "requeued" if item.action is recovery.Action.REQUEUE else "lease file removed"
        lines.append(f"cleared {item.task_id}: {item.cause} ({what})")
    return lines


def remove_dead_pid_file(path: Path) -> str:
    """Remove a PID file only while its lock is free and the path still names the file locked; say what happened.

    Safe against a daemon starting meanwhile: a starter re-checks after locking that the path names its inode.
    """
    shown = display_path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return f"{shown}: already gone"
    except OSError as exc:
        return f"left {shown}: cannot open it ({exc.strerror}); remove it by hand"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"left {shown}: its daemon is running (the lock is held)"
        opened = os.fstat(fd)
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return f"{shown}: already gone"
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            return f"left {shown}: a new daemon replaced it meanwhile"
        os.unlink(path)
        return f"removed {shown} (its daemon is not running)"
    finally:
        os.close(fd)


def fix(config: Config, findings: Iterable[Finding], now: datetime) -> list[str]:
    """Apply the safe fixes among ``findings``: prune stale leases (once) and remove dead PID files. What was done."""
    safe = [finding for finding in findings if finding.safe_fix]
    done: list[str] = []
    if any(finding.fix == PRUNE for finding in safe):
        done += _prune(config)
    for finding in safe:
        if finding.code == "dead-pid-file" and finding.subject:
            done.append(remove_dead_pid_file(Path(finding.subject)))
    orphans = [finding.subject for finding in safe if finding.code == "workspace-orphan" and finding.subject]
    if orphans:
        from agentd.workspaces import inventory

        entries = [e for e in inventory.inventory(config, {}, sizes=False) if e.task_id in orphans]
        done += inventory.clean(config, entries)
    return done
