"""``agentd web``: the dashboard in a browser, and /metrics for Prometheus."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentd.cli.app import App
from agentd.cli.output import info
from agentd.errors import ExitCode

pass_app = click.make_pass_decorator(App)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@click.option("--read-only", is_flag=True, help="Refuse every change (retry, cancel, set status).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the token from this file (mode 0600). Default: .agentd/web.token, created when missing.",
)
@click.option("--no-token", is_flag=True, help="Let anyone who can reach the page make changes (loopback only).")
@pass_app
def web(app: App, host: str, port: int, read_only: bool, token_file: Path | None, no_token: bool) -> int:
    """Serve the dashboard: board, roles, tasks with live logs, timeline, events; /metrics, /healthz, /api.

    Changes from the page need the token: the first start writes one to .agentd/web.token (mode 0600) and prints
    a login link that sets it as a cookie. On an address other than loopback every page needs the token.

    \b
    Examples:
      agentd web                           http://127.0.0.1:8765, with a login link
      agentd web --read-only --port 9000   a wall screen: look, never touch
      agentd web --host 0.0.0.0 --token-file /etc/agentd/web.token
    """
    from agentd.web import server

    config = app.config
    try:
        chosen = server.plan(
            config,
            host,
            port,
            read_only=read_only,
            token_file=token_file.resolve() if token_file else None,
            no_token=no_token,
        )
    except server.BindRefused as exc:
        raise click.UsageError(str(exc)) from None
    try:
        sock = server.bind(host, port)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    address = server.url(host, sock.getsockname()[1])
    info(f"agentd web: serving {config.root} on {address}" + (" (read-only)" if read_only else ""))
    if chosen.guard.token is not None:
        info(f"login: {address}/login?token={chosen.guard.token}")
    sys.stdout.flush()  # the address is what a supervisor or a test waits for
    server.serve(config, chosen, sock)
    return ExitCode.OK
