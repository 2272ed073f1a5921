"""The ``agentd`` click group. One error boundary turns agentd errors into one line and a documented exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence

import click

from agentd import __version__
from agentd.cli.app import App
from agentd.cli.options import daemon_options
from agentd.cli.output import Group
from agentd.errors import AgentdError, ExitCode, FileAccessError

# Each command's module is imported only when that command runs (start-up is paid on every call: docs/benchmarks.md).
COMMANDS = {
    "init": "agentd.cli.init_cmd:init",
    "config": "agentd.cli.config_cmd:config_group",
    "queue": "agentd.cli.queue_cmds:queue",
    "run": "agentd.cli.daemon_cmds:run",
    "leases": "agentd.cli.daemon_cmds:leases",
    "service": "agentd.cli.service_units:service",
    "doctor": "agentd.cli.doctor_cmd:doctor",
    "completion": "agentd.cli.completion_cmd:completion",
    "events": "agentd.cli.events_cmd:events",
    "web": "agentd.cli.web_cmd:web",
    "start": "agentd.cli.background:start",
    "stop": "agentd.cli.background:stop",
    "restart": "agentd.cli.background:restart",
    "status": "agentd.cli.background:status",
    "logs": "agentd.cli.background:logs",
    "automation": "agentd.cli.automation_cmd:automation",
    "emit": "agentd.cli.automation_cmd:emit",
    "workspace": "agentd.cli.workspace_cmd:workspace",
    "pause": "agentd.cli.control_cmds:pause",
    "resume": "agentd.cli.control_cmds:resume",
    "usage": "agentd.cli.control_cmds:usage",
    "store": "agentd.cli.store_cmd:store",
}

EPILOG = """\b
Examples:
  agentd init                          set up agentd.toml and an empty queue here
  agentd queue list --status ready     tasks waiting for the builder
  agentd --role builder --interval 60  run the builder daemon in the foreground
  agentd --role tester --once          one pass, then exit (cron, CI)

\b
Exit codes: 0 ok, 1 a task failed, 2 usage, 3 not running, 4 bad data, 5 lock timeout, 6 not found,
            7 refused, 8 cannot read or write a file, 130 interrupted.
Docs: docs/reference/cli.md"""


@click.group(
    cls=Group,
    lazy=COMMANDS,
    invoke_without_command=True,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=str),
    envvar="AGENTD_ROOT",
    help="Project folder. Default: the nearest folder upwards holding agentd.toml, else the current one.",
)
@click.option("--queue", "queue", type=click.Path(dir_okay=False, path_type=str), help="Queue file (env AGENTD_QUEUE).")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=str), help="agentd.toml (env AGENTD_CONFIG)."
)
@click.option(
    "--store",
    "store_kind",
    metavar="KIND",
    help="Where the queue, leases and journal live: 'file' (default) or postgresql://USER@HOST/DB (env AGENTD_STORE).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@daemon_options
@click.option(
    "--background",
    is_flag=True,
    help="With --role: start the daemon detached, as `agentd start ROLE` (with --interval, --concurrency, --instance; "
    "--once and --drain are refused).",
)
@click.version_option(__version__, prog_name="agentd")
@click.pass_context
def cli(
    ctx: click.Context,
    root: str | None,
    queue: str | None,
    config_path: str | None,
    store_kind: str | None,
    verbose: int,
    role: str | None,
    interval: float | None,
    once: bool,
    drain: bool,
    concurrency: int | None,
    instance: str | None,
    background: bool,
) -> int | None:
    """agentd runs one daemon per role over a shared JSON sprint queue (SPRINT_QUEUE.json).

    Each daemon claims the best ready task for its role through a lease, runs the role's command for it (claude,
    codex, aider, any argv), records the outcome and moves the task on.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = App(root=root, queue=queue, config_path=config_path, verbose=verbose, store_kind=store_kind)
    flags = {
        "--role": role,
        "--interval": interval,
        "--once": once,
        "--drain": drain,
        "--concurrency": concurrency,
        "--instance": instance,
        "--background": background,
    }
    given = [name for name, value in flags.items() if value not in (None, False)]
    if ctx.invoked_subcommand is not None:
        if given:
            sub = ctx.invoked_subcommand
            raise click.UsageError(
                f"{', '.join(given)} run{'s' if len(given) == 1 else ''} a role daemon (`agentd --role ROLE ...`) "
                f"and cannot come before the subcommand {sub!r}; options of `agentd {sub}` go after it"
            )
        return None
    if role is None:
        if given:
            raise click.UsageError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --role ROLE")
        click.echo(ctx.get_help())
        return None
    if background:
        if once or drain:
            raise click.UsageError(
                f"{'--once' if once else '--drain'} runs in the foreground until the work is done and cannot go "
                "with --background (`agentd start ROLE` runs a daemon that stays)"
            )
        from agentd.cli.background import start_roles

        return start_roles(ctx.obj, [role], interval, instance, "text", concurrency)
    from agentd.cli.daemon_cmds import run_daemon

    return run_daemon(ctx.obj, role, interval, once, drain, concurrency, instance)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with a documented code."""
    for stream in (sys.stdout, sys.stderr):
        # Text UTF-8 cannot encode (a lone surrogate a JS tool left in a task) prints as a \\u escape, never a crash.
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="agentd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.Abort:
        click.echo("agentd: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except AgentdError as exc:
        click.echo(f"agentd: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("agentd: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # `agentd events | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.FAILURE)
    except OSError as exc:  # a file or folder agentd needs: no permission, a full or read-only disk
        click.echo(f"agentd: {FileAccessError.from_os_error(exc)}", err=True)
        sys.exit(ExitCode.IO_ERROR)
    sys.exit(int(result) if isinstance(result, int) else 0)
