"""The queue file on disk. The only code that reads or writes it.

Every change is a transaction: take the sidecar lock (``<queue>.lock``, never deleted), read, validate, apply a pure
change to the parsed document, rewrite only the changed text (:mod:`agentd.jsonedit`), write a temporary file in the
same folder, fsync it, check that nobody edited the queue meanwhile (humans and agents do not take the lock: if they
did, re-read and re-apply), rename it over the queue, fsync the folder. Readers see the old or the new file, never a
partial one. A file that does not parse or validate is never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import filelock
import tenacity

from agentd import faults, jsonedit, schema
from agentd.errors import Conflict, LockTimeout, QueueInvalid
from agentd.model import Task, index_by_id, views, walk
from agentd.validate import Finding, check, conflict_markers, status_warnings, structural
from agentd.workflow import Workflow

log = logging.getLogger(__name__)

T = TypeVar("T")
BOM = "\ufeff"
MAX_REAPPLY = 20
TMP_MARK = ".agentd-tmp"


class QueueMissing(QueueInvalid):
    """The queue file does not exist."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, None, "no such file (create it with `agentd init`)")


class _MaybeMidWrite(QueueInvalid):
    """A parse error that may be a writer caught mid-write (retried briefly before it is reported)."""


@dataclass(frozen=True)
class Snapshot:
    """One read of the queue: its bytes, the parsed document, the task views and any warnings."""

    path: Path
    raw: bytes
    data: dict[str, Any]
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)  # only from a lenient read

    @property
    def tasks(self) -> list[Task]:
        """Typed views of every task, nested ones included, in queue order."""
        return views(self.data)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The raw dict of one task, or None."""
        return index_by_id(self.data).get(task_id)

    @property
    def wip_limits(self) -> dict[str, int]:
        """The queue's own WIP limits (role -> int)."""
        limits = self.data.get("wip_limits") or {}
        return dict(limits)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class QueueStore:
    """Locked, atomic, format-preserving access to one queue file."""

    def __init__(
        self,
        path: Path,
        *,
        workflow: Workflow | None = None,
        lock_timeout: float = 30.0,
        parse_retry: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.workflow = workflow
        self.lock_timeout = lock_timeout
        self.parse_retry = parse_retry
        self._validated: tuple[bytes, list[Finding]] | None = None

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file beside the queue's real file (never deleted): two names for one queue, one lock."""
        target = self._target()
        return target.with_name(target.name + ".lock")

    # -- reading ---------------------------------------------------------------------------------------------------

    def _target(self) -> Path:
        """The real file behind the queue path (a symlinked queue is written through, not replaced)."""
        return Path(os.path.realpath(self.path))

    def _read_raw(self) -> bytes:
        try:
            return self._target().read_bytes()
        except FileNotFoundError:
            raise QueueMissing(self.path) from None
        except IsADirectoryError:
            raise QueueInvalid(self.path, None, "is a directory, not a file") from None
        except OSError as exc:
            raise QueueInvalid(self.path, None, f"cannot read: {exc.strerror or exc}") from None

    def _decode(self, raw: bytes) -> tuple[str, str]:
        """(BOM prefix, JSON text)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QueueInvalid(self.path, None, f"not UTF-8 (invalid byte at offset {exc.start})") from None
        if text.startswith(BOM):
            return BOM, text[1:]
        return "", text

    def _parse(self, raw: bytes) -> tuple[str, str, Any]:
        prefix, text = self._decode(raw)
        markers = conflict_markers(text)
        if markers:
            raise QueueInvalid(self.path, None, markers[0].message)
        if not text.strip():
            raise _MaybeMidWrite(self.path, None, "empty file (expected a JSON object with a 'tasks' list)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _MaybeMidWrite(
                self.path, None, f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
            ) from None
        except RecursionError:
            raise QueueInvalid(self.path, None, "not valid JSON: nested too deeply") from None
        return prefix, text, data

    def _validate(self, raw: bytes, data: Any, *, lenient: bool = False) -> list[Finding]:
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if self._validated is not None and self._validated[0] == digest:
            return self._validated[1]
        if not isinstance(data, dict):
            raise QueueInvalid(self.path, "$", f"expected a JSON object, found {type(data).__name__}")
        problem = schema.queue_error(data)
        if problem is not None:
            raise QueueInvalid(self.path, problem[0], problem[1])
        findings = check(data, self.workflow)
        errors = [f for f in findings if f.severity == "error"]
        if errors and not lenient:
            raise QueueInvalid(self.path, errors[0].path, errors[0].message)
        if errors:
            return findings
        warnings = [f for f in findings if f.severity == "warning"]
        self._validated = (digest, warnings)
        return warnings

    def _load(self, *, lenient: bool = False) -> tuple[bytes, str, str, dict[str, Any], list[Finding]]:
        """Read, parse and validate, retrying briefly when the file may be caught mid-write by another writer."""

        def attempt() -> tuple[bytes, str, str, dict[str, Any], list[Finding]]:
            raw = self._read_raw()
            prefix, text, data = self._parse(raw)
            warnings = self._validate(raw, data, lenient=lenient)
            return raw, prefix, text, data, warnings

        if self.parse_retry <= 0:
            return attempt()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_MaybeMidWrite),
            stop=tenacity.stop_after_delay(self.parse_retry),
            wait=tenacity.wait_fixed(0.02),
            reraise=True,
        )
        return retrying(attempt)

    def read(self, *, lenient: bool = False) -> Snapshot:
        """The queue as it is now, validated (no lock taken: a rename is atomic, so readers never see a torn file).

        ``lenient`` still requires a file that parses and matches the schema, but returns duplicate ids, unknown
        dependencies and cycles as ``errors`` instead of raising (for commands that explain, never for writes).
        """
        raw, _, _, data, findings = self._load(lenient=lenient)
        warnings = [f for f in findings if f.severity == "warning"]
        errors = [f for f in findings if f.severity == "error"]
        return Snapshot(self.path, raw, data, warnings, errors)

    # -- writing ---------------------------------------------------------------------------------------------------

    def _check_new(self, old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
        """Refuse to write a document that would not validate; returns its warnings.

        ``old`` was valid, so only what changed is checked again: the tasks that differ (schema), and the ids and
        dependencies (duplicates, unknown dependencies, cycles) only when one of those changed.
        """
        if not isinstance(new.get("tasks"), list):
            raise QueueInvalid(self.path, "$.tasks", "refusing to write: 'tasks' must be a list")
        top = {key: value for key, value in new.items() if key != "tasks"}
        top["tasks"] = []
        problem = schema.first_error(top, "queue")
        if problem is not None:
            raise QueueInvalid(self.path, problem[0], f"refusing to write: {problem[1]}")
        before = list(walk(old["tasks"]))
        after = list(walk(new["tasks"]))
        same_shape = len(before) == len(after)
        previous = {str(task.get("id")): task for _, task, _ in before} if not same_shape else {}
        for position, (path, task, _) in enumerate(after):
            counterpart = before[position][1] if same_shape else previous.get(str(task.get("id")))
            if task is counterpart or task == counterpart:
                continue
            problem = schema.task_error(task)
            if problem is not None:
                raise QueueInvalid(self.path, path + problem[0][1:], f"refusing to write: {problem[1]}")
            if same_shape and isinstance(counterpart, dict) and isinstance(task, dict):
                same_shape = task.get("id") == counterpart.get("id") and task.get("dependencies") == counterpart.get(
                    "dependencies"
                )
        errors = [] if same_shape else [f for f in structural(after) if f.severity == "error"]
        if errors:
            raise QueueInvalid(self.path, errors[0].path, f"refusing to write: {errors[0].message}")
        return status_warnings(after, self.workflow)

    def _lock(self) -> filelock.BaseFileLock:
        return filelock.FileLock(str(self.lock_path), timeout=self.lock_timeout)

    @contextlib.contextmanager
    def locked(self) -> Any:
        """Hold the queue lock (for multi-step protocols such as lease recovery)."""
        lock = self._lock()
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockTimeout(self.lock_path, self.lock_timeout) from None
        try:
            yield
        finally:
            lock.release()

    def _remove_stale_temps(self, target: Path) -> None:
        """Temp files only exist inside a locked transaction; under the lock, any left are from a dead writer."""
        for leftover in target.parent.glob(f".{target.name}.*{TMP_MARK}"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def transaction(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply ``change`` to the document under the lock and write the result, if anything changed.

        ``change`` mutates the parsed document in place and returns a value passed back to the caller. It may run
        more than once (when another writer edited the file meanwhile, the file is re-read and ``change`` re-applied),
        so it must decide from the document it is given.
        """
        with self.locked():
            return self._transaction_locked(change)

    def _transaction_locked(self, change: Callable[[dict[str, Any]], T]) -> T:
        target = self._target()
        self._remove_stale_temps(target)
        for _ in range(MAX_REAPPLY):
            raw, prefix, text, old, _ = self._load()
            new = json.loads(text)
            result = change(new)
            if new == old:
                return result
            warnings = self._check_new(old, new)
            payload = (prefix + jsonedit.apply(text, old, new)).encode("utf-8")
            if self._write(target, raw, payload):
                # What we wrote is valid: our own next read of it need not validate it again.
                self._validated = (hashlib.blake2b(payload, digest_size=16).digest(), warnings)
                return result
            log.info("%s changed while agentd was writing it; re-reading and re-applying", self.path)
        raise Conflict(None, f"{self.path}: the file kept changing under agentd; gave up after {MAX_REAPPLY} tries")

    def _write(self, target: Path, expected: bytes, payload: bytes) -> bool:
        """Atomically replace ``target`` with ``payload`` unless its bytes are no longer ``expected``."""
        try:
            info = os.stat(target)
            mode = stat.S_IMODE(info.st_mode)
        except FileNotFoundError:
            info = None
            mode = 0o644
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            try:
                os.fchmod(fd, mode)
                if info is not None and hasattr(os, "fchown"):
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, info.st_uid, info.st_gid)
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            faults.point("queue.after-temp-write")
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                current = None
            if current != expected:
                temp.unlink()
                return False
            faults.point("queue.before-rename")
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        faults.point("queue.after-rename")
        _fsync_dir(target.parent)
        return True

    def create(self, data: dict[str, Any], *, indent: int = 2) -> bool:
        """Write a new queue file if there is none (False when one exists already)."""
        with self.locked():
            target = self._target()
            if target.exists():
                return False
            payload = (json.dumps(data, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")
            temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}")
            temp.write_bytes(payload)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, target)
            _fsync_dir(target.parent)
            return True
