"""Who may change things through the dashboard: the token file, the login cookie and the CSRF check (no I/O but
the token file).

A write needs the token, as ``Authorization: Bearer <token>`` (scripts) or as the login cookie a browser got from
the printed link (``/login?token=...``). A write that comes with the cookie must also carry the form's CSRF field,
an HMAC of the token that a page of another site cannot know, and an ``Origin`` (when the browser sends one) of
this server. Reads are open on a loopback address and need the token too anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agentd.errors import ConfigInvalid

COOKIE = "agentd_token"
CSRF_FIELD = "csrf"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, created (mode 0600, 32 random bytes) when the file does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return read_token(path)
    token = secrets.token_urlsafe(32)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token


def read_token(path: Path) -> str:
    """The token in an existing file; ConfigInvalid when it is empty or others may read it."""
    try:
        mode = os.stat(path).st_mode
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(path, None, f"cannot read the web token: {getattr(exc, 'strerror', None) or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigInvalid(path, None, f"the web token is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    if len(text) < 16 or any(ch.isspace() for ch in text):
        raise ConfigInvalid(path, None, "the web token must be one line of at least 16 characters")
    return text


@dataclass(frozen=True)
class Guard:
    """The rules of one server: its token (None: writes are open, loopback only), read-only, reads need the token."""

    token: str | None
    read_only: bool = False
    reads_need_token: bool = False

    def csrf(self) -> str:
        """The CSRF value the pages put in their forms."""
        key = (self.token or "no-token").encode()
        return hmac.new(key, b"agentd-web-csrf", hashlib.sha256).hexdigest()

    def _matches(self, given: str | None) -> bool:
        return self.token is not None and given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("authorization", "")
        return value[7:].strip() if value.lower().startswith("bearer ") else None

    def may_read(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """Whether a request may see pages and data."""
        if not self.reads_need_token or self.token is None:
            return True
        return self._matches(self.bearer(headers)) or self._matches(cookies.get(COOKIE))

    def refuse_write(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], form_csrf: str | None, host: str
    ) -> str | None:
        """Why a write is refused (None: allowed)."""
        if self.read_only:
            return "this dashboard is read-only (started with --read-only)"
        if self.token is None:
            return None
        if self._matches(self.bearer(headers)):
            return None  # a script: browsers never add this header on their own
        if not self._matches(cookies.get(COOKIE)):
            return "a change needs the token: open the login link `agentd web` printed, or send Authorization: Bearer"
        if form_csrf is None or not hmac.compare_digest(form_csrf.encode(), self.csrf().encode()):
            return "the form's CSRF field is missing or wrong: reload the page and try again"
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != host:
            return f"the request came from another site ({origin})"
        return None
