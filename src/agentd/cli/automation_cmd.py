"""``agentd automation``: schedules, rules and hooks (run, status, enable, disable, stop); ``agentd emit``."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agentd.cli.app import App
from agentd.cli.output import Group, emit_json, info
from agentd.cli.output import table as plain_table
from agentd.config import Config
from agentd.core.clock import SystemClock, format_timestamp, parse_timestamp
from agentd.errors import AgentdError, AutomationNotFound, ConfigError, ExitCode, display_path
from agentd.store.base import EVENT_TYPES

pass_app = click.make_pass_decorator(App)
TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_FIELDS = ("time", "event", "role", "host", "pid", "message")


def _configured(config: Config) -> Any:
    if not config.automation:
        where = display_path(config.path) if config.path else "agentd.toml"
        raise ConfigError(None, f"{where} has no [[schedule]], [[rules]] or [[hooks]]: automation has nothing to run")
    return config.automation


@click.group(cls=Group, invoke_without_command=True)
@click.option("--background", is_flag=True, help="Start it detached (as `agentd start` does when anything is set).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log to this file (rotated) instead of stderr.")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.option("--ready-fd", type=int, hidden=True)
@click.pass_context
def automation(
    ctx: click.Context, background: bool, log_file: str | None, pid_file: Path | None, ready_fd: int | None
) -> int | None:
    """Run the schedules, rules and hooks of agentd.toml in the foreground (or --background).

    Several may run, on one host or many: one is active (it holds .agentd/run/automation/active.pid), the others
    stand by and take over within 2 s when it dies. Each firing adds its task exactly once (its id is made from
    its source and its time). SIGTERM/SIGINT stop it; SIGHUP re-reads agentd.toml. Docs: docs/reference/config.md.

    \b
    Examples:
      agentd automation                  run in the foreground
      agentd automation --background     the same, detached (log: .agentd/logs/automation.log)
      agentd automation status
      agentd automation disable daily-audit
    """
    if ctx.invoked_subcommand is not None:
        if background or log_file or pid_file or ready_fd is not None:
            raise click.UsageError(
                f"--background and --log-file go with `agentd automation` alone, not with {ctx.invoked_subcommand!r}"
            )
        return None
    app = ctx.ensure_object(App)
    if background:
        from agentd.service import background as service

        _configured(app.config)
        result = service.spawn_automation(app.config, verbose=app.verbose).wait()
        if result.state == "failed":
            click.echo(f"agentd: {result.line()}", err=True)
            return result.exit_code or int(ExitCode.FAILURE)
        info(result.line())
        return ExitCode.OK
    return _foreground(app, log_file, pid_file, ready_fd)


def _foreground(app: App, log_file: str | None, pid_file: Path | None, ready_fd: int | None) -> int:
    from agentd import config as config_mod
    from agentd.automation.process import NAME, AutomationProcess
    from agentd.cli.foreground import ReadyPipe
    from agentd.service import logsetup
    from agentd.store.file.pidfile import AlreadyRunning, PidFile

    ready = ReadyPipe(ready_fd)
    clock = SystemClock()
    holder = PidFile(pid_file, NAME) if pid_file is not None else None
    try:
        config = app.config
        _configured(config)

        def load() -> Config:
            return config_mod.load(
                root=config.root, config_path=config.path, queue=Path(app.queue) if app.queue else None
            )

        process = AutomationProcess(load, clock)
        if holder is not None:
            holder.acquire(started=clock.now(), interval=None, log=log_file)
    except AlreadyRunning as exc:
        ready.send(status="running", pid=exc.pid)
        raise
    except AgentdError as exc:
        ready.send(status="error", error=str(exc), code=int(exc.exit_code))
        raise
    logsetup.setup(
        NAME,
        verbose=app.verbose,
        log_file=Path(log_file) if log_file else None,
        log_format="text",
        max_bytes=config.log.max_bytes,
        backups=config.log.backups,
    )

    def started(active: bool) -> None:
        info(f"agentd automation: {'active' if active else 'standby'} (pid {os.getpid()})")
        ready.send(status="ready", pid=os.getpid(), active=active)

    try:
        return process.run(started)
    finally:
        if holder is not None:
            holder.release()


# -- status ----------------------------------------------------------------------------------------------------------


def status_data(config: Config, now: datetime) -> dict[str, Any]:
    """Schedules with their next and last firing, rules with their last trigger, hooks with their last delivery,
    which process is active, and what is switched off."""
    from agentd.automation.process import active_path
    from agentd.automation.schedule import due
    from agentd.automation.settings import Automation, hook_names
    from agentd.service import background as service
    from agentd.store import open_store
    from agentd.store.file.automation_state import read_memory, read_switches
    from agentd.store.file.pidfile import probe

    auto = config.automation or Automation()
    switches = read_switches(open_store(config))
    memory = read_memory(config.state_dir)
    seen = probe(active_path(config))
    background = service.automation_probe(config)
    schedules = []
    for schedule in auto.schedules:
        record = memory.get("schedules", {}).get(schedule.name, {})
        last = record.get("handled")
        upcoming = due(schedule, parse_timestamp(last) if isinstance(last, str) else None, now).next_at
        schedules.append(
            {
                "name": schedule.name,
                "enabled": switches.enabled(schedule.name),
                "when": schedule.cron or f"every {schedule.every:g} s",
                "tz": schedule.tz,
                "next": format_timestamp(upcoming),
                "last_fired": record.get("fired"),
                "last_task": record.get("task"),
            }
        )
    rules = []
    for rule in auto.rules:
        record = memory.get("rules", {}).get(rule.name, {})
        rules.append(
            {
                "name": rule.name,
                "enabled": switches.enabled(rule.name),
                "on": rule.on,
                "watch": list(rule.paths) if rule.on == "file" else rule.topic,
                "last_trigger": record.get("at"),
                "last_task": record.get("task"),
                "last_result": record.get("result"),
            }
        )
    hooks = []
    for name, spec in zip(hook_names(auto.hooks), auto.hooks, strict=True):
        record = memory.get("hooks", {}).get(name, {})
        kind = next((key for key in ("command", "notify", "webhook") if key in spec), "?")
        hooks.append(
            {
                "name": name,
                "enabled": switches.enabled(name),
                "kind": kind,
                "on": spec.get("on"),
                "last_delivery": record.get("at"),
                "last_ok": record.get("ok"),
                "last_error": record.get("error"),
            }
        )
    return {
        "active": (
            {"pid": seen.info.pid, "host": seen.info.host, "since": seen.info.started_at}
            if seen.running and seen.info
            else None
        ),
        "background": (
            {"pid": background.info.pid, "log": service.display(service.automation_log_path(config), config.root)}
            if background.running and background.info
            else None
        ),
        "all_enabled": not switches.off,
        "disabled": sorted(switches.off),
        "schedules": schedules,
        "rules": rules,
        "hooks": hooks,
    }


def _on(enabled: bool) -> str:
    return "on" if enabled else "off"


@automation.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same data as JSON.")
@pass_app
def status(app: App, as_json: bool) -> int:
    """Schedules (next and last firing), rules (last trigger), hooks (last delivery), and which process is active.

    Exit code 0 when an automation process is active, 3 when none is.

    \b
    Examples:
      agentd automation status
      agentd automation status --json | jq '.schedules[] | {name, next}'
    """
    data = status_data(app.config, SystemClock().now())
    if as_json:
        emit_json(data)
    else:
        active = data["active"]
        click.echo(
            f"active: pid {active['pid']} on {active['host']} since {active['since']}" if active else "active: none"
        )
        if "*" in data["disabled"]:
            click.echo("everything is disabled (agentd automation enable)")
        if data["schedules"]:
            click.echo("schedules:")
            rows = [
                [
                    s["name"],
                    _on(s["enabled"]),
                    s["when"],
                    s["tz"],
                    s["next"],
                    s["last_fired"] or "",
                    s["last_task"] or "",
                ]
                for s in data["schedules"]
            ]
            plain_table(["name", "state", "when", "tz", "next", "last firing", "last task"], rows)
        if data["rules"]:
            click.echo("rules:")
            rows = [
                [
                    r["name"],
                    _on(r["enabled"]),
                    r["on"],
                    ", ".join(r["watch"]) if isinstance(r["watch"], list) else r["watch"],
                    r["last_trigger"] or "",
                    f"{r['last_task'] or ''} {r['last_result'] or ''}".strip(),
                ]
                for r in data["rules"]
            ]
            plain_table(["name", "state", "on", "watch", "last trigger", "last task"], rows)
        if data["hooks"]:
            click.echo("hooks:")
            rows = [
                [
                    h["name"],
                    _on(h["enabled"]),
                    h["kind"],
                    ", ".join(h["on"]) if isinstance(h["on"], list) else str(h["on"]),
                    h["last_delivery"] or "",
                    "" if h["last_ok"] is None else "delivered" if h["last_ok"] else f"failed: {h['last_error']}",
                ]
                for h in data["hooks"]
            ]
            plain_table(["name", "state", "kind", "on", "last delivery", "result"], rows)
    return ExitCode.OK if data["active"] else ExitCode.NOT_RUNNING


def _switch(app: App, name: str | None, enabled: bool) -> int:
    from agentd.store.file.automation_state import set_enabled

    auto = _configured(app.config)
    if name is not None and name not in auto.names():
        raise AutomationNotFound(name, auto.names())
    set_enabled(app.store(), name, enabled)
    what = name or "every schedule, rule and hook"
    info(f"{what}: {'enabled' if enabled else 'disabled'}")
    return ExitCode.OK


@automation.command()
@click.argument("name", required=False)
@pass_app
def enable(app: App, name: str | None) -> int:
    """Turn a schedule, rule or hook back on (no NAME: everything), persistently (.agentd/state.json).

    \b
    Examples:
      agentd automation enable daily-audit
      agentd automation enable                 # everything
    """
    return _switch(app, name, True)


@automation.command()
@click.argument("name", required=False)
@pass_app
def disable(app: App, name: str | None) -> int:
    """Turn a schedule, rule or hook off (no NAME: everything), persistently, until `enable`.

    A disabled schedule's firings pass without a task and are not caught up when it is enabled again.

    \b
    Examples:
      agentd automation disable tests-on-change
      agentd automation disable                # everything, until `agentd automation enable`
    """
    return _switch(app, name, False)


@automation.command()
@click.option("--timeout", type=click.FloatRange(min=0), default=30, show_default=True, help="Seconds to wait.")
@pass_app
def stop(app: App, timeout: float) -> int:
    """Stop the background automation process (SIGTERM, then SIGKILL after the timeout).

    \b
    Examples:
      agentd automation stop
      agentd automation stop --timeout 30
    """
    from agentd.service import background as service

    info(service.stop(service.automation_probe(app.config), timeout, name=service.AUTOMATION).line())
    return ExitCode.OK


# -- emit --------------------------------------------------------------------------------------------------------------


@click.command()
@click.argument("topic")
@click.option("--data", "data_text", metavar="JSON", help="A JSON object: its fields go into the event.")
@click.option("--message", help="A line for people (default: 'emitted TOPIC').")
@pass_app
def emit(app: App, topic: str, data_text: str | None, message: str | None) -> int:
    """Append a custom event to the journal (for [[rules]] with on = "event" and [[hooks]]).

    TOPIC is a name of letters, digits, '.', '_' and '-', not one of agentd's own event types. The fields of --data
    become fields of the event ({event.FIELD} in a rule's task).

    \b
    Examples:
      agentd emit deployed --data '{"version": "1.4.2"}'
      agentd emit nightly-data-ready
    """
    if not TOPIC.fullmatch(topic):
        raise click.UsageError(f"topic {topic!r}: use letters, digits, '.', '_' and '-' (at most 64, no ':')")
    if topic in EVENT_TYPES:
        raise click.UsageError(f"topic {topic!r} is one of agentd's own events; emit custom topics only")
    fields: dict[str, Any] = {}
    if data_text is not None:
        try:
            fields = json.loads(data_text)
        except ValueError as exc:
            raise click.UsageError(f"--data: not JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise click.UsageError('--data: must be a JSON object, e.g. \'{"version": "1.4.2"}\'')
        clash = [key for key in fields if key in RESERVED_FIELDS]
        if clash:
            raise click.UsageError(f"--data: {clash[0]!r} is a field every event has; use another name")
    import logging

    journal = app.store().journal(None, logging.getLogger("agentd.emit"))
    journal.emit(topic, message or f"emitted {topic}", **fields)
    info(f"emitted {topic}")
    return ExitCode.OK
