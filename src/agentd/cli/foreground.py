"""A role's daemon in the foreground, for ``agentd --role ROLE`` and ``agentd run`` (:mod:`agentd.cli.root`,
:mod:`agentd.cli.daemon_cmds`) and for the click-free path that serves their plain forms (:mod:`agentd.cli.fast`).

Click-free: a daemon's start pays no import of click (about a tenth of its start-up's instructions). The checks of
the options that click words (a missing ``--role``, ``--once`` with ``--drain``) are the callers'.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from agentd import faults
from agentd.cli.app import App
from agentd.core.clock import SkewedClock, SystemClock
from agentd.errors import AgentdError, ConfigError, ExitCode
from agentd.run.daemon import LIVENESS_BEAT, Daemon, Mode
from agentd.run.zygote import default_zygote
from agentd.service import logsetup
from agentd.store.file.pidfile import AlreadyRunning, stale_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ReadyPipe:
    """The pipe ``agentd start`` waits on: one JSON line once the daemon is up, or the error that stopped it."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            os.set_inheritable(fd, False)  # never leaks into task commands

    def send(self, **message: Any) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, (json.dumps(message) + "\n").encode())
            os.close(self.fd)
        self.fd = None


def run(
    app: App,
    role: str,
    interval: float | None,
    once: bool,
    drain: bool,
    concurrency: int | None,
    instance: str | None,
    *,
    log_file: str | None = None,
    log_format: str = "text",
    ready_fd: int | None = None,
) -> int:
    """Build the daemon from the options, register it with the store (its PID file), and run it in the foreground.

    ``role`` is given and ``once`` and ``drain`` are not both set (the callers say so as usage errors)."""
    ready = ReadyPipe(ready_fd)
    name = role + (f".{instance}" if instance else "")
    try:
        skew = faults.clock_skew()
    except ValueError as exc:
        raise ConfigError(None, str(exc)) from None
    clock = SkewedClock(skew) if skew else SystemClock()
    mode = Mode.ONCE if once else Mode.DRAIN if drain else Mode.FOREVER
    try:
        config = app.config
        config.role(role)
        default_zygote().boot()  # (booted already by agentd.cli.fast; else its interpreter starts now)
        daemon = _daemon_when_reachable(
            lambda: Daemon(config, role, instance=instance, concurrency=concurrency, interval=interval, clock=clock),
            wait=mode is Mode.FOREVER and ready_fd is None,
        )
        daemon.take_signals()  # (before its PID file says it runs: a stop sent then is one it honours)
        daemon.check_ready()
        pid = daemon.store.register(
            role,
            instance,
            started=clock.now(),
            interval=daemon.interval,
            log=log_file,
            boot=clock.boottime(),
            beat_every=LIVENESS_BEAT,
        )
        daemon.pidfile = pid
        faults.point("daemon.after-register")
    except AlreadyRunning as exc:
        ready.send(status="running", pid=exc.pid)
        raise
    except AgentdError as exc:
        ready.send(status="error", error=str(exc), code=int(exc.exit_code))
        raise
    logsetup.setup(
        name,
        verbose=app.verbose,
        log_file=Path(log_file) if log_file else None,
        log_format=log_format,
        max_bytes=config.log.max_bytes,
        backups=config.log.backups,
    )
    if pid.replaced is not None:
        logging.getLogger("agentd").info("replaced a stale PID file (%s)", stale_reason(pid.replaced))

    def first_pass(error: str | None) -> bool:
        if error is not None:
            ready.send(status="error", error=error, code=int(ExitCode.BAD_DATA))
            return False
        ready.send(status="ready", pid=os.getpid())
        return True

    if not gc.isenabled():  # (agentd.__main__ turned it off while the modules loaded)
        gc.freeze()  # what the start-up loaded and made lives as long as the daemon: no collection walks it again
        gc.enable()
    try:
        return daemon.run(mode, first_pass if ready_fd is not None else None)
    finally:
        pid.release()


def _daemon_when_reachable(make: Callable[[], Daemon], *, wait: bool) -> Daemon:
    """The daemon; a daemon that runs until stopped, in the foreground or under a service manager (``wait``), waits
    for a store it cannot reach yet (a server still starting at boot), saying so once and once when it is there, with
    the store's backoff (0.25 s doubling to 10 s). ``--once``, ``--drain`` and ``agentd start`` exit 8 at once."""
    from agentd.errors import StoreUnreachable

    failures = 0
    while True:
        try:
            daemon = make()
        except StoreUnreachable as exc:
            if not wait:
                raise
            failures += 1
            if failures == 1:
                logging.getLogger("agentd").warning("store unreachable: %s; waiting (retrying with backoff)", exc)
            from agentd.store.postgres.reach import backoff

            time.sleep(backoff(failures))
            continue
        if failures:
            logging.getLogger("agentd").warning("store reachable: %s; starting", daemon.store.where)
        return daemon
