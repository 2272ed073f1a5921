"""The agentd error hierarchy and the exit codes the CLI maps it to.

Every error subclasses :class:`AgentdError` and the builtin that fits, and builds its one-line message from its
attributes (the file, the JSON path, the task id, the reason), so the CLI can print ``str(error)`` as it is.
"""

from __future__ import annotations

import enum
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


class ExitCode(enum.IntEnum):
    """Documented process exit codes (docs/reference/exit-codes.md)."""

    OK = 0
    FAILURE = 1  # a task this run started failed; doctor found problems
    USAGE = 2  # bad command line (click's own code)
    NOT_RUNNING = 3  # status: a role asked about is not running (LSB / systemctl is-active)
    BAD_DATA = 4  # queue, config, lease, PID or result file does not parse or validate
    LOCK_TIMEOUT = 5  # the queue lock could not be taken in time
    NOT_FOUND = 6  # an unknown task id or role
    CONFLICT = 7  # refused: stale fencing token, task already exists, transition not allowed
    IO_ERROR = 8  # a file or folder could not be read or written: permissions, a full or read-only disk
    INTERRUPTED = 130  # Ctrl-C


def display_path(path: str | Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it (a symlink is shown where it
    is, not where it points)."""
    if getattr(path, "uri", None):  # a database's address (agentd.store.postgres.connect.Address), not a file
        return str(path)
    from pathlib import Path  # (here: the hot commands name no file unless something went wrong)

    try:
        here = Path.cwd()
    except OSError:
        return str(path)
    try:
        return str(Path(os.path.abspath(path)).relative_to(here))
    except ValueError:
        pass
    try:
        return str(Path(path).resolve().relative_to(here))
    except (ValueError, OSError, RuntimeError):  # outside the folder; a symlink loop
        return str(path)


def _as_path(path: str | Path) -> Path:
    """``Path(path)``, pathlib imported here: the commands an agent calls per task raise none of these errors."""
    from pathlib import Path

    return Path(path)


class AgentdError(Exception):
    """Base of every error agentd raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class DataError(AgentdError, ValueError):
    """A file agentd reads does not parse or validate: ``FILE: $.json.path: reason``."""

    exit_code = ExitCode.BAD_DATA

    def __init__(self, path: str | Path, json_path: str | None, reason: str) -> None:
        self.path = _as_path(path)
        self.json_path = json_path
        self.reason = reason
        where = f"{display_path(path)}: {json_path}" if json_path else display_path(path)
        super().__init__(f"{where}: {reason}")


class QueueInvalid(DataError):
    """The queue file does not parse or validate."""


class ConfigInvalid(DataError):
    """agentd.toml does not parse or validate."""


class LeaseInvalid(DataError):
    """A lease file does not parse or validate."""


class StateInvalid(DataError):
    """The project state file (``.agentd/state.json``) does not parse."""


class ResultInvalid(DataError):
    """A task's result file does not parse or validate."""


class LockTimeout(AgentdError, TimeoutError):
    """The queue lock could not be taken within the timeout."""

    exit_code = ExitCode.LOCK_TIMEOUT

    def __init__(self, lock_path: str | Path, timeout: float) -> None:
        self.lock_path = _as_path(lock_path)
        self.timeout = timeout
        super().__init__(
            f"{display_path(lock_path)}: could not take the queue lock within {timeout:g} s "
            f"(another process holds it: `fuser -v {display_path(lock_path)}` shows which)"
        )


class TaskNotFound(AgentdError, LookupError):
    """No task with this id in the queue."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, task_id: str, path: str | Path | None = None) -> None:
        self.task_id = task_id
        self.path = _as_path(path) if path else None
        where = f"{display_path(path)}: " if path else ""
        super().__init__(f"{where}no task with id {task_id!r}")


class NoProject(AgentdError, LookupError):
    """Neither agentd.toml nor the queue is where agentd looked: the command was run outside any project."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, root: str | Path) -> None:
        self.root = _as_path(root)
        where = display_path(root)
        prefix = "" if where == "." else f"{where}: "
        super().__init__(f"{prefix}no agentd project here (no agentd.toml or queue): run `agentd init`, or pass --root")


class RoleNotFound(AgentdError, LookupError):
    """No role with this name in the workflow."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, role: str, known: list[str]) -> None:
        self.role = role
        self.known = known
        super().__init__(f"unknown role {role!r} (known: {', '.join(known) or 'none'})")


class AutomationNotFound(AgentdError, LookupError):
    """No schedule, rule or hook with this name."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no schedule, rule or hook is called {name!r} (known: {', '.join(known) or 'none'})")


class Conflict(AgentdError, RuntimeError):
    """A change was refused: stale fencing token, duplicate id, or a transition the workflow does not allow."""

    exit_code = ExitCode.CONFLICT

    def __init__(self, task_id: str | None, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id}: {reason}" if task_id else reason)


class UnknownStatus(AgentdError, ValueError):
    """A status no role claims, works in or moves to, and that is not final: a typo until proven otherwise."""

    exit_code = ExitCode.USAGE

    def __init__(self, status: str, suggestion: str | None) -> None:
        self.status = status
        self.suggestion = suggestion
        hint = f"did you mean {suggestion!r}? " if suggestion else ""
        super().__init__(
            f"status {status!r}: no role claims, works in or moves to it, and it is not final; "
            f"{hint}(--force sets it anyway)"
        )


class StaleToken(Conflict):
    """A write fenced with a lease token that is no longer current."""

    def __init__(self, task_id: str, given: int, current: int | None) -> None:
        self.given = given
        self.current = current
        now = "no lease" if current is None else f"current token is {current}"
        super().__init__(task_id, f"fencing token {given} is not current ({now}); write refused")


class ConfigError(AgentdError, ValueError):
    """The configuration is valid but cannot serve the request (say, a role without a command)."""

    exit_code = ExitCode.BAD_DATA

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = _as_path(path) if path else None
        self.reason = reason
        super().__init__(f"{display_path(path)}: {reason}" if path else reason)


class FileAccessError(AgentdError, OSError):
    """A file or folder agentd needs could not be opened, read or written (permissions, a full or read-only disk)."""

    exit_code = ExitCode.IO_ERROR

    def __init__(self, path: str | Path | None, action: str, reason: str) -> None:
        self.path = _as_path(path) if path is not None else None
        self.action = action
        self.reason = reason
        where = f"{display_path(path)}: " if path is not None else ""
        super().__init__(f"{where}{action}: {reason}")

    @classmethod
    def from_os_error(cls, exc: OSError, action: str = "cannot use it") -> FileAccessError:
        """The one-line form of an ``OSError`` (its file name, what was being done, the system's reason)."""
        return cls(exc.filename, action, exc.strerror or str(exc))


class StoreUnreachable(AgentdError, ConnectionError):
    """The store's server cannot be reached (or refused the connection); a daemon waits for it, a command exits 8."""

    exit_code = ExitCode.IO_ERROR

    def __init__(self, where: str, reason: str, origin: str = "") -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: cannot connect: {reason}" + (f" (store set by {origin})" if origin else ""))
