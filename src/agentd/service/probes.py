"""What ``agentd status`` looks at of the background service: the PID files of the daemons, the web server and the
automation process (:mod:`agentd.service.background` starts and stops them, and re-exports every name here).

A module of its own so that a look builds none of the classes and functions that starting and stopping need.
"""

from __future__ import annotations

import os

from agentd.config import Config
from agentd.store import open_store
from agentd.store.file.pidfile import Probe, pid_file, probe, role_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


AUTOMATION = "automation"  # the name the background automation process goes by in start/stop/status


WEB = "web"  # the name the background web server goes by in start/stop/status


def run_folder(config: Config) -> str:
    """:func:`run_dir` as a string (`agentd status` looks at the PID files without importing pathlib)."""
    return os.path.join(config.state_folder, "run")


def display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def web_log_path(config: Config) -> Path:
    return config.state_dir / "logs" / "web.log"


def web_probe(config: Config) -> Probe:
    """Is the background web server running, and where does it serve?"""
    return probe(os.path.join(run_folder(config), WEB, "server.pid"))  # (web_pid_path, as a string)


def automation_log_path(config: Config) -> Path:
    return config.state_dir / "logs" / "automation.log"


def automation_probe(config: Config) -> Probe:
    """Is this project's background automation process running?"""
    return probe(os.path.join(run_folder(config), AUTOMATION, "process.pid"))  # (automation_pid_path, as a string)


def automation_active_file(config: Config) -> str:
    """:func:`automation_active_path` as a string."""
    return os.path.join(run_folder(config), AUTOMATION, "active.pid")


def daemons(config: Config, roles: list[str] | None = None) -> list[Probe]:
    """The registered daemons (PID files) of the asked roles, instances included, as the project's store has them; a
    role without one is reported as not running."""
    asked = roles or list(config.roles)
    found: dict[str, list[Probe]] = {role: [] for role in asked}
    for seen in open_store(config).daemons():
        role = seen.info.role if seen.info else role_of(seen.path)[0]
        if role in found:
            found[role].append(seen)
    out = []
    for role in asked:
        probes = found[role]
        if not probes:
            probes = [Probe(pid_file(run_folder(config), role), False, None)]
        out.extend(probes)
    return out
