"""Hook settings and decisions: event patterns, ${NAME} from the environment as secrets, signatures, redaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentd.automation.hooks import Hook, HookInvalid, environment, matches, payload, redact, signature, verify

ENV = {"SLACK_URL": "slack://T000/B000/XXXXSECRET", "HOOK_SECRET": "s3cr3t-value", "TOKEN": "tok-123"}
FAILURE = {"event": "finished", "outcome": "failure", "task": "B7", "role": "builder", "exit_code": 1}


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ("*", {"event": "claimed"}, True),
        ("finished", FAILURE, True),
        ("finished:failure", FAILURE, True),
        ("finished:success", FAILURE, False),
        ("question-asked", {"event": "question-asked"}, True),
        ("finished:failure", {"event": "claimed", "outcome": "failure"}, False),
        ("queue-invalid:invalid", {"event": "queue-invalid", "state": "invalid"}, True),
    ],
)
def test_event_patterns(pattern: str, event: dict[str, object], expected: bool) -> None:
    """An event name, optionally with its outcome (or state), or everything."""
    assert matches(pattern, event) is expected


def test_secrets_come_from_the_environment_and_are_redacted() -> None:
    """${NAME} is expanded in hook settings; every value found, and notification URLs, never reach a log."""
    hook = Hook.from_config({"on": ["finished:failure"], "notify": ["${SLACK_URL}"]}, 2, ENV)
    assert hook.notify == ("slack://T000/B000/XXXXSECRET",) and hook.name == "#2"
    line = f"delivery to {hook.notify[0]} failed: 403"
    assert "XXXXSECRET" not in hook.redact(line) and hook.redact(line) == "delivery to *** failed: 403"
    webhook = Hook.from_config(
        {"name": "ci", "on": ["*"], "webhook": "https://example.invalid/h?t=${TOKEN}", "secret": "${HOOK_SECRET}"},
        1,
        ENV,
    )
    assert webhook.secret == "s3cr3t-value" and webhook.webhook == "https://example.invalid/h?t=tok-123"
    assert webhook.redact("POST https://example.invalid/h?t=tok-123 signed with s3cr3t-value") == (
        "POST https://example.invalid/h?t=*** signed with ***"
    )
    assert "s3cr3t" not in repr(webhook)


def test_an_unset_variable_is_refused_by_name() -> None:
    """A hook never runs with an empty secret: the missing variable is named."""
    with pytest.raises(HookInvalid, match=r"\$\{NOPE\} is not set"):
        Hook.from_config({"on": ["*"], "webhook": "https://x.invalid/", "secret": "${NOPE}"}, 1, ENV)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"on": [], "command": ["x"]}, "on"),
        ({"on": ["*"]}, "command"),
        ({"on": ["*"], "command": ["x"], "webhook": "https://x.invalid/"}, "command"),
        ({"on": ["*"], "command": "./notify.sh"}, "command"),
        ({"on": ["*"], "webhook": "ftp://x"}, "webhook"),
        ({"on": ["*"], "command": ["x"], "secret": "y"}, "secret"),
        ({"on": ["*"], "command": ["x"], "timeout": "later"}, "timeout"),
        ({"on": ["*"], "command": ["x"], "retries": -1}, "retries"),
        ({"on": ["*"], "command": ["x"], "shell": True}, "shell"),
    ],
)
def test_a_bad_hook_names_its_key(spec: dict[str, object], key: str) -> None:
    """Every mistake in a [[hooks]] table names the hook and the key."""
    with pytest.raises(HookInvalid) as caught:
        Hook.from_config(spec, 3, ENV)
    assert caught.value.key == key and str(caught.value).startswith("hook #3: ")


def test_signed_payload_verifies_and_a_changed_body_does_not() -> None:
    """The receiver recomputes the HMAC over the exact body."""
    body = payload(FAILURE)
    header = signature(body, "s3cr3t-value")
    assert header.startswith("sha256=") and verify(body, "s3cr3t-value", header)
    assert not verify(body.replace(b"B7", b"B8"), "s3cr3t-value", header)
    assert not verify(body, "other", header)


def test_command_hooks_get_the_event_as_variables() -> None:
    """Each field as AGENTD_EVENT_<NAME>, strings as they are, the rest as JSON."""
    env = environment({**FAILURE, "data": {"a": 1}, "odd-key": "x"})
    assert env["AGENTD_EVENT_EVENT"] == "finished" and env["AGENTD_EVENT_EXIT_CODE"] == "1"
    assert env["AGENTD_EVENT_DATA"] == '{"a": 1}' and env["AGENTD_EVENT_ODD_KEY"] == "x"


@given(st.text(min_size=3).filter(lambda s: "*" not in s), st.text())
def test_redaction_never_leaves_a_secret(secret: str, around: str) -> None:
    """Whatever the text around it, a secret (one without the mask's own '*') does not survive redaction."""
    text = around + secret + around + secret
    assert secret not in redact(text, frozenset({secret}))


def test_a_hook_on_everything_never_takes_its_own_delivery_records() -> None:
    """`*` skips hook-delivered/hook-failed (else a hook would run on its own delivery, forever); named, they are
    taken, but never a record about the hook itself."""
    star = Hook.from_config({"name": "all", "on": ["*"], "command": ["true"]}, 1, {})
    watcher = Hook.from_config({"name": "ops", "on": ["hook-failed"], "command": ["true"]}, 2, {})
    assert star.takes({"event": "finished", "outcome": "failure"})
    assert not star.takes({"event": "hook-delivered", "hook": "other"})
    assert watcher.takes({"event": "hook-failed", "hook": "all"})
    assert not watcher.takes({"event": "hook-failed", "hook": "ops"})


def test_backoff_and_timeout_are_durations() -> None:
    """backoff is the first wait between attempts; a timeout of 0 is refused (every attempt would fail)."""
    hook = Hook.from_config({"on": "*", "command": ["true"], "backoff": 0.25}, 1, {})
    assert hook.backoff == 0.25
    with pytest.raises(HookInvalid, match="timeout"):
        Hook.from_config({"on": "*", "command": ["true"], "timeout": 0}, 1, {})
    with pytest.raises(HookInvalid, match="backoff"):
        Hook.from_config({"on": "*", "command": ["true"], "backoff": "soon"}, 1, {})
