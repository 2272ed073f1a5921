"""``agentd service install|uninstall``: systemd user units and launchd agents for the role daemons.

These commands write and remove unit files and print the exact systemctl/launchctl commands to run; they never run
a service manager themselves. What goes into the files is decided in :mod:`agentd.service.units`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click

from agentd.cli.app import App
from agentd.cli.output import Group, info, warn
from agentd.config import CONFIG_NAME, Config
from agentd.errors import ConfigError, Conflict
from agentd.service import background as background
from agentd.service import units

pass_app = click.make_pass_decorator(App)

ON_MACOS = sys.platform == "darwin"
GUI = "gui/$(id -u)"


def agentd_command() -> list[str]:
    """How a service manager runs this agentd: the absolute path of the running console script if there is one
    (the ``agentd`` this process was started as, else the one beside this interpreter, else the one on PATH),
    else this interpreter with ``-m agentd``."""
    started_as = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started_as is not None and started_as.name == "agentd" and started_as.is_file():
        return [str(started_as.resolve())]
    beside = Path(sys.executable).absolute().parent / "agentd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("agentd")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).absolute()), "-m", "agentd"]


def systemd_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/systemd/user`` when unset or not absolute)."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "systemd" / "user"


def launchd_dir() -> Path:
    """``~/Library/LaunchAgents``."""
    return Path.home() / "Library" / "LaunchAgents"


def _asked(config: Config, roles: Sequence[str]) -> list[str]:
    for role in roles:
        config.role(role)  # unknown role: exit 6 before anything is written
    return list(roles) or list(config.roles)


def _environment(names: Sequence[str]) -> dict[str, str]:
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise click.UsageError(f"--env {missing[0]}: it is not set in this environment")
    return {name: os.environ[name] for name in names}


def _queue(app: App) -> Path | None:
    """The queue file when the user overrode it (--queue, AGENTD_QUEUE); otherwise agentd.toml decides."""
    return app.config.queue_path if (app.queue or os.environ.get("AGENTD_QUEUE")) else None


def _write(path: Path, text: str) -> str:
    """Write ``text`` atomically (mode 0644); say whether the file was written, updated or already so."""
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    if before == text:
        return "unchanged"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return "wrote" if before is None else "updated"


def _running_note(config: Config, roles: list[str]) -> None:
    running = [seen for seen in background.daemons(config, roles) if seen.running]
    for seen in running:
        pid = seen.info.pid if seen.info else "?"
        role = seen.info.role if seen.info else seen.path.stem
        info(f"note: {role} runs now (pid {pid}); if `agentd start` started it, `agentd stop {role}` first")


@click.group(cls=Group)
def service() -> None:
    """Install role daemons as systemd user services (or launchd agents on macOS).

    The commands write unit files and print the exact systemctl/launchctl commands to run; they never start or
    stop anything themselves. The services run "agentd --root ROOT run --role ROLE" in the foreground.

    \b
    Examples:
      agentd service install --print
      agentd service install
      agentd service install --launchd builder tester
      agentd service uninstall
    """


@service.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--print", "print_only", is_flag=True, help="Write the unit file(s) to stdout; touch nothing.")
@click.option(
    "--launchd/--systemd",
    default=ON_MACOS,
    help="launchd agents in ~/Library/LaunchAgents, or a systemd user unit (default: launchd on macOS only).",
)
@click.option(
    "--env",
    "env_names",
    multiple=True,
    metavar="NAME",
    help="Copy this variable's current value into the unit (PATH, so the agent CLIs are found). Repeatable.",
)
@click.option("--web", is_flag=True, help="Also a service serving the dashboard (agentd web).")
@click.option("--web-host", default="127.0.0.1", show_default=True, help="With --web: the address to listen on.")
@click.option("--web-port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="With --web: port.")
@pass_app
def install(
    app: App,
    roles: tuple[str, ...],
    print_only: bool,
    launchd: bool,
    env_names: tuple[str, ...],
    web: bool,
    web_host: str,
    web_port: int,
) -> int:
    """Write service units for the role daemons and print the commands that enable them.

    systemd: one template unit per project, $XDG_CONFIG_HOME/systemd/user/agentd-<slug>@.service (slug: the
    project folder's name and a hash of its path), one instance per role. launchd: one plist per role in
    ~/Library/LaunchAgents. ROLE picks the roles (default: every role in agentd.toml).

    \b
    Examples:
      agentd service install --print             # look first
      agentd service install                     # then run the commands it prints
      agentd service install --env PATH builder  # the service sees your PATH
      agentd service install --launchd           # macOS
      agentd service install --web               # and the dashboard on 127.0.0.1:8765
    """
    config = app.config
    asked = _asked(config, roles)
    command, queue, env = agentd_command(), _queue(app), _environment(env_names)
    idle = [role for role in asked if config.role(role).command is None]
    if idle:  # such a daemon exits 4 at once, and the service manager would restart it forever
        problem = ConfigError(
            config.path or config.root / CONFIG_NAME,
            f"role {idle[0]!r} has no command; set [roles.{idle[0]}] command before installing its service",
        )
        if not print_only:
            raise problem
        warn(str(problem))
    if launchd:
        texts = {
            launchd_dir() / units.launchd_file_name(config.root, role): units.launchd_plist(
                command, config.root, role, config, queue=queue, env=env
            )
            for role in asked
        }
    else:
        unit = systemd_dir() / units.systemd_unit_name(config.root)
        texts = {unit: units.systemd_template(command, config.root, config, queue=queue, env=env)}
    if web:
        if launchd:
            path = launchd_dir() / units.launchd_file_name(config.root, "web")
            texts[path] = units.launchd_web_plist(command, config.root, config, host=web_host, port=web_port, env=env)
        else:
            path = systemd_dir() / units.systemd_web_unit_name(config.root)
            texts[path] = units.systemd_web_unit(command, config.root, config, host=web_host, port=web_port, env=env)
    automation = not roles and bool(config.automation)  # schedules, rules, hooks: their process is a service too
    if automation:
        if launchd:
            path = launchd_dir() / units.launchd_file_name(config.root, "automation")
            texts[path] = units.launchd_automation_plist(command, config.root, config, env=env)
        else:
            path = systemd_dir() / units.systemd_automation_unit_name(config.root)
            texts[path] = units.systemd_automation_unit(command, config.root, config, env=env)
    if print_only:
        click.echo("".join(texts.values()), nl=False)
        return 0
    done = {path: _write(path, text) for path, text in texts.items()}
    for path, what in done.items():
        info(f"{what} {path}")
    if launchd:
        (config.state_dir / "logs").mkdir(parents=True, exist_ok=True)  # launchd opens its log there
        _launchd_next_steps(config, [*asked, *(["web"] if web else []), *(["automation"] if automation else [])], done)
    else:
        _systemd_next_steps(config, asked)
        if web:
            info("And the dashboard:")
            info(f"  systemctl --user enable --now {units.systemd_web_unit_name(config.root).removesuffix('.service')}")
        if automation:
            name = units.systemd_automation_unit_name(config.root).removesuffix(".service")
            info("And the schedules, rules and hooks (agentd automation):")
            info(f"  systemctl --user enable --now {name}")
    _running_note(config, asked)
    return 0


def _systemd_next_steps(config: Config, roles: list[str]) -> None:
    pattern = units.systemd_instance(config.root, "*")
    info("Enable and start the role daemons (one instance per role):")
    info("  systemctl --user daemon-reload")
    for role in roles:
        info(f"  systemctl --user enable --now {units.systemd_instance(config.root, role)}")
    info("Watch them:")
    info(f"  systemctl --user status '{pattern}'")
    info(f"  journalctl --user -u '{pattern}' -f")
    info("On a server, keep them running after you log out:")
    info("  loginctl enable-linger $USER")


def _launchd_next_steps(config: Config, roles: list[str], done: dict[Path, str]) -> None:
    info("Load and start them:")
    for role in roles:
        path = launchd_dir() / units.launchd_file_name(config.root, role)
        if done.get(path) != "wrote":  # possibly loaded already: launchd reads a plist only when it loads it
            info(f"  launchctl bootout {GUI}/{units.launchd_label(config.root, role)} 2>/dev/null || true")
        info(f"  launchctl bootstrap {GUI} {shlex.quote(str(path))}")
    info("Watch them:")
    for role in roles:
        info(f"  launchctl print {GUI}/{units.launchd_label(config.root, role)}")
    info(f"  agentd logs {roles[0]} -f" if roles else "  agentd logs ROLE -f")


@service.command()
@click.argument("roles", nargs=-1, metavar="[ROLE]...")
@click.option("--launchd/--systemd", default=ON_MACOS, help="Remove launchd agents, or the systemd user unit.")
@pass_app
def uninstall(app: App, roles: tuple[str, ...], launchd: bool) -> int:
    """Remove what "agentd service install" wrote, printing the commands that stop and disable the services.

    The systemd template serves every role of the project, so it is removed only once no instance is enabled any
    more (refused, exit 7, with the commands to run, while one is). launchd agents are removed per role (default:
    every role, and any other agent of this project).

    \b
    Examples:
      agentd service uninstall                 # systemd
      agentd service uninstall --launchd       # macOS, every role
      agentd service uninstall --launchd builder
    """
    config = app.config
    asked = _asked(config, roles)
    if launchd:
        return _uninstall_launchd(config, asked, everything=not roles)
    return _uninstall_systemd(config)


def _enabled_instances(folder: Path, unit_name: str) -> list[str]:
    """Roles whose instance of the template is enabled: ``*.wants/agentd-<slug>@<role>.service`` links."""
    prefix = unit_name.removesuffix(".service")
    found: set[str] = set()
    for pattern in ("*.wants", "*.requires"):
        for link in folder.glob(f"{pattern}/{prefix}*.service"):
            found.add(link.name.removeprefix(prefix).removesuffix(".service"))
    return sorted(found)


def _uninstall_systemd(config: Config) -> int:
    folder = systemd_dir()
    name = units.systemd_unit_name(config.root)
    path = folder / name
    enabled = _enabled_instances(folder, name)
    if enabled:
        info(f"{name} is still enabled for {', '.join(enabled)}. Stop and disable first, then run this again:")
        for role in enabled:
            info(f"  systemctl --user disable --now {units.systemd_instance(config.root, role)}")
        raise Conflict(None, f"{name} is still enabled for {', '.join(enabled)}: disable it first (commands above)")
    for plain, what in (
        (units.systemd_web_unit_name(config.root), "the dashboard"),
        (units.systemd_automation_unit_name(config.root), "the automation process"),
    ):
        web = folder / plain
        if not web.exists():
            continue
        web_name = web.name.removesuffix(".service")
        if any(folder.glob(f"*.wants/{web.name}")):
            info(f"{web.name} is still enabled. Stop and disable it first, then run this again:")
            info(f"  systemctl --user disable --now {web_name}")
            raise Conflict(None, f"{web.name} is still enabled: disable it first (command above)")
        info(f"Stop {what} if it runs: systemctl --user stop {web_name}")
        web.unlink()
        info(f"removed {web}")
    if not path.exists():
        info(f"nothing to remove: {path} is not there")
        return 0
    info("Stop any instance still running, then reload systemd:")
    info(f"  systemctl --user stop '{units.systemd_instance(config.root, '*')}'")
    info("  systemctl --user daemon-reload")
    path.unlink()
    info(f"removed {path}")
    return 0


def _uninstall_launchd(config: Config, roles: list[str], *, everything: bool) -> int:
    folder = launchd_dir()
    paths = {folder / units.launchd_file_name(config.root, role): role for role in roles}
    if everything:  # also the agents of roles since removed from agentd.toml
        prefix = units.launchd_label(config.root, "")
        for found in sorted(folder.glob(f"{prefix}*.plist")):
            paths.setdefault(found, found.name.removeprefix(prefix).removesuffix(".plist"))
    present = [path for path in paths if path.exists()]
    if not present:
        info(f"nothing to remove: no agent of this project in {folder}")
        return 0
    info("Stop and unload them (by label: works before or after the files are gone):")
    for path in present:
        info(f"  launchctl bootout {GUI}/{path.name.removesuffix('.plist')}")
    for path in present:
        path.unlink()
        info(f"removed {path}")
    return 0
