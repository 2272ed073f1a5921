"""`agentd service install|uninstall`: the generated systemd and launchd files, and what the commands touch."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.cli.service_units import agentd_command
from agentd.config import Config
from agentd.errors import ConfigError
from agentd.service import units
from tests.conftest import run_agentd
from tests.helpers.daemons import wait_for, write_config, write_queue

AGENTD = Path(sys.executable).parent / "agentd"  # the dev venv's console script: an existing executable
ROLES = {
    "planner": {"claims": "needs_plan", "working": "planning", "on_success": "ready"},
    "builder": {"claims": "ready", "working": "in_progress", "on_success": "awaiting_test", "grace": 40},
    "tester": {"claims": "awaiting_test", "working": "testing", "on_success": "done", "kill_after": 3},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project with three roles (builder has the longest grace) and an empty queue."""
    folder = tmp_path / "proj"
    folder.mkdir()
    roles = {name: {**spec, "command": ["sleep", "0.1"]} for name, spec in ROLES.items()}
    write_config(folder, roles, defaults={"grace": 2, "kill_after": 1})
    write_queue(folder, [])
    return folder


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, str]:
    """HOME and XDG_CONFIG_HOME in temporary folders, for the CLI as a real process."""
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    home.mkdir()
    xdg.mkdir()
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}


def load(root: Path) -> Config:
    return config_mod.load(root=root, environ={})


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def exec_words(value: str) -> list[str]:
    """ExecStart= as systemd reads it: quotes and C escapes, then %% -> % and, in arguments, $$ -> $."""
    words = [word.replace("%%", "%") for word in shlex.split(value)]
    return words[:1] + [word.replace("$$", "$") for word in words[1:]]


def files_under(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


# --- the systemd template -------------------------------------------------------------------------------------


def test_systemd_template_runs_this_agentd_in_the_project(root: Path) -> None:
    """ExecStart is the absolute agentd with --root and run --role %i; the project is the working directory."""
    config = load(root)
    unit = parse_unit(units.systemd_template(AGENTD, root, config))
    service = unit["Service"]
    assert exec_words(service["ExecStart"][0]) == [str(AGENTD), "--root", str(root), "run", "--role", "%i"]
    assert Path(exec_words(service["ExecStart"][0])[0]).is_absolute()
    assert service["WorkingDirectory"] == [str(root)]
    assert "%i" in unit["Unit"]["Description"][0]
    assert unit["Install"]["WantedBy"] == ["default.target"]


def test_systemd_template_restarts_on_failure_and_lets_the_daemon_drain(root: Path) -> None:
    """Restart=on-failure after 5 s; SIGTERM to the daemon only (KillMode=mixed); the stop timeout covers the
    largest grace + kill_after; reload is SIGHUP; Python output unbuffered."""
    config = load(root)
    service = parse_unit(units.systemd_template(AGENTD, root, config))["Service"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"] == ["5"]
    assert service["KillMode"] == ["mixed"]
    assert service["KillSignal"] == ["SIGTERM"]
    longest = max(role.grace + role.kill_after for role in config.roles.values())
    assert longest == 41  # builder: grace 40 + kill_after 1
    assert int(service["TimeoutStopSec"][0]) > longest
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "PYTHONUNBUFFERED=1" in service["Environment"]


def test_systemd_template_watches_the_daemon_beat(root: Path) -> None:
    """Type=notify with a watchdog: a daemon that stops beating (SIGSTOPped, wedged) is killed and restarted."""
    service = parse_unit(units.systemd_template(AGENTD, root, load(root)))["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) >= 10


def test_first_line_names_the_unit_file(root: Path) -> None:
    """The unit starts with a comment naming its file, agentd-<slug>@.service."""
    text = units.systemd_template(AGENTD, root, load(root))
    assert text.splitlines()[0].startswith(f"# {units.systemd_unit_name(root)}: ")


def test_unit_names_are_per_project(tmp_path: Path) -> None:
    """Two projects with one folder name get different units; the same folder always the same one."""
    one, two = tmp_path / "a" / "My App", tmp_path / "b" / "My App"
    assert units.project_slug(one) == units.project_slug(tmp_path / "a" / "My App")
    assert units.project_slug(one) != units.project_slug(two)
    assert units.project_slug(one).startswith("my-app-")
    assert units.systemd_unit_name(one) == f"agentd-{units.project_slug(one)}@.service"
    assert units.systemd_instance(one, "builder") == f"agentd-{units.project_slug(one)}@builder"
    assert units.launchd_label(one, "builder") == f"dev.agentd.{units.project_slug(one)}.builder"
    assert units.project_slug(Path("/")).startswith("project-")


def test_paths_with_spaces_percent_and_dollar_survive_systemd_quoting(tmp_path: Path) -> None:
    """A root like `my proj 100% $HOME` reads back exactly: quoted, %% for specifiers, $$ in arguments."""
    root = tmp_path / "my proj 100% $HOME"
    root.mkdir()
    write_config(root, {"builder": {**ROLES["builder"], "command": ["true"]}})
    agentd = tmp_path / "bin 50%" / "$x" / "agentd"
    config = load(root)
    unit = parse_unit(units.systemd_template(agentd, root, config))
    service = unit["Service"]
    assert exec_words(service["ExecStart"][0]) == [str(agentd), "--root", str(root), "run", "--role", "%i"]
    assert service["WorkingDirectory"] == [str(root).replace("%", "%%")]


def test_python_m_agentd_and_a_config_elsewhere(root: Path, tmp_path: Path) -> None:
    """The agentd command may be `python -m agentd`; a config file other than ROOT/agentd.toml is passed on."""
    other = tmp_path / "other.toml"
    shutil.copy(root / "agentd.toml", other)
    config = config_mod.load(root=root, config_path=other, environ={})
    argv = exec_words(
        parse_unit(units.systemd_template([sys.executable, "-m", "agentd"], root, config))["Service"]["ExecStart"][0]
    )
    assert argv == [sys.executable, "-m", "agentd", "--root", str(root), "--config", str(other), "run", "--role", "%i"]


@pytest.mark.parametrize("bad", ["relative/agentd", "/tmp/with\nnewline/agentd"])
def test_unusable_paths_are_refused(root: Path, bad: str) -> None:
    """A relative agentd path or one with a control character cannot go into a unit: ConfigError (exit 4)."""
    with pytest.raises(ConfigError):
        units.systemd_template(Path(bad), root, load(root))


# --- the launchd agents ---------------------------------------------------------------------------------------


def test_launchd_plist_parses_and_restarts_on_failure_only(root: Path) -> None:
    """Valid plist XML: label, argv, working directory, RunAtLoad, KeepAlive on failure, logs, exit timeout."""
    config = load(root)
    text = units.launchd_plist(AGENTD, root, "builder", config)
    job = plistlib.loads(text.encode())
    assert job["Label"] == units.launchd_label(root, "builder")
    assert job["ProgramArguments"] == [
        str(AGENTD), "--root", str(root), "run", "--role", "builder",
        "--log-file", str(root / ".agentd" / "logs" / "builder.log"),
    ]  # fmt: skip
    assert job["WorkingDirectory"] == str(root)
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False}
    assert job["StandardOutPath"] == job["StandardErrorPath"] == str(root / ".agentd/logs/builder.launchd.log")
    assert job["ExitTimeOut"] > config.role("builder").grace + config.role("builder").kill_after
    assert job["EnvironmentVariables"]["PYTHONUNBUFFERED"] == "1"
    assert units.launchd_file_name(root, "builder") in text.splitlines()[1]


# --- systemd-analyze ------------------------------------------------------------------------------------------


def analyze(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --user` (with a private runtime dir), else the system manager's verify."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    user = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)], capture_output=True, text=True, env=env, timeout=60
    )
    if user.returncode == 0 or "Failed to initialize manager" not in user.stderr:
        return user
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("folder", ["plain", "with space 100% $x"])
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, folder: str) -> None:
    """The template and an instance of it verify cleanly, also when every path needs quoting."""
    root = tmp_path / folder
    root.mkdir()
    write_config(root, ROLES)
    agentd = root / "bin" / "agentd"  # an existing executable at the awkward path
    agentd.parent.mkdir()
    agentd.write_text("#!/bin/sh\nexit 0\n")
    agentd.chmod(0o755)
    text = units.systemd_template(agentd, root, load(root), env={"AGENT_HOME": str(root), "PATH": "/usr/bin:/bin"})
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    name = units.systemd_unit_name(root)
    for file_name in (name, name.replace("@.", "@builder.")):
        path = units_dir / file_name
        path.write_text(text)
        result = analyze(path, tmp_path)
        problems = [line for line in result.stderr.splitlines() if file_name.split("@")[0] in line]
        assert result.returncode == 0 and not problems, result.stderr


# --- the CLI --------------------------------------------------------------------------------------------------


def test_print_writes_the_unit_to_stdout_and_touches_nothing(root: Path, homes: dict[str, str]) -> None:
    """--print: the unit on stdout (its file name on the first line); no file anywhere changes."""
    watched = [root, Path(homes["HOME"]), Path(homes["XDG_CONFIG_HOME"])]
    before = files_under(*watched)
    result = run_agentd("service", "install", "--print", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"# {units.systemd_unit_name(root)}")
    assert "KillMode=mixed" in result.stdout
    exec_start = exec_words(parse_unit(result.stdout)["Service"]["ExecStart"][0])
    assert Path(exec_start[0]).is_absolute() and os.access(exec_start[0], os.X_OK)
    assert files_under(*watched) == before
    assert not (root / ".agentd").exists()


def test_print_launchd_writes_one_plist_per_role(root: Path, homes: dict[str, str]) -> None:
    """--print --launchd: a plist per asked role on stdout, each valid; nothing written."""
    result = run_agentd("service", "install", "--print", "--launchd", "builder", "tester", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    docs = ['<?xml version="1.0"' + part for part in result.stdout.split('<?xml version="1.0"')[1:]]
    labels = [plistlib.loads(doc.encode())["Label"] for doc in docs]
    assert labels == [units.launchd_label(root, "builder"), units.launchd_label(root, "tester")]
    assert files_under(Path(homes["HOME"])) == {}


def test_install_and_uninstall_round_trip(root: Path, homes: dict[str, str]) -> None:
    """install writes the unit into $XDG_CONFIG_HOME/systemd/user and prints the enable commands; uninstall
    removes it and prints the stop command; a second uninstall has nothing to do."""
    unit = Path(homes["XDG_CONFIG_HOME"]) / "systemd" / "user" / units.systemd_unit_name(root)
    printed = run_agentd("service", "install", "--print", cwd=root, env=homes).stdout
    result = run_agentd("service", "install", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    assert unit.read_text() == printed
    assert f"wrote {unit}" in result.stdout
    assert "systemctl --user daemon-reload" in result.stdout
    for role in ROLES:
        assert f"systemctl --user enable --now {units.systemd_instance(root, role)}\n" in result.stdout
    assert "loginctl enable-linger $USER" in result.stdout
    again = run_agentd("service", "install", cwd=root, env=homes)
    assert f"unchanged {unit}" in again.stdout

    removed = run_agentd("service", "uninstall", cwd=root, env=homes)
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists()
    assert f"systemctl --user stop '{units.systemd_instance(root, '*')}'" in removed.stdout
    assert f"removed {unit}" in removed.stdout
    nothing = run_agentd("service", "uninstall", cwd=root, env=homes)
    assert nothing.returncode == 0 and "nothing to remove" in nothing.stdout


def test_uninstall_refuses_while_an_instance_is_enabled(root: Path, homes: dict[str, str]) -> None:
    """An enabled instance (its default.target.wants link) keeps the template: exit 7 and the disable command."""
    folder = Path(homes["XDG_CONFIG_HOME"]) / "systemd" / "user"
    assert run_agentd("service", "install", "builder", cwd=root, env=homes).returncode == 0
    name = units.systemd_unit_name(root)
    wants = folder / "default.target.wants"
    wants.mkdir()
    (wants / name.replace("@.", "@builder.")).symlink_to(folder / name)  # what `systemctl --user enable` makes
    result = run_agentd("service", "uninstall", cwd=root, env=homes)
    assert result.returncode == 7
    assert f"systemctl --user disable --now {units.systemd_instance(root, 'builder')}" in result.stdout
    assert result.stderr.startswith("agentd: ") and len(result.stderr.splitlines()) == 1
    assert (folder / name).is_file()


def test_install_defaults_to_home_config_without_xdg(root: Path, homes: dict[str, str]) -> None:
    """Without XDG_CONFIG_HOME the unit goes to ~/.config/systemd/user."""
    env = {"HOME": homes["HOME"], "XDG_CONFIG_HOME": ""}
    assert run_agentd("service", "install", cwd=root, env=env).returncode == 0
    assert (Path(homes["HOME"]) / ".config" / "systemd" / "user" / units.systemd_unit_name(root)).is_file()


def test_launchd_install_and_uninstall_round_trip(root: Path, homes: dict[str, str]) -> None:
    """--launchd: a plist per role in ~/Library/LaunchAgents, the log folder made, bootstrap commands printed;
    uninstall removes them all, also an agent of a role since removed from agentd.toml."""
    agents = Path(homes["HOME"]) / "Library" / "LaunchAgents"
    result = run_agentd("service", "install", "--launchd", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    plists = sorted(agents.glob("*.plist"))
    assert [p.name for p in plists] == sorted(units.launchd_file_name(root, role) for role in ROLES)
    for path in plists:
        assert plistlib.loads(path.read_bytes())["RunAtLoad"] is True
        assert f"launchctl bootstrap gui/$(id -u) {path}" in result.stdout
    assert (root / ".agentd" / "logs").is_dir()
    gone_role = agents / units.launchd_file_name(root, "oldrole")
    gone_role.write_bytes(plists[0].read_bytes())
    removed = run_agentd("service", "uninstall", "--launchd", cwd=root, env=homes)
    assert removed.returncode == 0, removed.stderr
    assert list(agents.iterdir()) == []
    assert f"launchctl bootout gui/$(id -u)/{units.launchd_label(root, 'oldrole')}" in removed.stdout


def test_unknown_role_writes_nothing(root: Path, homes: dict[str, str]) -> None:
    """An unknown role: exit 6, one line, no file written."""
    result = run_agentd("service", "install", "nosuchrole", cwd=root, env=homes)
    assert result.returncode == 6
    assert "nosuchrole" in result.stderr
    assert files_under(Path(homes["HOME"]), Path(homes["XDG_CONFIG_HOME"])) == {}


def test_roles_without_a_command_are_refused(tmp_path: Path, homes: dict[str, str]) -> None:
    """A role without a command would exit 4 at every restart: install refuses (exit 4); --print only warns."""
    root = tmp_path / "bare"
    root.mkdir()
    write_config(root, {"builder": ROLES["builder"]})
    result = run_agentd("service", "install", cwd=root, env=homes)
    assert result.returncode == 4
    assert "role 'builder' has no command" in result.stderr
    assert files_under(Path(homes["HOME"]), Path(homes["XDG_CONFIG_HOME"])) == {}
    printed = run_agentd("service", "install", "--print", cwd=root, env=homes)
    assert printed.returncode == 0 and "warning: " in printed.stderr and "[Service]" in printed.stdout


def test_env_copies_a_variable_and_refuses_an_unset_one(root: Path, homes: dict[str, str]) -> None:
    """--env NAME puts the variable's current value into the unit; an unset one is a usage error (exit 2)."""
    env = {**homes, "AGENTD_TEST_PATH": "/opt/agent bin:/usr/bin"}
    result = run_agentd("service", "install", "--print", "--env", "AGENTD_TEST_PATH", cwd=root, env=env)
    assert '"AGENTD_TEST_PATH=/opt/agent bin:/usr/bin"' in parse_unit(result.stdout)["Service"]["Environment"]
    missing = run_agentd("service", "install", "--print", "--env", "AGENTD_SURELY_UNSET", cwd=root, env=homes)
    assert missing.returncode == 2


@pytest.mark.parametrize("command", [["service"], ["service", "install"], ["service", "uninstall"]])
def test_help_has_examples(root: Path, command: list[str]) -> None:
    """Every service command's --help has an Examples: section."""
    result = run_agentd(*command, "--help", cwd=root)
    assert result.returncode == 0 and "Examples:\n" in result.stdout


# --- the command the units run, as a real process ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("manager", ["systemd", "launchd"])
def test_the_units_command_runs_the_daemon_and_sigterm_stops_it_cleanly(root: Path, manager: str) -> None:
    """The argv a unit runs starts the role's daemon (seen by `agentd status`); SIGTERM ends it with exit 0."""
    config = load(root)
    command = agentd_command()
    assert Path(command[0]).is_absolute()
    if manager == "systemd":
        unit = parse_unit(units.systemd_template(command, root, config))
        argv = [word.replace("%i", "builder") for word in exec_words(unit["Service"]["ExecStart"][0])]
        cwd = Path(unit["Service"]["WorkingDirectory"][0])
    else:
        job = plistlib.loads(units.launchd_plist(command, root, "builder", config).encode())
        argv, cwd = job["ProgramArguments"], Path(job["WorkingDirectory"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    with open(root / "daemon.err", "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: run_agentd("status", "builder", cwd=root).returncode == 0, 30, "the daemon to run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (root / "daemon.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert run_agentd("status", "builder", cwd=root).returncode == 3
    if manager == "launchd":
        assert "daemon started" in (root / ".agentd" / "logs" / "builder.log").read_text()


# --- the dashboard's unit ---------------------------------------------------------------------------------------


def test_install_web_writes_a_dashboard_unit_and_uninstall_removes_it(root: Path, homes: dict[str, str]) -> None:
    """install --web adds agentd-<slug>-web.service beside the template, with its enable command; uninstall removes
    both; --launchd --web writes a dev.agentd.<slug>.web plist."""
    folder = Path(homes["XDG_CONFIG_HOME"]) / "systemd" / "user"
    web = folder / units.systemd_web_unit_name(root)
    result = run_agentd("service", "install", "--web", "--web-port", "9111", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    assert f"wrote {web}" in result.stdout
    assert f"systemctl --user enable --now {web.name.removesuffix('.service')}\n" in result.stdout
    argv = exec_words(parse_unit(web.read_text())["Service"]["ExecStart"][0])
    assert argv[argv.index("web") :][:5] == ["web", "--host", "127.0.0.1", "--port", "9111"]
    removed = run_agentd("service", "uninstall", cwd=root, env=homes)
    assert removed.returncode == 0, removed.stderr
    assert not web.exists() and f"removed {web}" in removed.stdout
    plists = run_agentd("service", "install", "--launchd", "--web", "--print", cwd=root, env=homes).stdout
    assert f"<string>{units.launchd_label(root, 'web')}</string>" in plists


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_web_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The dashboard's unit verifies cleanly, also at a path that needs quoting."""
    root = tmp_path / "with space 100% $x"
    root.mkdir()
    write_config(root, ROLES)
    agentd = root / "bin" / "agentd"
    agentd.parent.mkdir()
    agentd.write_text("#!/bin/sh\nexit 0\n")
    agentd.chmod(0o755)
    path = tmp_path / units.systemd_web_unit_name(root)
    path.write_text(units.systemd_web_unit(agentd, root, load(root), host="127.0.0.1", port=8765))
    result = analyze(path, tmp_path)
    problems = [line for line in result.stderr.splitlines() if path.name in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("manager", ["systemd", "launchd"])
def test_the_web_units_command_serves_shows_in_status_and_stops_on_sigterm(root: Path, manager: str) -> None:
    """The argv the dashboard's unit runs serves the page, `agentd status` shows it, SIGTERM ends it with exit 0
    and its PID file goes."""
    import json
    import urllib.request

    config = load(root)
    command = agentd_command()
    if manager == "systemd":
        unit = parse_unit(units.systemd_web_unit(command, root, config, host="127.0.0.1", port=0))
        argv = exec_words(unit["Service"]["ExecStart"][0])
    else:
        argv = plistlib.loads(units.launchd_web_plist(command, root, config, host="127.0.0.1", port=0).encode())[
            "ProgramArguments"
        ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    with open(root / "web.err", "wb") as err:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=err, stderr=err)
    try:

        def served() -> str | None:
            web = json.loads(run_agentd("status", "--json", cwd=root).stdout)["web"]
            return web["url"] if web else None

        url = wait_for(served, 60, "the dashboard to show in status")
        with urllib.request.urlopen(url + "/api/status", timeout=10) as response:
            assert response.status == 200
        assert "token=" not in (root / "web.err").read_text().replace("token=<the token in", "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (root / "web.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert not (root / ".agentd" / "run" / "web" / "server.pid").exists()


# --- the automation process's unit ------------------------------------------------------------------------------


def test_install_adds_an_automation_unit_when_automation_is_configured(root: Path, homes: dict[str, str]) -> None:
    """With [[hooks]] in agentd.toml, install writes agentd-<slug>-automation.service running `agentd automation
    --pid-file ...` and prints its enable command; uninstall removes it; launchd gets a .automation plist; a
    project without automation gets no such unit."""
    folder = Path(homes["XDG_CONFIG_HOME"]) / "systemd" / "user"
    unit = folder / units.systemd_automation_unit_name(root)
    run_agentd("service", "install", cwd=root, env=homes)
    assert not unit.exists()
    with open(root / "agentd.toml", "a") as handle:
        handle.write('\n[[hooks]]\non = ["finished:failure"]\ncommand = ["true"]\n')
    result = run_agentd("service", "install", cwd=root, env=homes)
    assert result.returncode == 0, result.stderr
    assert f"systemctl --user enable --now {unit.name.removesuffix('.service')}\n" in result.stdout
    argv = exec_words(parse_unit(unit.read_text())["Service"]["ExecStart"][0])
    assert argv[argv.index("automation") :] == [
        "automation",
        "--pid-file",
        str(root / ".agentd" / "run" / "automation" / "process.pid"),
    ]
    removed = run_agentd("service", "uninstall", cwd=root, env=homes)
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists() and f"removed {unit}" in removed.stdout
    plists = run_agentd("service", "install", "--launchd", "--print", cwd=root, env=homes).stdout
    assert f"<string>{units.launchd_label(root, 'automation')}</string>" in plists


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_automation_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The automation unit verifies cleanly, also at a path that needs quoting."""
    root = tmp_path / "with space 100% $x"
    root.mkdir()
    write_config(root, ROLES)
    agentd = root / "bin" / "agentd"
    agentd.parent.mkdir()
    agentd.write_text("#!/bin/sh\nexit 0\n")
    agentd.chmod(0o755)
    path = tmp_path / units.systemd_automation_unit_name(root)
    path.write_text(units.systemd_automation_unit(agentd, root, load(root)))
    result = analyze(path, tmp_path)
    problems = [line for line in result.stderr.splitlines() if path.name in line]
    assert result.returncode == 0 and not problems, result.stderr
