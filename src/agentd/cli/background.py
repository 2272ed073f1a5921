"""``agentd start|stop|restart|status|logs``: role daemons in the background."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from agentd.cli.app import App
from agentd.cli.output import console, emit_json, info, is_terminal
from agentd.cli.status_view import _running_line as _running_line  # (re-exported)
from agentd.cli.status_view import plain_lines, sections
from agentd.config import Config
from agentd.core.clock import SystemClock
from agentd.errors import ExitCode
from agentd.report import status as dashboard
from agentd.service import background as service
from agentd.store.file.pidfile import role_of

if TYPE_CHECKING:  # rich is imported only to draw on a terminal
    from rich.console import Group

pass_app = click.make_pass_decorator(App)


def _roles(config: Config, roles: tuple[str, ...]) -> list[str]:
    for role in roles:
        config.role(role)  # unknown roles: exit 6 before anything starts
    return list(roles) or list(config.roles)


def start_roles(
    app: App,
    roles: list[str],
    interval: float | None,
    instance: str | None,
    log_format: str,
    concurrency: int | None = None,
) -> int:
    """Start every role at once, then report each as it comes up; the worst exit code wins."""
    options = {"interval": interval, "log_format": log_format, "verbose": app.verbose, "concurrency": concurrency}
    return _start_all(app, [(role, instance, options) for role in roles])


def _start_all(
    app: App,
    asked: list[tuple[str, str | None, dict[str, Any]]],
    web: dict[str, Any] | None = None,
    automation: bool = False,
) -> int:
    pending = [service.spawn(app.config, role, instance=instance, **options) for role, instance, options in asked]
    if web is not None:
        pending.append(service.spawn_web(app.config, verbose=app.verbose, **web))
    if automation:
        pending.append(service.spawn_automation(app.config, verbose=app.verbose))
    code = 0
    for item in pending:
        result = item.wait()
        if result.state == "failed":
            click.echo(f"agentd: {result.line()}", err=True)
            code = max(code, result.exit_code or int(ExitCode.FAILURE))
        else:
            info(result.line())
            if result.login:
                info(f"login: {result.login}")
    return code


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), help="Fallback poll, s.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Tasks each daemon runs at once (default WIP).")
@click.option("--instance", metavar="NAME", help="Start a further daemon of the role under this name.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--web", is_flag=True, help="Also serve the dashboard in the background (see agentd web).")
@click.option("--web-host", default="127.0.0.1", show_default=True, help="With --web: the address to listen on.")
@click.option("--web-port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="With --web: port.")
@click.option("--web-read-only", is_flag=True, help="With --web: a dashboard that changes nothing.")
@pass_app
def start(
    app: App,
    roles: tuple[str, ...],
    interval: float | None,
    concurrency: int | None,
    instance: str | None,
    log_format: str,
    web: bool,
    web_host: str,
    web_port: int,
    web_read_only: bool,
) -> int:
    """Start role daemons in the background (no role: every role in agentd.toml), and with --web the dashboard.

    Each daemon is detached (own session, no terminal, output to .agentd/logs/<role>.log, rotated) and is reported
    "started" only once its PID file is locked and its first pass is done. A role already running is left alone.
    The dashboard (--web) is reported once it listens, with its login link; its log is .agentd/logs/web.log, and
    `agentd stop` stops it with the roles. With no ROLE, when agentd.toml has [[schedule]], [[rules]] or [[hooks]],
    `agentd automation` starts too (log .agentd/logs/automation.log).

    \b
    Examples:
      agentd start
      agentd start --web
      agentd start builder tester --interval 30
      agentd start builder --instance b2
    """
    options = {"interval": interval, "log_format": log_format, "verbose": app.verbose, "concurrency": concurrency}
    asked = [(role, instance, options) for role in _roles(app.config, roles)]
    served = {"host": web_host, "port": web_port, "read_only": web_read_only} if web else None
    return _start_all(app, asked, served, automation=not roles and bool(app.config.automation))


def _stop_automation(app: App, timeout: float | None) -> bool:
    """Stop the background automation process; whether one ran."""
    seen = service.automation_probe(app.config)
    if not seen.running:
        return False
    info(service.stop(seen, 30.0 if timeout is None else timeout, name=service.AUTOMATION).line())
    return True


def _stop_web(app: App, timeout: float | None) -> list[str] | None:
    """Stop the background web server; the argv it was started with, or None when none ran."""
    seen = service.web_probe(app.config)
    if not seen.running or seen.info is None:
        return None
    argv = list(seen.info.argv)
    info(service.stop(seen, 10.0 if timeout is None else timeout, name=service.WEB).line())
    return argv


def _stop(app: App, roles: list[str], timeout: float | None) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Stop the roles' daemons (each returns once its process has exited); what was running, with its flags."""
    was: list[tuple[str, str | None, dict[str, Any]]] = []
    for seen in service.daemons(app.config, roles):
        if seen.running and seen.info is not None:
            was.append((seen.info.role, seen.info.instance, service.flags_of(seen.info)))
        role, _ = role_of(seen.path)
        spec = app.config.role(role)
        wait = timeout if timeout is not None else spec.grace + spec.kill_after + 10
        info(service.stop(seen, wait).line())
    return was


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for a drain. Default: grace + 10.")
@click.option("--web", is_flag=True, help="The background dashboard (alone, or with the ROLEs named).")
@pass_app
def stop(app: App, roles: tuple[str, ...], timeout: float | None, web: bool) -> int:
    """Stop role daemons: SIGTERM (they drain running tasks), then SIGKILL after the timeout.

    With no ROLE and no --web: every role, and the background dashboard and automation process if they run.
    --web alone: only the dashboard. Tasks that do not finish within the role's grace go back to their claimable
    status without spending an attempt.

    \b
    Examples:
      agentd stop
      agentd stop builder --timeout 60
      agentd stop --web
    """
    if roles or not web:
        _stop(app, _roles(app.config, roles), timeout)
    if web or not roles:
        _stop_web(app, timeout)
    if not roles and not web:
        _stop_automation(app, timeout)
    return ExitCode.OK


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for a drain. Default: grace + 10.")
@pass_app
def restart(app: App, roles: tuple[str, ...], timeout: float | None) -> int:
    """Stop, then start role daemons, each with the flags it was started with.

    The flags kept are --interval, --concurrency, --log-format, -v and the instance name; a role that was not
    running starts with the defaults. Each daemon is stopped (its process has exited) before it starts again.
    With no ROLE, a background dashboard that runs is restarted too, on the same address, and the background
    automation process.

    \b
    Examples:
      agentd restart
      agentd restart builder
    """
    asked = _roles(app.config, roles)
    was = _stop(app, asked, timeout)
    served = _web_flags(_stop_web(app, timeout)) if not roles else None
    automation = _stop_automation(app, timeout) if not roles else False
    again = list(was)
    plain = {"interval": None, "log_format": "text", "verbose": app.verbose, "concurrency": None}
    again += [(role, None, plain) for role in asked if not any(name == role for name, _, _ in was)]
    return _start_all(app, again, served, automation=automation and bool(app.config.automation))


def _web_flags(argv: list[str] | None) -> dict[str, Any] | None:
    """The address and mode a background dashboard was started with (from its PID file's argv)."""
    if argv is None:
        return None
    flags: dict[str, Any] = {"host": "127.0.0.1", "port": 8765, "read_only": "--read-only" in argv}
    for position, arg in enumerate(argv[:-1]):
        if arg == "--host":
            flags["host"] = argv[position + 1]
        elif arg == "--port" and argv[position + 1].isdigit():
            flags["port"] = int(argv[position + 1])
    return flags


def _renderable(data: dict[str, Any]) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    if data["queue_error"]:
        parts.append(Text(f"queue: {data['queue_error']}", style="bold red"))
    for title, headers, rows in sections(data):
        table = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            cells = ["" if cell is None else str(cell) for cell in row]
            if title == "daemons":
                at = headers.index("state")
                colour = "green" if cells[at] == "running" else "red"
                table.add_row(*cells[:at], Text(cells[at], style=colour), *cells[at + 1 :])
            elif title == "failed" or title.startswith("quarantined"):
                table.add_row(Text(cells[0], style="red"), *cells[1:])
            else:
                table.add_row(*cells)
        parts.append(table)
    parts.append(Text(f"at {data['generated_at']} — {data['queue']}", style="dim"))
    return Group(*parts)


def _plain(data: dict[str, Any]) -> None:
    for line in plain_lines(data):
        click.echo(line)


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--json", "as_json", is_flag=True, help="Print the same data as JSON.")
@click.option("--watch", is_flag=True, help="Refresh live until Ctrl-C.")
@click.option("--every", type=click.FloatRange(min=0.2), default=1.0, show_default=True, help="--watch refresh, s.")
@pass_app
def status(app: App, roles: tuple[str, ...], as_json: bool, watch: bool, every: float) -> int:
    """The dashboard: each role's daemon, its running tasks and next task; tasks per status, backing off, failed.

    Exit code 0 when every asked role runs, 3 when one does not (as systemctl is-active and LSB init scripts), 4 when
    a PID file cannot be read, so whether its daemon runs is unknown; --watch ends on Ctrl-C with 130.
    Plain text when not on a terminal; NO_COLOR is respected. With a store shared by several hosts (PostgreSQL), every
    host's daemons are listed with their host, start and last beat; a daemon of another host is judged only by its
    last beat on the store's clock (--json: host, pid, started, last_beat, beat_age_s, not_responding_s per daemon).

    \b
    Examples:
      agentd status
      agentd status --watch
      agentd status builder || agentd start builder
      agentd status --json | jq '.roles[] | select(.running | not) | .role'
    """
    asked = _roles(app.config, roles)
    clock = SystemClock()
    data = dashboard.snapshot(app.config, asked, clock.now())
    if as_json:
        emit_json(data)
    elif watch and is_terminal():
        from rich.live import Live

        try:
            with Live(_renderable(data), console=console(), refresh_per_second=4, screen=False) as live:
                while True:
                    time.sleep(every)
                    data = dashboard.snapshot(app.config, asked, clock.now())
                    live.update(_renderable(data))
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
    elif watch:
        try:
            while True:
                _plain(data)
                time.sleep(every)
                data = dashboard.snapshot(app.config, asked, clock.now())
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
    elif is_terminal():
        console().print(_renderable(data))
    else:
        _plain(data)
    if all(r["running"] for r in data["roles"]):
        return ExitCode.OK
    if any(r.get("pid_file_error") for r in data["roles"]):
        return ExitCode.BAD_DATA  # a PID file that cannot be read: running or not is unknown (LSB's 4 too)
    return ExitCode.NOT_RUNNING


@click.command()
@click.argument("role")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (across rotations) until Ctrl-C.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True, help="Lines to show first.")
@click.option("--instance", metavar="NAME", help="The log of this instance of the role.")
@pass_app
def logs(app: App, role: str, follow: bool, lines: int, instance: str | None) -> int:
    """Print a role daemon's log (.agentd/logs/<role>.log).

    \b
    Examples:
      agentd logs builder
      agentd logs tester -n 200
      agentd logs builder -f
    """
    app.config.role(role)
    path = service.log_path(app.config, role, instance)
    if not path.exists() and not follow:
        info(f"no log yet at {service.display(path, app.config.root)}")
        return ExitCode.OK
    for line in service.tail(path, lines):
        click.echo(line)
    if follow:
        try:
            for line in service.follow(path):
                click.echo(line)
        except KeyboardInterrupt:
            return ExitCode.OK
    return ExitCode.OK
