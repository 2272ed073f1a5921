"""``agentd completion SHELL``: shell completion for bash, zsh and fish (click's own completion)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from agentd.errors import ExitCode

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the shell completion script for SHELL.

    \b
    Examples:
      agentd completion bash > ~/.local/share/bash-completion/completions/agentd
      agentd completion zsh > "${fpath[1]}/_agentd"
      agentd completion fish > ~/.config/fish/completions/agentd.fish
      eval "$(agentd completion bash)"          # just this shell
    """
    root = ctx.find_root().command
    klass = get_completion_class(shell)
    if klass is None:  # pragma: no cover - click ships all three
        raise click.UsageError(f"no completion for {shell}")
    click.echo(klass(root, {}, "agentd", "_AGENTD_COMPLETE").source())
    return ExitCode.OK
