"""Hooks: what runs on journal events — a command, a notification (apprise URL), or a signed webhook POST (pure parts:
which events a hook takes, its settings with secrets from the environment, the payload and its signature, redaction).

``on`` lists event patterns: ``finished`` (any outcome), ``finished:failure`` (an event and its outcome), a custom
topic from ``agentd emit``, or ``*``. Settings may name environment variables as ``${NAME}`` — expanded here only, in
hook settings, never in a task — and every expanded value is a secret: :func:`redact` takes them out of anything
logged or journaled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentd.core.duration import parse_duration

KEYS = ("name", "on", "command", "notify", "webhook", "secret", "timeout", "retries", "backoff")
BACKOFF_MAX = 300.0  # seconds at most between two delivery attempts
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SIGNATURE_HEADER = "X-Agentd-Signature"  # "sha256=<hex HMAC of the body>"


class HookInvalid(ValueError):
    """A ``[[hooks]]`` table that cannot be used: ``hook N: key: reason``."""

    def __init__(self, name: str, key: str, reason: str) -> None:
        self.name = name
        self.key = key
        self.reason = reason
        super().__init__(f"hook {name}: {key}: {reason}")


def expand(text: str, environ: Mapping[str, str], name: str, key: str, secrets: set[str]) -> str:
    """``${NAME}`` from the environment (HookInvalid when unset); each value found is added to ``secrets``."""

    def one(match: re.Match[str]) -> str:
        variable = match.group(1)
        if variable not in environ:
            raise HookInvalid(name, key, f"${{{variable}}} is not set in the environment")
        value = environ[variable]
        if value:
            secrets.add(value)
        return value

    return _VARIABLE.sub(one, text)


@dataclass(frozen=True)
class Hook:
    """One ``[[hooks]]`` table, its ``${NAME}`` settings expanded."""

    name: str
    on: tuple[str, ...]
    kind: Literal["command", "notify", "webhook"]
    command: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    webhook: str | None = None
    secret: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    retries: int = 5
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    backoff: float = 1.0  # the first wait between attempts (it doubles, up to BACKOFF_MAX)

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], position: int, environ: Mapping[str, str]) -> Hook:
        """Build and check a hook (the ``position``-th table, 1-based, names it when it has no ``name``)."""
        name = str(spec["name"]) if isinstance(spec.get("name"), str) else f"#{position}"
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise HookInvalid(name, unknown[0], f"unknown key (known: {', '.join(KEYS)})")
        on = spec.get("on")
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, list) or not on or not all(isinstance(p, str) and p for p in on):
            raise HookInvalid(name, "on", "must list event patterns, e.g. ['finished:failure', 'question-asked']")
        kinds = [key for key in ("command", "notify", "webhook") if key in spec]
        if len(kinds) != 1:
            raise HookInvalid(name, "command", "set exactly one of command, notify or webhook")
        kind: Literal["command", "notify", "webhook"] = kinds[0]  # type: ignore[assignment]
        secrets: set[str] = set()
        try:
            timeout = parse_duration(spec.get("timeout", 10))
        except ValueError as exc:
            raise HookInvalid(name, "timeout", str(exc)) from None
        try:
            backoff = parse_duration(spec.get("backoff", 1))
        except ValueError as exc:
            raise HookInvalid(name, "backoff", str(exc)) from None
        retries = spec.get("retries", 5)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
            raise HookInvalid(name, "retries", "must be a whole number from 0 to 100")
        command: tuple[str, ...] = ()
        notify: tuple[str, ...] = ()
        webhook = secret = None
        if kind == "command":
            value = spec["command"]
            if not isinstance(value, list) or not value or not all(isinstance(part, str) for part in value):
                raise HookInvalid(name, "command", "must be an argv list of strings (no shell)")
            command = tuple(expand(part, environ, name, "command", secrets) for part in value)
        elif kind == "notify":
            value = spec["notify"]
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(url, str) and url for url in value):
                raise HookInvalid(name, "notify", "must list notification URLs (any apprise supports)")
            notify = tuple(expand(url, environ, name, "notify", secrets) for url in value)
            secrets.update(notify)  # a notification URL carries its credentials
        else:
            value = spec["webhook"]
            if not isinstance(value, str) or not value.startswith(("http://", "https://")):
                raise HookInvalid(name, "webhook", "must be an http:// or https:// URL")
            webhook = expand(value, environ, name, "webhook", secrets)
            if isinstance(spec.get("secret"), str):
                secret = expand(spec["secret"], environ, name, "secret", secrets)
                secrets.add(secret)
            elif "secret" in spec:
                raise HookInvalid(name, "secret", "must be a string, e.g. '${AGENTD_WEBHOOK_SECRET}'")
        if kind != "webhook" and "secret" in spec:
            raise HookInvalid(name, "secret", "is for webhook hooks")
        if timeout <= 0:
            raise HookInvalid(name, "timeout", "must be more than 0 s")
        return cls(
            name, tuple(on), kind, command, notify, webhook, secret, timeout, retries, frozenset(secrets), backoff
        )

    def takes(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` (a journal record) is one this hook runs on (never a record of its own delivery)."""
        if event.get("event") in OWN_EVENTS and event.get("hook") == self.name:
            return False
        return any(matches(pattern, event) for pattern in self.on)

    def redact(self, text: str) -> str:
        """``text`` with every secret of this hook replaced by ``***``."""
        return redact(text, self.secrets)


OWN_EVENTS = ("hook-delivered", "hook-failed")  # what delivering a hook journals: ``*`` never takes them


def matches(pattern: str, event: Mapping[str, Any]) -> bool:
    """``*``; ``TOPIC``; or ``TOPIC:OUTCOME`` (the event's ``outcome``, or its ``state`` for events that have one).

    ``*`` takes every event but the hooks' own records (a hook on ``*`` would otherwise run on its own delivery,
    forever); name ``hook-failed`` to be told of failed deliveries."""
    if pattern == "*":
        return event.get("event") not in OWN_EVENTS
    topic, _, detail = pattern.partition(":")
    if event.get("event") != topic:
        return False
    return not detail or detail in (event.get("outcome"), event.get("state"))


def redact(text: str, secrets: Sequence[str] | frozenset[str]) -> str:
    """Every secret in ``text`` replaced by ``***``, longest first (so one that contains another goes whole)."""
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def payload(event: Mapping[str, Any]) -> bytes:
    """The body a webhook POSTs and a command reads on stdin: the event as compact JSON."""
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def signature(body: bytes, secret: str) -> str:
    """The webhook signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does: compare in constant time."""
    return hmac.compare_digest(signature(body, secret), header)


def environment(event: Mapping[str, Any]) -> dict[str, str]:
    """``AGENTD_EVENT_*`` variables for a command hook: each top-level field, JSON-encoded unless it is a string."""
    out = {}
    for key, value in event.items():
        name = "AGENTD_EVENT_" + re.sub(r"[^A-Za-z0-9]", "_", str(key)).upper()
        out[name] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True, default=str)
    return out
