"""The automation process: active or standby, its signals, its file watcher, and the loop around :class:`Engine`.

Several may run (one per host, for resilience): the one holding ``.agentd/run/automation/active.pid`` (an flock,
released by the kernel when its holder dies, however it dies) is active and runs schedules, rules and hooks; the
others look for the lock every ``STANDBY_POLL`` seconds and the first to take it goes on where the memory file says
the last one stopped. SIGTERM/SIGINT stop it (deliveries not done are left to the next active process); SIGHUP
re-reads agentd.toml (a bad file is reported and the old configuration kept).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agentd.automation.engine import Engine, journal_path
from agentd.automation.hooks import Hook, HookInvalid
from agentd.config import CONFIG_NAME, Config
from agentd.core.clock import Clock
from agentd.errors import AgentdError, ConfigInvalid
from agentd.service.background import automation_active_path
from agentd.store.file.journal import Journal
from agentd.store.file.pidfile import AlreadyRunning, PidFile
from agentd.wakeup import WakeUp

log = logging.getLogger("agentd.automation")
STANDBY_POLL = 0.5  # a standby looks for the active lock this often: a takeover within 2 s of the holder's death
NAME = "automation"


def active_path(config: Config) -> Path:
    """The active lock: held by the one automation process that runs schedules, rules and hooks."""
    return automation_active_path(config)


def expand_hooks(config: Config, environ: dict[str, str] | os._Environ[str]) -> list[Hook]:
    """The configured hooks with ``${NAME}`` from the environment; ConfigInvalid names the hook key when unset."""
    if config.automation is None:
        return []
    try:
        return config.automation.expand_hooks(environ)
    except HookInvalid as exc:
        position = next(
            (n for n, spec in enumerate(config.automation.hooks, 1) if spec.get("name", f"#{n}") == exc.name), 1
        )
        raise ConfigInvalid(
            config.path or config.root / CONFIG_NAME, f"$.hooks[{position - 1}].{exc.key}", exc.reason
        ) from None


class _Changes(FileSystemEventHandler):
    def __init__(self, root: Path, sink: Callable[[list[str]], None]) -> None:
        self.root = os.path.realpath(root)
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        found = []
        for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
            path = os.fsdecode(raw)
            if path and path.startswith(self.root + os.sep):
                found.append(path[len(self.root) + 1 :].replace(os.sep, "/"))
        if found:
            self.sink(found)


class AutomationProcess:
    """One ``agentd automation`` process."""

    def __init__(self, load: Callable[[], Config], clock: Clock) -> None:
        self.load = load
        self.clock = clock
        self.config = load()
        self.hooks = expand_hooks(self.config, os.environ)
        self.stopping = WakeUp()  # (both set by the signal handlers: see agentd.wakeup)
        self.wake = WakeUp()
        self.reload = False
        self.engine: Engine | None = None
        self.active: PidFile | None = None
        self.observer: Any = None
        self.journal = Journal(
            journal_path(self.config),
            clock,
            NAME,
            log,
            max_bytes=self.config.log.max_bytes,
            backups=self.config.log.backups,
        )
        self._standby_noted: int | bool | None = False
        self._failing: str | None = None

    # -- signals -------------------------------------------------------------------------------------------------------

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        else:
            self.stopping.set()
        self.wake.set()

    # -- active / standby ----------------------------------------------------------------------------------------------

    def try_activate(self) -> bool:
        """Take the active lock if nobody holds it; start the engine then."""
        holder = PidFile(active_path(self.config), NAME)
        try:
            holder.acquire(started=self.clock.now(), interval=None, log=None)
        except AlreadyRunning as exc:
            if self._standby_noted != exc.pid:
                log.info("standby: automation is active in pid %s; taking over when it stops", exc.pid or "?")
                self._standby_noted = exc.pid
            return False
        self.active = holder
        self._start_engine()
        return True

    def _start_engine(self) -> None:
        engine = Engine(self.config, self.journal, self.hooks, threading.Event())
        waiting = engine.start()
        self.engine = engine
        automation = self.config.automation
        counts = (
            f"{len(automation.schedules)} schedule(s), {len(automation.rules)} rule(s), {len(self.hooks)} hook(s)"
            if automation
            else "nothing configured"
        )
        if any(rule.on == "file" for rule in (automation.rules if automation else ())):
            self._watch(engine)
        self.journal.emit(
            "automation-active",
            f"automation active (pid {os.getpid()}): {counts}"
            + (f"; {waiting} event(s) to catch up" if waiting else ""),
        )

    def _watch(self, engine: Engine) -> None:
        observer = Observer()
        observer.schedule(_Changes(self.config.root, engine.file_changed), str(self.config.root), recursive=True)
        observer.daemon = True
        observer.start()
        self.observer = observer

    def _stop_engine(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=10)
            self.observer = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _reload(self) -> None:
        self.reload = False
        try:
            fresh = self.load()
            hooks = expand_hooks(fresh, os.environ)
        except AgentdError as exc:
            log.error("SIGHUP: keeping the old configuration: %s", exc)
            return
        was_active = self.engine is not None
        self._stop_engine()
        self.config, self.hooks = fresh, hooks
        log.info("SIGHUP: configuration re-read from %s", fresh.path or "defaults")
        if was_active:
            self._start_engine()

    # -- the loop ------------------------------------------------------------------------------------------------------

    def run(self, ready: Callable[[bool], None] | None = None) -> int:
        """Until SIGTERM/SIGINT: standby until the active lock is free, then active."""
        handlers = {
            signum: signal.signal(signum, self._signal) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            active = self.try_activate()
            if ready is not None:
                ready(active)
            while not self.stopping.is_set():
                if self.reload:
                    self._reload()
                if self.engine is None:
                    self.wake.wait(STANDBY_POLL)
                    self.wake.clear()
                    if not self.stopping.is_set():
                        self.try_activate()
                    continue
                try:
                    pause = self.engine.tick(self.clock.now(), time.monotonic())
                    self._failing = None
                except Exception as exc:  # never die of one bad pass: say it once, try again
                    if self._failing != repr(exc):
                        log.exception("automation pass failed (tried again each second): %s", exc)
                        self._failing = repr(exc)
                    pause = 1.0
                self.wake.wait(pause)
                self.wake.clear()
        finally:
            self.stopping.set()
            self._stop_engine()
            if self.active is not None:
                self.journal.emit("automation-stopped", f"automation stopped (pid {os.getpid()})")
                self.active.release()
                self.active = None
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        return 0
