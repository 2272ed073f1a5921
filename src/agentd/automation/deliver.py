"""Delivering one event to one hook: run its command, send its notifications (apprise), or POST its webhook; retried
with exponential backoff (tenacity) until it works or its retries are spent.

Each attempt is bounded by the hook's ``timeout``. A command gets the event as JSON on stdin and ``AGENTD_EVENT_*``
variables, runs without a shell in its own process group (killed whole on timeout). A webhook is a POST of the same
JSON with ``X-Agentd-Signature: sha256=<HMAC>`` when the hook has a ``secret``, and ``X-Agentd-Delivery`` (the same
for every retry of one event: receivers can drop repeats, as delivery is at least once). Error texts are redacted:
no secret of the hook is ever in what this returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity

from agentd import __version__
from agentd.automation.hooks import BACKOFF_MAX, SIGNATURE_HEADER, Hook, environment, payload, signature

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """One attempt failed: the reason, with the hook's secrets taken out."""


class Stopped(Exception):
    """The automation process is stopping: no more attempts (the event is delivered again after a restart)."""


@dataclass(frozen=True)
class Delivery:
    """How delivering one event to one hook ended."""

    ok: bool
    attempts: int
    error: str | None = None
    stopped: bool = False  # the process stopped first: not done (delivered again by the next active process)


def delivery_id(event: Mapping[str, Any]) -> str:
    """The same id for every attempt to deliver one event (receivers can drop repeats)."""
    return hashlib.blake2b(payload(event), digest_size=12).hexdigest()


def _tail(data: bytes, limit: int = 300) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text[-limit:]


def _command(hook: Hook, event: Mapping[str, Any], root: Path) -> None:
    env = {**os.environ, **environment(event)}
    try:
        proc = subprocess.Popen(
            list(hook.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=root,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise DeliveryFailed(f"cannot run {hook.command[0]!r}: {exc.strerror or exc}") from None
    try:
        _, err = proc.communicate(payload(event), timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeliveryFailed(f"the command took longer than {hook.timeout:g} s; killed") from None
    if proc.returncode != 0:
        shown = _tail(err)
        raise DeliveryFailed(f"the command exited with {proc.returncode}" + (f": {shown}" if shown else ""))


def _webhook(hook: Hook, event: Mapping[str, Any]) -> None:
    assert hook.webhook is not None
    body = payload(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"agentd/{__version__}",
        "X-Agentd-Event": str(event.get("event")),
        "X-Agentd-Delivery": delivery_id(event),
    }
    if hook.secret:
        headers[SIGNATURE_HEADER] = signature(body, hook.secret)
    request = urllib.request.Request(hook.webhook, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout) as response:  # noqa: S310 - checked at load
            response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"the endpoint answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeliveryFailed(f"cannot reach the endpoint: {reason}") from None


def _notify(hook: Hook, event: Mapping[str, Any]) -> None:
    import apprise  # a large import: only where notifications are configured

    logging.getLogger("apprise").setLevel(logging.CRITICAL)  # its messages may carry the URLs (credentials)
    sender = apprise.Apprise()
    for url in hook.notify:
        if not sender.add(url):
            raise DeliveryFailed("a notify URL is not one apprise knows (check its scheme)")
    title = f"agentd: {event.get('event')}" + (f" {event['task']}" if isinstance(event.get("task"), str) else "")
    body = str(event.get("message") or title)
    if not sender.notify(title=title, body=body):
        raise DeliveryFailed("apprise could not deliver to every URL")


def attempt(hook: Hook, event: Mapping[str, Any], root: Path) -> None:
    """One delivery attempt; DeliveryFailed (redacted) when it did not work."""
    try:
        if hook.kind == "command":
            _command(hook, event, root)
        elif hook.kind == "webhook":
            _webhook(hook, event)
        else:
            _notify(hook, event)
    except DeliveryFailed as exc:
        raise DeliveryFailed(hook.redact(str(exc))) from None
    except Exception as exc:  # a library's own failure: still one failed attempt, never a dead worker
        raise DeliveryFailed(hook.redact(f"{type(exc).__name__}: {exc}")) from None


def deliver(hook: Hook, event: Mapping[str, Any], root: Path, stopping: threading.Event) -> Delivery:
    """Deliver with retries: ``hook.retries`` more attempts after the first, waiting ``backoff``, doubling."""
    tries = 0

    def sleep(seconds: float) -> None:
        if stopping.wait(seconds):
            raise Stopped

    def once() -> None:
        nonlocal tries
        if stopping.is_set():
            raise Stopped
        tries += 1
        attempt(hook, event, root)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(hook.retries + 1),
        wait=tenacity.wait_exponential(multiplier=hook.backoff, max=BACKOFF_MAX),
        retry=tenacity.retry_if_exception_type(DeliveryFailed),
        sleep=sleep,
        reraise=True,
    )
    try:
        retrying(once)
    except Stopped:
        return Delivery(False, tries, "stopped", stopped=True)
    except DeliveryFailed as exc:
        return Delivery(False, tries, str(exc))
    return Delivery(True, tries)
