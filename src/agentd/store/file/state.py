"""The project state file, ``<state_dir>/state.json``, read and changed on its own: for tools and tests that have a
state folder and no store. Daemons, the CLI and the dashboard go through the store instead (``Store.state()`` and
``Txn.state``, written under the queue lock: :class:`agentd.store.file.store.FileStore`); the pauses in it are parsed
and changed by :mod:`agentd.core.control` either way.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentd.core.control import ProjectState, change_state, read_state
from agentd.errors import FileAccessError, StateInvalid

__all__ = ["NAME", "ProjectState", "StateInvalid", "change", "path_of", "read"]

NAME = "state.json"


def path_of(state_dir: Path) -> Path:
    return state_dir / NAME


def _data(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise FileAccessError(path, "cannot read the project state", exc.strerror or str(exc)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateInvalid(path, None, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateInvalid(path, "$", "must be an object")
    return data


def read(state_dir: Path) -> ProjectState:
    """The pauses in the state file (none when there is no file); StateInvalid naming the file and JSON path."""
    path = path_of(state_dir)
    return read_state(_data(path), path)


def _write(path: Path, data: dict[str, Any]) -> None:
    payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
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
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise FileAccessError(path, "cannot write the project state", exc.strerror or str(exc)) from None


def change(
    state_dir: Path,
    locked: Callable[[], contextlib.AbstractContextManager[Any]],
    edit: Callable[[ProjectState], ProjectState],
) -> tuple[ProjectState, ProjectState]:
    """Change the pauses under ``locked()``; returns (before, after). Nothing is written when the change makes no
    difference, nor when the file is bad (StateInvalid: it stays as it was); other keys are kept as they were."""
    path = path_of(state_dir)
    with locked():
        data = _data(path)
        before, after = change_state(data, path, edit)
        if after != before:
            _write(path, data)
    return before, after
