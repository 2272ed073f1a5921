"""The project's state beside the queue: the pauses people (and commands, and budgets) put on roles.

One small JSON file, ``<state_dir>/state.json``, never inside the queue file. It is changed only under the queue's
lock and written atomically (temp file, fsync, rename, folder fsync), so every daemon of a role sees a pause at once
(their watchers wake on its rename) and a crash leaves the old file or the new one, never half of either. A file
that does not parse is reported naming the file and the JSON path, and left byte-for-byte as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentd.core.control import ALL, Pause
from agentd.errors import DataError, FileAccessError

NAME = "state.json"
VERSION = 1


class StateInvalid(DataError):
    """The project's state file does not parse or validate."""


@dataclass(frozen=True)
class ProjectState:
    """What the state file holds; ``extra`` keeps keys this version does not know (written back as they were)."""

    pauses: tuple[Pause, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "version": VERSION, "pauses": [pause.to_dict() for pause in self.pauses]}

    def paused(self, role: str, pause: Pause) -> ProjectState:
        """With ``pause`` replacing the role's own pause (``role`` may be ALL)."""
        kept = tuple(p for p in self.pauses if p.role != role)
        return ProjectState((*kept, pause), self.extra)

    def resumed(self, roles: list[str] | None) -> tuple[ProjectState, list[Pause]]:
        """Without the pauses of ``roles`` (None: every pause); also returns the pauses removed."""
        gone = [p for p in self.pauses if roles is None or p.role in roles]
        return ProjectState(tuple(p for p in self.pauses if p not in gone), self.extra), gone

    def pruned(self, now: datetime) -> ProjectState:
        """Without the pauses that have ended."""
        return ProjectState(tuple(p for p in self.pauses if p.until is None or now < p.until), self.extra)


def path_of(state_dir: Path) -> Path:
    return state_dir / NAME


def _parse(raw: bytes, path: Path) -> ProjectState:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateInvalid(path, None, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateInvalid(path, "$", "must be an object")
    pauses = data.get("pauses", [])
    if not isinstance(pauses, list):
        raise StateInvalid(path, "$.pauses", "must be a list")
    parsed = []
    for index, item in enumerate(pauses):
        where = f"$.pauses[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("role"), str) or not item["role"]:
            raise StateInvalid(path, where, "must be an object with a role")
        try:
            parsed.append(Pause.from_dict(item))
        except (KeyError, ValueError, TypeError) as exc:
            raise StateInvalid(path, where, f"not a pause: {exc}") from None
    extra = {key: value for key, value in data.items() if key not in ("version", "pauses")}
    return ProjectState(tuple(parsed), extra)


def read(state_dir: Path) -> ProjectState:
    """The project's state (empty when there is no file); StateInvalid naming the file and JSON path when bad."""
    path = path_of(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ProjectState()
    except OSError as exc:
        raise FileAccessError(path, "cannot read the project state", exc.strerror or str(exc)) from None
    return _parse(raw, path)


def _write(path: Path, state: ProjectState) -> None:
    payload = (json.dumps(state.to_dict(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise FileAccessError(path, "cannot write the project state", exc.strerror or str(exc)) from None


def change(
    state_dir: Path,
    locked: Callable[[], contextlib.AbstractContextManager[Any]],
    edit: Callable[[ProjectState], ProjectState],
) -> tuple[ProjectState, ProjectState]:
    """Change the state under ``locked()`` (the queue's lock); returns (before, after). Nothing is written when the
    change makes no difference, nor when the file is bad (StateInvalid: it stays as it was)."""
    with locked():
        before = read(state_dir)
        after = edit(before)
        if after.to_dict() != before.to_dict():
            _write(path_of(state_dir), after)
    return before, after


def pauses_for(state: ProjectState, role: str) -> Iterator[Pause]:
    """The pauses that may stop ``role`` (its own and the one for every role)."""
    return (pause for pause in state.pauses if pause.role in (role, ALL))
