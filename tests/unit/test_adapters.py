"""Output adapters on recorded shapes of real agent output: claude -p --output-format json and stream-json."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentd.core.adapters import AgentReport, adapter, claude_json, names

SHAPES = Path(__file__).resolve().parents[1] / "fixtures" / "claude"


def test_a_successful_run() -> None:
    """Session id, cost and every token count come through; no error."""
    report = claude_json((SHAPES / "success.json").read_text())
    assert report == AgentReport(
        "4f1c2a9e-8b7d-4e53-9c61-0a2f3b4c5d6e",
        {
            "cost_usd": 0.4213,
            "input_tokens": 1832,
            "output_tokens": 4120,
            "cache_creation_input_tokens": 20411,
            "cache_read_input_tokens": 187320,
        },
        False,
        None,
    )


def test_a_run_that_hit_its_turn_limit_is_an_error_with_its_cost() -> None:
    """error_max_turns: is_error, a note naming it, and the spend still counted."""
    report = claude_json((SHAPES / "max-turns.json").read_text())
    assert report is not None and report.is_error and report.note == "claude reported error_max_turns"
    assert report.usage["cost_usd"] == 2.0731 and report.session == "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"


def test_stream_json_takes_the_last_result_line() -> None:
    """stream-json: init, messages, then the result object on the last line."""
    report = claude_json((SHAPES / "stream.jsonl").read_text())
    assert report is not None and report.session == "7d6c5b4a-3928-4172-a6b5-c4d3e2f1a0b9"
    assert report.usage == {"cost_usd": 0.0587, "input_tokens": 412, "output_tokens": 911}


def test_older_versions_cost_field() -> None:
    """cost_usd, as older versions printed it, still counts."""
    report = claude_json((SHAPES / "old-cost-field.json").read_text())
    assert report is not None and report.usage == {"cost_usd": 0.0031}


def test_the_result_found_in_a_task_log() -> None:
    """A task log has agentd's own lines and stderr around the object; the result is still found."""
    log = (
        "agentd: 2026-12-02T09:00:00.000+00:00 exec claude -p 'Work on B1' --output-format json\n"
        "warning: something on stderr {not json}\n"
        + (SHAPES / "success.json").read_text().strip()
        + "agentd: 2026-12-02T09:00:48.300+00:00 exited returncode=0 signal=None\n"
    )
    report = claude_json(log)
    assert report is not None and report.usage["cost_usd"] == 0.4213


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain text answer",
        '{"type": "assistant"}',
        '{"type":"result","total_cost_usd":"lots","usage":{"input_tokens":-5},"session_id":7}',
        '{"type":"result","total_cost_usd":NaN}',
    ],
)
def test_what_is_not_there_is_not_invented(text: str) -> None:
    """No result object: None; bad values in one: left out, never guessed."""
    report = claude_json(text)
    if report is not None:
        assert report.usage == {} and report.session is None


@given(st.text(max_size=300))
def test_garbage_never_raises(text: str) -> None:
    """Whatever a command prints, the adapter answers or says nothing: it never raises."""
    claude_json(text)


def test_adapters_by_name() -> None:
    """claude-json is built in; an unknown name is refused naming the known ones."""
    assert adapter("claude-json") is claude_json and "claude-json" in names()
    with pytest.raises(LookupError, match=r"known: .*claude-json"):
        adapter("gpt-json")
