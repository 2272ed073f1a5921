"""How the CLI talks to people: rich tables on a terminal, plain aligned text otherwise, JSON on request."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from agentd.cli.queue_ops import plain_table

if TYPE_CHECKING:  # rich costs ~20 ms to import: only a terminal's output needs it
    from rich.console import Console


class Group(click.Group):
    """A command group whose command list shows each command's whole first sentence, wrapped, never cut with "…".

    ``lazy`` maps command names to ``"module:attribute"``: a command's module is imported only when that command
    runs (or help lists it), so `agentd queue add` never pays for the daemon, the web app or rich.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command), self.lazy[cmd_name]
            self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def is_terminal() -> bool:
    """Whether stdout is a terminal (rich output), rather than a pipe or file (plain output)."""
    return sys.stdout.isatty()


def console() -> Console:
    """A console that honours NO_COLOR and plain output when not on a terminal."""
    from rich.console import Console

    return Console(no_color="NO_COLOR" in os.environ, highlight=False, soft_wrap=False)


def emit_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    """A table: rich on a terminal, tab-free aligned columns otherwise (stable for grep and awk)."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if is_terminal():
        from rich.table import Table

        rich_table = Table(title=title, show_edge=False, header_style="bold")
        for header in headers:
            rich_table.add_column(header, overflow="fold")
        for row in cells:
            rich_table.add_row(*row)
        console().print(rich_table)
        return
    if title:
        click.echo(title)
    for line in plain_table(headers, cells):
        click.echo(line)


def warn(message: str) -> None:
    """A warning on stderr."""
    click.echo(f"agentd: warning: {message}", err=True)


def info(message: str) -> None:
    """A line for the user on stdout."""
    click.echo(message)
