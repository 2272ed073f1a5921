"""Service-manager unit files for the role daemons: a systemd user template and launchd agents (pure, no I/O).

One project gets one systemd template unit, ``agentd-<slug>@.service``, with one instance per role
(``systemctl --user enable --now agentd-<slug>@builder``), and one launchd agent per role
(``dev.agentd.<slug>.<role>.plist``). The slug is the project folder's name plus a short hash of its absolute path:
the unit carries the project root in its ``ExecStart=``, so a single ``agentd@.service`` could serve only one
project, and a name that changed when a second project is installed would break the first one's enabled units. The
hash keeps two folders called ``app`` apart; re-installing the same folder rewrites the same file.

The daemon the units start is ``agentd --root ROOT run --role ROLE``: in the foreground, holding its PID file lock
(so ``agentd status`` sees it), draining running tasks for the role's ``grace`` on SIGTERM, re-reading agentd.toml
on SIGHUP.
"""

from __future__ import annotations

import hashlib
import math
import os
import plistlib
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from agentd import __version__
from agentd.config import CONFIG_NAME, Config
from agentd.core.workflow import Role
from agentd.errors import ConfigError

STOP_MARGIN = 15.0  # seconds beyond grace + kill_after: the daemon records outcomes and releases leases
WATCHDOG_SEC = 30  # a daemon whose heartbeat thread has not beaten for this long is killed and restarted
RESTART_SEC = 5
LAUNCHD_PREFIX = "dev.agentd"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_@+=:,./-]+")  # words systemd reads as they are, unquoted
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

AgentdCommand: TypeAlias = Path | Sequence[str]
"""How to run agentd: the console script's absolute path, or an argv prefix such as ``[python, "-m", "agentd"]``."""


def project_slug(root: Path) -> str:
    """``<folder name>-<8 hex of sha256(absolute root)>``, lower case, safe in unit names and launchd labels."""
    _check_path(root, "the project root")
    name = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:32].strip("-") or "project"
    return f"{name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"


def systemd_unit_name(root: Path) -> str:
    """The project's template unit file name, ``agentd-<slug>@.service``."""
    return f"agentd-{project_slug(root)}@.service"


def systemd_instance(root: Path, role: str) -> str:
    """The unit a role runs as, for systemctl: ``agentd-<slug>@<role>``."""
    return f"agentd-{project_slug(root)}@{role}"


def launchd_label(root: Path, role: str) -> str:
    """The launchd job label of a role: ``dev.agentd.<slug>.<role>``."""
    return f"{LAUNCHD_PREFIX}.{project_slug(root)}.{role}"


def launchd_file_name(root: Path, role: str) -> str:
    """The plist file name of a role: ``<label>.plist``."""
    return launchd_label(root, role) + ".plist"


def stop_timeout(roles: Iterable[Role]) -> int:
    """Whole seconds a service manager waits after SIGTERM: the largest grace + kill_after, plus a margin."""
    longest = max((role.grace + role.kill_after for role in roles), default=0.0)
    return math.ceil(longest + STOP_MARGIN)


def _project_argv(agentd: AgentdCommand, root: Path, config: Config) -> list[str]:
    """``agentd --root ROOT [--config F]``: ``--config`` only when the file is not ``ROOT/agentd.toml``."""
    argv = [*_command(agentd), "--root", str(_check_path(root, "the project root"))]
    if config.path is not None and config.path != root / CONFIG_NAME:
        argv += ["--config", str(_check_path(config.path, "the config file"))]
    return argv


def daemon_argv(
    agentd: AgentdCommand, root: Path, config: Config, role: str, *, queue: Path | None = None
) -> list[str]:
    """The foreground daemon's argv: ``agentd --root ROOT [--config F] [--queue Q] run --role ROLE``.

    ``--config`` only when the config file is not ``ROOT/agentd.toml``; ``--queue`` only when given (it overrides
    agentd.toml, which the daemon otherwise re-reads on SIGHUP).
    """
    argv = _project_argv(agentd, root, config)
    if queue is not None:
        argv += ["--queue", str(_check_path(queue, "the queue file"))]
    return [*argv, "run", "--role", role]


def systemd_template(
    agentd_path: AgentdCommand,
    root: Path,
    config: Config,
    *,
    queue: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The systemd user template unit ``agentd-<slug>@.service``; the instance name (``%i``) is the role.

    ``KillMode=mixed`` sends SIGTERM to the daemon alone, so it drains its running tasks (their process groups are
    its children, in the same cgroup) instead of every process getting SIGTERM at once; whatever is left when the
    daemon exits, or when ``TimeoutStopSec`` runs out, gets SIGKILL. ``Type=notify`` with ``WatchdogSec``: the
    daemon says READY=1 when its loop starts and its heartbeat thread beats WATCHDOG=1; a daemon that stops beating
    (SIGSTOPped, or its heartbeat thread stuck) is killed and, by ``Restart=on-failure``, started again.
    """
    _check_path(root, "the project root")
    argv = daemon_argv(agentd_path, root, config, "%i", queue=queue)
    exec_start = " ".join([_exec_word(argv[0], first=True), *(_exec_word(a) for a in argv[1:-1]), "%i"])
    environment = {"PYTHONUNBUFFERED": "1", **_check_env(env or {})}
    lines = [
        f"# {systemd_unit_name(root)}: role daemons of {root}",
        f"# generated by agentd {__version__} (agentd service install); instance = role: "
        f"systemctl --user enable --now {systemd_instance(root, 'ROLE')}",
        "",
        "[Unit]",
        f"Description=agentd %i daemon ({_spec(str(root))})",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={WATCHDOG_SEC}",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"WorkingDirectory={_spec(str(root))}",
        *(f"Environment={_env_word(name, value)}" for name, value in environment.items()),
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_timeout(config.roles.values())}",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def systemd_web_unit_name(root: Path) -> str:
    """The project's dashboard unit, ``agentd-<slug>-web.service`` (a plain unit: one dashboard per project)."""
    return f"agentd-{project_slug(root)}-web.service"


def web_argv(
    agentd: AgentdCommand, root: Path, config: Config, *, host: str, port: int, read_only: bool = False
) -> list[str]:
    """The dashboard's argv: ``agentd --root ROOT [--config F] web --host H --port P --pid-file PID`` (the PID file
    ``agentd start --web`` uses, so ``agentd status`` and ``agentd stop --web`` see a service's dashboard too)."""
    argv = _project_argv(agentd, root, config)
    pid_file = config.state_dir / "run" / "web" / "server.pid"
    argv += ["web", "--host", host, "--port", str(port), "--pid-file", str(pid_file)]
    return argv + (["--read-only"] if read_only else [])


def systemd_web_unit(
    agentd_path: AgentdCommand,
    root: Path,
    config: Config,
    *,
    host: str,
    port: int,
    read_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> str:
    """The systemd user unit serving the project's dashboard (``agentd web``), restarted when it fails."""
    argv = web_argv(agentd_path, root, config, host=host, port=port, read_only=read_only)
    return _systemd_plain(
        root, systemd_web_unit_name(root), "agentd dashboard", "agentd service install --web", argv, env
    )


def _systemd_plain(
    root: Path, unit: str, description: str, how: str, argv: Sequence[str], env: Mapping[str, str] | None
) -> str:
    """A plain (not templated) systemd user unit running ``argv`` in the project, restarted when it fails."""
    _check_path(root, "the project root")
    exec_start = " ".join([_exec_word(argv[0], first=True), *(_exec_word(a) for a in argv[1:])])
    environment = {"PYTHONUNBUFFERED": "1", **_check_env(env or {})}
    lines = [
        f"# {unit}: the {description} of {root}",
        f"# generated by agentd {__version__} ({how}): systemctl --user enable --now {unit.removesuffix('.service')}",
        "",
        "[Unit]",
        f"Description={description} ({_spec(str(root))})",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        f"WorkingDirectory={_spec(str(root))}",
        *(f"Environment={_env_word(name, value)}" for name, value in environment.items()),
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=15",
        "",
        "[Install]",
        "WantedBy=default.target",
    ]
    return "\n".join(lines) + "\n"


def launchd_web_plist(
    agentd_path: AgentdCommand,
    root: Path,
    config: Config,
    *,
    host: str,
    port: int,
    read_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> str:
    """A launchd agent serving the project's dashboard (label ``dev.agentd.<slug>.web``)."""
    argv = web_argv(agentd_path, root, config, host=host, port=port, read_only=read_only)
    return _launchd_plain(root, config, "web", argv, env)


def _launchd_plain(root: Path, config: Config, name: str, argv: Sequence[str], env: Mapping[str, str] | None) -> str:
    """A launchd agent ``dev.agentd.<slug>.<name>`` running ``argv``, logging to ``.agentd/logs/<name>.log``."""
    logs = config.state_dir / "logs"
    job = {
        "Label": launchd_label(root, name),
        "ProgramArguments": list(argv),
        "WorkingDirectory": str(root),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1", **_check_env(env or {})},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": 15,
        "StandardOutPath": str(logs / f"{name}.log"),
        "StandardErrorPath": str(logs / f"{name}.log"),
    }
    text = plistlib.dumps(job, sort_keys=False).decode("utf-8")
    declaration, rest = text.split("\n", 1)
    comment = f"<!-- {launchd_file_name(root, name)}: generated by agentd {__version__} (agentd service install) -->"
    return f"{declaration}\n{comment}\n{rest}"


def systemd_automation_unit_name(root: Path) -> str:
    """The project's automation unit, ``agentd-<slug>-automation.service``."""
    return f"agentd-{project_slug(root)}-automation.service"


def automation_argv(agentd: AgentdCommand, root: Path, config: Config) -> list[str]:
    """``agentd --root ROOT [--config F] automation --pid-file PID`` (the PID file ``agentd start`` uses, so
    ``agentd status`` and ``agentd stop`` see a service's automation process too)."""
    argv = _project_argv(agentd, root, config)
    return [*argv, "automation", "--pid-file", str(config.state_dir / "run" / "automation" / "process.pid")]


def systemd_automation_unit(
    agentd_path: AgentdCommand, root: Path, config: Config, *, env: Mapping[str, str] | None = None
) -> str:
    """The systemd user unit running the project's schedules, rules and hooks (``agentd automation``)."""
    argv = automation_argv(agentd_path, root, config)
    return _systemd_plain(
        root, systemd_automation_unit_name(root), "agentd automation", "agentd service install", argv, env
    )


def launchd_automation_plist(
    agentd_path: AgentdCommand, root: Path, config: Config, *, env: Mapping[str, str] | None = None
) -> str:
    """A launchd agent running the project's automation (label ``dev.agentd.<slug>.automation``)."""
    return _launchd_plain(root, config, "automation", automation_argv(agentd_path, root, config), env)


def launchd_plist(
    agentd_path: AgentdCommand,
    root: Path,
    role: str,
    config: Config,
    *,
    queue: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """A launchd agent (``~/Library/LaunchAgents/<label>.plist``) running one role's daemon.

    The daemon logs to ``.agentd/logs/<role>.log`` itself (rotated, and what ``agentd logs ROLE`` reads);
    launchd's own stdout/stderr file catches only what comes before logging starts (a traceback, a bad config).
    """
    spec = config.role(role)
    logs = config.state_dir / "logs"
    argv = [*daemon_argv(agentd_path, root, config, role, queue=queue), "--log-file", str(logs / f"{role}.log")]
    catch_all = str(logs / f"{role}.launchd.log")
    job = {
        "Label": launchd_label(root, role),
        "ProgramArguments": argv,
        "WorkingDirectory": str(root),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1", **_check_env(env or {})},
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": stop_timeout([spec]),
        "StandardOutPath": catch_all,
        "StandardErrorPath": catch_all,
    }
    text = plistlib.dumps(job, sort_keys=False).decode("utf-8")
    declaration, rest = text.split("\n", 1)
    comment = f"<!-- {launchd_file_name(root, role)}: generated by agentd {__version__} (agentd service install) -->"
    return f"{declaration}\n{comment}\n{rest}"


def _command(agentd: AgentdCommand) -> list[str]:
    words = [os.fspath(agentd)] if isinstance(agentd, str | os.PathLike) else [str(word) for word in agentd]
    if not words or not Path(words[0]).is_absolute():
        raise ConfigError(None, f"the agentd command must start with an absolute path, not {words[:1] or 'nothing'}")
    _check_path(Path(words[0]), "the agentd path")
    return words


def _check_path(path: Path, what: str) -> Path:
    text = str(path)
    if not path.is_absolute():
        raise ConfigError(None, f"{what} must be an absolute path for a service unit, not {text!r}")
    if _CONTROL.search(text) or text != text.strip():
        raise ConfigError(None, f"{what} {text!r} holds control characters or edge spaces a unit file cannot carry")
    return path


def _check_env(env: Mapping[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ConfigError(None, f"{name!r} is not an environment variable name")
        if _CONTROL.search(value):
            raise ConfigError(None, f"${name} holds control characters a unit file cannot carry")
    return dict(env)


def _spec(text: str) -> str:
    """Escape systemd specifiers: ``%`` is ``%%``."""
    return text.replace("%", "%%")


def _quoted(text: str) -> str:
    """A double-quoted systemd word (C escapes for backslash and quote)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _env_word(name: str, value: str) -> str:
    """One Environment= assignment, quoted only when it must be."""
    assignment = f"{name}={value}"
    return _spec(assignment) if _BARE.fullmatch(assignment) else _quoted(_spec(assignment))


def _exec_word(word: str, *, first: bool = False) -> str:
    """One ExecStart= word: specifiers escaped, ``$`` doubled in arguments (not in the executable path), quoted
    when it holds anything systemd would split or unescape."""
    escaped = _spec(word) if first else _spec(word).replace("$", "$$")
    return escaped if _BARE.fullmatch(word) else _quoted(escaped)
