"""``agentd web``: the dashboard in a browser, and /metrics for Prometheus."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from agentd.cli.app import App
from agentd.cli.output import info
from agentd.core.clock import SystemClock
from agentd.errors import AgentdError, ExitCode, display_path
from agentd.store.file.pidfile import AlreadyRunning, PidFile

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
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.option("--ready-fd", type=int, hidden=True)
@pass_app
def web(
    app: App,
    host: str,
    port: int,
    read_only: bool,
    token_file: Path | None,
    no_token: bool,
    pid_file: Path | None,
    ready_fd: int | None,
) -> int:
    """Serve the dashboard: board, roles, tasks with live logs, timeline, events; /metrics, /healthz, /api.

    Changes from the page need the token: the first start writes one to .agentd/web.token (mode 0600) and prints
    a login link that sets it as a cookie. On an address other than loopback every page needs the token.

    \b
    Examples:
      agentd web                           http://127.0.0.1:8765, with a login link
      agentd web --read-only --port 9000   a wall screen: look, never touch
      agentd web --host 0.0.0.0 --token-file /etc/agentd/web.token
    """
    from agentd.cli.foreground import ReadyPipe
    from agentd.web import server

    ready = ReadyPipe(ready_fd)
    holder = PidFile(pid_file, "web") if pid_file is not None else None
    try:
        config = app.config
        if holder is not None:  # `agentd start --web` and the service unit: one background server per project
            holder.acquire(started=SystemClock().now(), interval=None, log=None)
        chosen = server.plan(
            config,
            host,
            port,
            read_only=read_only,
            token_file=token_file.resolve() if token_file else None,
            no_token=no_token,
        )
        try:
            sock = server.bind(host, port)
        except OSError as exc:
            raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except AlreadyRunning as exc:
        ready.send(status="running", pid=exc.pid)
        raise
    except server.BindRefused as exc:
        ready.send(status="error", error=str(exc), code=int(ExitCode.USAGE))
        raise click.UsageError(str(exc)) from None
    except click.UsageError as exc:
        ready.send(status="error", error=exc.message, code=int(ExitCode.USAGE))
        if holder is not None:
            holder.release()
        raise
    except AgentdError as exc:
        ready.send(status="error", error=str(exc), code=int(exc.exit_code))
        if holder is not None:
            holder.release()
        raise
    try:
        address = server.url(host, sock.getsockname()[1])
        login = f"{address}/login?token={chosen.guard.token}" if chosen.guard.token is not None else None
        if holder is not None:
            holder.update(url=address)
        info(f"agentd web: serving {config.root} on {address}" + (" (read-only)" if read_only else ""))
        if login is not None and holder is None:
            info(f"login: {login}")
        elif login is not None:  # in the background its output is a log: the starter's terminal shows the link
            info(f"login: {address}/login?token=<the token in {display_path(chosen.token_file or 'its token file')}>")
        sys.stdout.flush()  # the address is what a supervisor or a test waits for
        ready.send(status="ready", pid=os.getpid(), url=address, login=login)
        server.serve(config, chosen, sock)
    finally:
        if holder is not None:
            holder.release()
    return ExitCode.OK
