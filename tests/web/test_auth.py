"""Who may change things through the dashboard: the token, the CSRF field, read-only, and where it may listen."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentd.config import load
from agentd.errors import ConfigInvalid
from agentd.web.auth import COOKIE, Guard, is_loopback, load_or_create_token
from agentd.web.server import BindRefused, plan

TOKEN = "t" * 40
HOST = "127.0.0.1:8765"


def test_write_without_the_token_is_refused() -> None:
    """No cookie, no bearer: refused, and the reason says how to get the token."""
    reason = Guard(TOKEN).refuse_write({}, {}, None, HOST)
    assert reason is not None and "token" in reason


def test_cookie_without_csrf_field_is_refused() -> None:
    """A browser that has the cookie (any site can make it send it) still needs the form's CSRF value."""
    guard = Guard(TOKEN)
    assert "CSRF" in (guard.refuse_write({}, {COOKIE: TOKEN}, None, HOST) or "")
    assert "CSRF" in (guard.refuse_write({}, {COOKIE: TOKEN}, "wrong", HOST) or "")
    assert guard.refuse_write({}, {COOKIE: TOKEN}, guard.csrf(), HOST) is None


def test_cookie_from_another_origin_is_refused() -> None:
    """An Origin header of another site is refused even with the right CSRF value."""
    guard = Guard(TOKEN)
    reason = guard.refuse_write({"origin": "http://evil.example"}, {COOKIE: TOKEN}, guard.csrf(), HOST)
    assert reason is not None and "another site" in reason
    assert guard.refuse_write({"origin": "null"}, {COOKIE: TOKEN}, guard.csrf(), HOST) is not None  # sandboxed frames
    assert guard.refuse_write({"origin": f"http://{HOST}"}, {COOKIE: TOKEN}, guard.csrf(), HOST) is None


def test_bearer_token_allows_and_wrong_token_refuses() -> None:
    """Scripts send Authorization: Bearer; a wrong one is refused."""
    guard = Guard(TOKEN)
    assert guard.refuse_write({"authorization": f"Bearer {TOKEN}"}, {}, None, HOST) is None
    assert guard.refuse_write({"authorization": "Bearer nope"}, {}, None, HOST) is not None


def test_read_only_refuses_even_the_token() -> None:
    """--read-only refuses every change, whoever asks."""
    reason = Guard(TOKEN, read_only=True).refuse_write({"authorization": f"Bearer {TOKEN}"}, {}, None, HOST)
    assert reason is not None and "read-only" in reason


def test_reads_need_the_token_only_when_asked() -> None:
    """Off loopback every page needs the token; on loopback pages are open."""
    assert Guard(TOKEN).may_read({}, {})
    closed = Guard(TOKEN, reads_need_token=True)
    assert not closed.may_read({}, {})
    assert closed.may_read({}, {COOKIE: TOKEN})
    assert closed.may_read({"authorization": f"Bearer {TOKEN}"}, {})


def test_loopback_addresses() -> None:
    """127.x, ::1 and localhost are loopback; 0.0.0.0 and names are not."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    """The first start writes a 0600 token; the next start reads the same one."""
    path = tmp_path / "web.token"
    first = load_or_create_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(path) == first and len(first) >= 32


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A token others can read is no secret: refused with the file named and the fix."""
    path = tmp_path / "web.token"
    path.write_text(TOKEN)
    path.chmod(0o644)
    with pytest.raises(ConfigInvalid, match="chmod 600") as info:
        load_or_create_token(path)
    assert str(path) in str(info.value)


def test_binding_elsewhere_without_a_token_is_refused(tmp_path: Path) -> None:
    """--no-token is for loopback only; elsewhere it is refused with the reason and the way out."""
    config = load(root=tmp_path, environ={})
    with pytest.raises(BindRefused, match="without a token"):
        plan(config, "0.0.0.0", 8765, read_only=False, token_file=None, no_token=True)
    chosen = plan(config, "0.0.0.0", 8765, read_only=False, token_file=None, no_token=False)
    assert chosen.guard.reads_need_token and chosen.guard.token
    assert (tmp_path / ".agentd" / "web.token").is_file()
    local = plan(config, "127.0.0.1", 8765, read_only=False, token_file=None, no_token=True)
    assert local.guard.token is None
