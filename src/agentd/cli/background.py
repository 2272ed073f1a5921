"""``agentd start|stop|restart|status|logs``: role daemons in the background."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from agentd import scheduler, service
from agentd.cli.app import App
from agentd.cli.output import emit_json, info, table
from agentd.clock import SystemClock
from agentd.config import Config
from agentd.errors import AgentdError, ExitCode
from agentd.leases import LeaseDir
from agentd.pidfile import Probe, role_of, to_json

pass_app = click.make_pass_decorator(App)


def _roles(config: Config, roles: tuple[str, ...]) -> list[str]:
    for role in roles:
        config.role(role)  # unknown roles: exit 6 before anything starts
    return list(roles) or list(config.roles)


def start_roles(app: App, roles: list[str], interval: float | None, instance: str | None, log_format: str) -> int:
    """Start every role at once, then report each as it comes up; the worst exit code wins."""
    pending = [
        service.spawn(
            app.config, role, instance=instance, interval=interval, log_format=log_format, verbose=app.verbose
        )
        for role in roles
    ]
    code = 0
    for item in pending:
        result = item.wait()
        if result.state == "failed":
            click.echo(f"agentd: {result.line()}", err=True)
            code = max(code, result.exit_code or int(ExitCode.FAILURE))
        else:
            info(result.line())
    return code


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), help="Fallback poll, s.")
@click.option("--instance", metavar="NAME", help="Start a further daemon of the role under this name.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def start(app: App, roles: tuple[str, ...], interval: float | None, instance: str | None, log_format: str) -> int:
    """Start role daemons in the background (no role: every role in agentd.toml).

    Each daemon is detached (own session, no terminal, output to .agentd/logs/<role>.log, rotated) and is reported
    "started" only once its PID file is locked and its first pass is done. A role already running is left alone.

    \b
    Examples:
      agentd start
      agentd start builder tester --interval 30
      agentd start builder --instance b2
    """
    return start_roles(app, _roles(app.config, roles), interval, instance, log_format)


def _stop(app: App, roles: list[str], timeout: float | None) -> None:
    for seen in service.daemons(app.config, roles):
        role, _ = role_of(seen.path)
        spec = app.config.role(role)
        wait = timeout if timeout is not None else spec.grace + spec.kill_after + 10
        info(service.stop(seen, wait).line())


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for a drain. Default: grace + 10.")
@pass_app
def stop(app: App, roles: tuple[str, ...], timeout: float | None) -> int:
    """Stop role daemons: SIGTERM (they drain running tasks), then SIGKILL after the timeout.

    Tasks that do not finish within the role's grace go back to their claimable status without spending an attempt.

    \b
    Examples:
      agentd stop
      agentd stop builder --timeout 60
    """
    _stop(app, _roles(app.config, roles), timeout)
    return ExitCode.OK


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for a drain. Default: grace + 10.")
@pass_app
def restart(app: App, roles: tuple[str, ...], timeout: float | None) -> int:
    """Stop, then start role daemons.

    \b
    Examples:
      agentd restart
      agentd restart builder
    """
    asked = _roles(app.config, roles)
    _stop(app, asked, timeout)
    return start_roles(app, asked, None, None, "text")


def _status_rows(app: App, probes: list[Probe], now: datetime) -> list[dict[str, Any]]:
    config = app.config
    try:
        snapshot = app.store().read()
        tasks = snapshot.tasks
        limits = snapshot.wip_limits
        queue_error = None
    except AgentdError as exc:
        tasks, limits, queue_error = [], {}, str(exc)
    try:
        leases = LeaseDir(config.leases_dir, config.root).observe_all()
    except (AgentdError, OSError):
        leases = {}
    rows = []
    for seen in probes:
        role, instance = role_of(seen.path)
        spec = config.role(role)
        pid = seen.info.pid if seen.info and seen.running else None
        running_tasks = [
            {
                "id": task_id,
                "token": lease.token,
                "heartbeat_age_s": round((now - lease.heartbeat_at).total_seconds(), 1) if lease.heartbeat_at else None,
            }
            for task_id, lease in sorted(leases.items())
            if pid is not None and lease.pid == pid and lease.role == role
        ]
        rows.append(
            {
                "role": role,
                "instance": instance,
                "running": seen.running,
                "pid": pid,
                "uptime_s": round(seen.info.uptime(now), 1) if seen.info and seen.running else None,
                "interval_s": seen.info.interval if seen.info and seen.running else None,
                "log": seen.info.log if seen.info and seen.running else None,
                "tasks": running_tasks,
                "wip": len(scheduler.in_progress(tasks, spec)) if queue_error is None else None,
                "wip_limit": scheduler.wip_limit(spec, limits),
                "stale_pid_file": seen.stale,
                "pid_file": str(seen.path),
                "pid_info": to_json(seen.info) if seen.running else None,
                "queue_error": queue_error,
            }
        )
    return rows


def _state(row: dict[str, Any]) -> str:
    if row["running"]:
        return "running"
    return f"stopped (stale PID file: {row['stale_pid_file']})" if row["stale_pid_file"] else "stopped"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@click.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: App, roles: tuple[str, ...], as_json: bool) -> int:
    """Show each role's daemon: running or not, PID, uptime, interval, running tasks, WIP n/limit.

    Exit code 0 when every asked role runs, 3 when one does not (as systemctl is-active and LSB init scripts).

    \b
    Examples:
      agentd status
      agentd status builder || agentd start builder
      agentd status --json | jq '.[] | select(.running | not) | .role'
    """
    probes = service.daemons(app.config, _roles(app.config, roles))
    rows = _status_rows(app, probes, SystemClock().now())
    if as_json:
        emit_json(rows)
    else:
        table(
            ["role", "state", "pid", "uptime", "interval", "tasks", "wip"],
            [
                [
                    r["role"] + (f".{r['instance']}" if r["instance"] else ""),
                    _state(r),
                    r["pid"],
                    _age(r["uptime_s"]),
                    f"{r['interval_s']:g}s" if r["interval_s"] is not None else "",
                    ", ".join(f"{t['id']} ({_age(t['heartbeat_age_s'])} ago)" for t in r["tasks"]),
                    f"{'?' if r['wip'] is None else r['wip']}/{r['wip_limit']}",
                ]
                for r in rows
            ],
        )
    return ExitCode.OK if all(r["running"] for r in rows) else ExitCode.NOT_RUNNING


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
