"""docs/reference/cli.md is generated from the click commands and must stay in step with them."""

from __future__ import annotations

import difflib
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest

PROJECT = Path(__file__).resolve().parents[2]
GENERATOR = PROJECT / "scripts" / "gen_cli_docs.py"
CLI_DOC = PROJECT / "docs" / "reference" / "cli.md"


def _render() -> Callable[..., str]:
    namespace: dict[str, Any] = runpy.run_path(str(GENERATOR))
    render: Callable[..., str] = namespace["render"]
    return render


def test_cli_reference_is_up_to_date() -> None:
    """docs/reference/cli.md is exactly what scripts/gen_cli_docs.py prints for the current commands."""
    expected = _render()()
    actual = CLI_DOC.read_text(encoding="utf-8") if CLI_DOC.is_file() else ""
    if actual != expected:
        diff = difflib.unified_diff(
            actual.splitlines(), expected.splitlines(), "docs/reference/cli.md", "generated", lineterm="", n=1
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/reference/cli.md is out of date: run `make docs-cli`\n{shown}", pytrace=False)


def test_generator_walks_every_command() -> None:
    """Commands nested at any depth appear in sorted order with their help; hidden ones are left out."""

    @click.group(context_settings={"max_content_width": 60})
    def tool() -> None:
        """A tool."""

    @tool.group()
    def zeta() -> None:
        """Zeta things."""

    @zeta.command(name="deep")
    @click.option("--flag", is_flag=True, help="A flag.")
    def deep(flag: bool) -> None:
        """Deep command."""

    @tool.command()
    def alpha() -> None:
        """Alpha command."""

    @tool.command(hidden=True)
    def secret() -> None:
        """Hidden command."""

    page = _render()(tool, "tool")
    headings = [line for line in page.splitlines() if line.startswith("## ")]
    assert headings == ["## tool", "## tool alpha", "## tool zeta", "## tool zeta deep"]
    assert "Usage: tool zeta deep [OPTIONS]" in page and "--flag  A flag." in page
    assert "secret" not in page
