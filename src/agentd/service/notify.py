"""systemd's notify protocol (``sd_notify``), without a dependency: one datagram to ``$NOTIFY_SOCKET``.

A unit with ``Type=notify`` learns the daemon is ready (``READY=1``) once its loop starts, and with ``WatchdogSec``
restarts it when the beats (``WATCHDOG=1``, sent by the daemon's heartbeat thread) stop: a SIGSTOPped daemon, or one
whose heartbeat thread is stuck, is killed and started again. Outside systemd every call does nothing.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    return "\0" + address[1:] if address.startswith("@") else address


def send(state: str) -> bool:
    """Send one notification; False when there is no socket to send it to (or it cannot be sent)."""
    address = _address()
    if address is None:
        return False
    import socket  # (here: a daemon without a NOTIFY_SOCKET, most, never imports it)

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.debug("sd_notify %s: %s", state, exc)
        return False
    return True


def watchdog_every() -> float | None:
    """Seconds between watchdog beats systemd asks for (half its ``WatchdogSec``), or None when it asks for none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2e6)
    except ValueError:
        return None


def ready() -> None:
    send("READY=1")


def stopping() -> None:
    send("STOPPING=1")


def watchdog() -> None:
    if watchdog_every() is not None:
        send("WATCHDOG=1")
