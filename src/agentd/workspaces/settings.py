"""``[workspaces]`` settings and the names they give a task's branch and folder (pure).

A task id is valid as a file name (:func:`agentd.core.model.valid_task_id`), but not every valid id makes a valid git
branch name (``A..B``, ``x.lock``, ``v1.``): :func:`branch_problem` says why, in the words of git's own rules, so a
task whose branch cannot exist is reported instead of half-made.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from agentd.core.record import Record, set_field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import PurePosixPath
    from typing import Any

KEYS = ("mode", "base", "branch", "path", "setup", "keep", "delete_branch")
STRATEGIES = ("ff", "merge", "rebase")
MERGES_BY_DEFAULT = frozenset({"integrator"})  # roles that merge in worktree mode unless they set merge = false
DEFAULT_ON_CONFLICT = "needs_adapt"
OWN = "own"  # a subtask's "workspace" field: a worktree of its own, not its parent's


class Keep(enum.StrEnum):
    """When a final task's worktree stays on disk."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class WorkspacesInvalid(ValueError):
    """A ``[workspaces]`` setting that cannot be used: ``workspaces.KEY: reason``."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"workspaces.{key}: {reason}")


def branch_problem(name: str) -> str | None:
    """Why ``name`` is not a valid git branch name (git-check-ref-format's rules), or None."""
    if not name or name.startswith("-"):
        return "is empty or starts with '-'"
    if name.endswith("/") or name.endswith(".") or "//" in name:
        return "ends with '/' or '.', or has '//'"
    if ".." in name or "@{" in name or name == "@":
        return "contains '..' or '@{'"
    bad = set(" ~^:?*[\\\x7f")
    if any(ch in bad or ord(ch) < 32 for ch in name):
        return "contains a space, a control character or one of ~ ^ : ? * [ \\"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return f"has a part {part!r} that starts with '.' or ends with '.lock'"
    return None


class WorkspaceSettings(Record):
    """The ``[workspaces]`` table."""

    _fields = ("mode", "base", "branch", "path", "setup", "keep", "delete_branch", "merges")
    _no_compare = ("merges",)

    mode: str = "none"  # "none": run in the project root; "worktree": a worktree per task
    base: str = "main"
    branch: str = "agentd/{task_id}"
    path: str = ".agentd/worktrees/{task_id}"
    setup: tuple[str, ...] = ()
    keep: Keep = Keep.ON_FAILURE
    delete_branch: bool = False
    # role -> (strategy, on_conflict status) for the roles that merge (worktree mode only)
    merges: Mapping[str, tuple[str, str]]

    def __init__(
        self,
        mode: str = "none",
        base: str = "main",
        branch: str = "agentd/{task_id}",
        path: str = ".agentd/worktrees/{task_id}",
        setup: tuple[str, ...] = (),
        keep: Keep = Keep.ON_FAILURE,
        delete_branch: bool = False,
        merges: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        set_field(self, "mode", mode)
        set_field(self, "base", base)
        set_field(self, "branch", branch)
        set_field(self, "path", path)
        set_field(self, "setup", setup)
        set_field(self, "keep", keep)
        set_field(self, "delete_branch", delete_branch)
        set_field(self, "merges", dict() if merges is None else merges)

    @property
    def enabled(self) -> bool:
        return self.mode == "worktree"

    @classmethod
    def from_config(cls, spec: Mapping[str, Any]) -> WorkspaceSettings:
        """Build and check the table; WorkspacesInvalid names the key that is wrong."""
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise WorkspacesInvalid(unknown[0], f"unknown key (known: {', '.join(KEYS)})")
        mode = spec.get("mode", "none")
        if mode not in ("none", "worktree"):
            raise WorkspacesInvalid("mode", "must be 'none' or 'worktree'")
        base = spec.get("base", "main")
        if not isinstance(base, str) or branch_problem(base):
            raise WorkspacesInvalid("base", f"{base!r} is not a branch name")
        branch = spec.get("branch", cls.branch)
        if not isinstance(branch, str) or "{task_id}" not in branch:
            raise WorkspacesInvalid("branch", "must be a branch name containing {task_id}")
        if branch_problem(branch.replace("{task_id}", "T1")):
            raise WorkspacesInvalid("branch", f"{branch!r} does not make a valid branch name")
        path = spec.get("path", cls.path)
        if not isinstance(path, str) or "{task_id}" not in path:
            raise WorkspacesInvalid("path", "must be a folder path containing {task_id}")
        shape = path.replace("{task_id}", "T1")  # (PurePosixPath's is_absolute() and parts, without pathlib)
        if shape.startswith("/") or ".." in shape.split("/"):
            raise WorkspacesInvalid("path", "must be relative to the project root and stay inside it")
        setup = spec.get("setup", [])
        if not isinstance(setup, list) or not all(isinstance(part, str) for part in setup):
            raise WorkspacesInvalid("setup", "must be an argv list of strings (no shell)")
        try:
            keep = Keep(spec.get("keep", "on-failure"))
        except ValueError:
            raise WorkspacesInvalid("keep", "must be 'never', 'on-failure' or 'always'") from None
        delete = spec.get("delete_branch", False)
        if not isinstance(delete, bool):
            raise WorkspacesInvalid("delete_branch", "must be true or false")
        return cls(str(mode), base, branch, path, tuple(setup), keep, delete)

    def with_roles(self, roles: Mapping[str, Mapping[str, Any]]) -> WorkspaceSettings:
        """The settings with each role's ``merge`` / ``on_conflict`` keys (its agentd.toml table) taken in."""
        merges: dict[str, tuple[str, str]] = {}
        for name, spec in roles.items():
            value = spec.get("merge", name in MERGES_BY_DEFAULT)
            strategy = "merge" if value is True else value
            if strategy is False:
                continue
            if strategy not in STRATEGIES:
                raise WorkspacesInvalid(f"roles.{name}.merge", "must be true, false, 'ff', 'merge' or 'rebase'")
            merges[name] = (str(strategy), str(spec.get("on_conflict", DEFAULT_ON_CONFLICT)))
        return self.replace(merges=merges)

    def merge_for(self, role: str) -> tuple[str, str] | None:
        """(strategy, on_conflict) when ``role`` merges the task's branch after a success, else None."""
        return self.merges.get(role) if self.enabled else None

    def branch_for(self, task_id: str) -> str:
        """The task's branch name; ValueError (saying why) when the id cannot make one."""
        name = self.branch.replace("{task_id}", task_id)
        problem = branch_problem(name)
        if problem:
            raise ValueError(f"task id {task_id!r} makes branch {name!r}, which git refuses: it {problem}")
        return name

    def path_for(self, task_id: str) -> PurePosixPath:
        """The task's worktree folder, relative to the project root."""
        from pathlib import PurePosixPath

        return PurePosixPath(self.path.replace("{task_id}", task_id))

    def keeps(self, failed: bool) -> bool:
        """Whether a final task's worktree stays (``failed``: it ended in a failure status)."""
        return self.keep is Keep.ALWAYS or (self.keep is Keep.ON_FAILURE and failed)


def owner(task_id: str, parent_of: Callable[[str], str | None], setting_of: Callable[[str], Any]) -> str:
    """Whose workspace a task works in: a subtask shares its parent's (up the tree) unless its ``workspace`` field is
    ``"own"``; a top-level task has its own."""
    seen = {task_id}
    while setting_of(task_id) != OWN:
        parent = parent_of(task_id)
        if parent is None or parent in seen:
            break
        seen.add(parent)
        task_id = parent
    return task_id


def branch_of(
    settings: WorkspaceSettings, task_id: str, parent_of: Callable[[str], str | None], setting_of: Callable[[str], Any]
) -> str | None:
    """The branch a task works on in worktree mode (its parent's for a subtask that shares it); None otherwise, or
    when its id makes no branch name."""
    if not settings.enabled:
        return None
    try:
        return settings.branch_for(owner(task_id, parent_of, setting_of))
    except ValueError:
        return None
