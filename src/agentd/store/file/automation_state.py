"""Automation's files: the on/off switches people set (``.agentd/state.json``) and what the active automation process
remembers (``.agentd/automation/memory.json``: last firings, last triggers, last deliveries, the journal cursor).

Both are replaced atomically (a temporary file, fsynced, renamed over), so a reader never sees half a file.
``state.json`` is shared with other switches (pauses): a change takes its lock (``state.json.lock``), re-reads the
file, changes only the ``automation`` key and writes it back, so no other key is lost; a file that does not parse is
refused, left byte-for-byte as it was. The memory file has one writer, the process holding the active lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.errors import DataError

STATE_NAME = "state.json"
ALL = "*"  # the switch that turns every schedule, rule and hook off


class StateInvalid(DataError):
    """``.agentd/state.json`` or the automation memory does not parse."""


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_NAME


def memory_path(state_dir: Path) -> Path:
    return state_dir / "automation" / "memory.json"


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON: temporary file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.agentd-tmp")
    payload = (json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    try:
        with open(temp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when there is no file); StateInvalid (naming the file) when it is not one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateInvalid(path, None, f"not JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise StateInvalid(path, "$", "must be a JSON object")
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Switches:
    """Which schedules, rules and hooks people turned off (``ALL``: everything)."""

    off: frozenset[str] = frozenset()

    def enabled(self, name: str) -> bool:
        return ALL not in self.off and name not in self.off

    @classmethod
    def from_state(cls, data: dict[str, Any], path: Path) -> Switches:
        section = data.get("automation", {})
        off = section.get("disabled", []) if isinstance(section, dict) else None
        if not isinstance(off, list) or not all(isinstance(name, str) for name in off):
            raise StateInvalid(path, "$.automation.disabled", "must be a list of names")
        return cls(frozenset(off))


def read_switches(state_dir: Path) -> Switches:
    path = state_path(state_dir)
    return Switches.from_state(read_json(path), path)


def set_enabled(
    state_dir: Path,
    name: str | None,
    enabled: bool,
    locked: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> Switches:
    """Turn one name (None: every schedule, rule and hook) on or off, persistently; the switches now.

    With no name, enabling turns everything on (every switch cleared), disabling turns everything off."""
    path = state_path(state_dir)
    # ``locked``: the queue's lock, which every other writer of state.json (pauses) takes too, so neither loses the
    # other's change; its own lock only where there is no queue to lock (tests of this module alone).
    with (locked or (lambda: _locked(path)))():
        data = read_json(path)
        current = Switches.from_state(data, path)
        off = set(current.off)
        if name is None:
            off = set() if enabled else off | {ALL}
        elif enabled:
            off.discard(name)
        else:
            off.add(name)
        section = data.get("automation")
        data["automation"] = {**(section if isinstance(section, dict) else {}), "disabled": sorted(off)}
        write_atomic(path, data)
        return Switches(frozenset(off))


def read_memory(state_dir: Path) -> dict[str, Any]:
    """What the active automation process last recorded ({} when nothing yet, or when unreadable: it is rebuilt)."""
    try:
        return read_json(memory_path(state_dir))
    except StateInvalid:
        return {}
