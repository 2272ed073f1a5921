"""The light commands import only what they use: start-up is what an agent pays per `queue set-status`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import small_queue

# Modules a light command has no use for; each costs milliseconds to tens of milliseconds on every call.
HEAVY = (
    "rich",
    "watchdog",
    "jinja2",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "cronsim",
    "pathspec",
    "agentd.run.daemon",
    "agentd.run.runner",
    "agentd.web",
    # The queue reader: a valid queue is judged by agentd.schemacheck (stdlib); jsonschema is loaded only for the
    # message of what it refuses, jsonschema-rs (10 MB resident; decimal, email) only where it cannot judge; tenacity
    # once a read may have caught a write midway; secrets (hmac, hashlib, random) not for a temporary file's name.
    "tenacity",
    "jsonschema",
    "jsonschema_rs",
    "referencing",
    "decimal",
    "email",
    "secrets",
    # Installed-package metadata (email, zipfile, csv): entry points are looked up only when one is asked for.
    "importlib.metadata",
    "pkg_resources",
)
READER = ("tenacity", "jsonschema", "referencing")
# What a queue command (not `status`) has no use for: processes and the background service.
QUEUE_ONLY = ("subprocess", "agentd.service", "agentd.report")
# What the click-free path of `queue add`, `queue set-status` and `queue list` (agentd.cli.fast) has no use for: click,
# the click commands, the scheduler, the lease folder, the journal, the PID files, the store protocols (dataclasses
# and Protocol classes built at import: milliseconds each), and modules only a rare case needs.
CLICK = ("click", "agentd.cli.root", "agentd.cli.output", "agentd.cli.queue_cmds", "agentd.cli.background")
FAST_UNUSED = (
    *CLICK,
    "agentd.core.scheduler",
    "agentd.store.base",
    "agentd.store.file.leases",
    "agentd.store.file.journal",
    "agentd.store.file.pidfile",
    "agentd.hostinfo",
    "typing",  # (a type checker's names only: written in annotations, imported under TYPE_CHECKING)
    "tomllib",  # (agentd.toml as parsed comes from agentd.configcache once a call has kept it)
    "logging",  # (agentd.lazylog: imported when something logs, which these commands do not in the usual case)
    "zoneinfo",  # (only for a time zone agentd.toml names)
    "difflib",  # (only to suggest a status for an unknown one)
    # The task model, workflow, config and queue file are agentd.core.record classes: dataclasses (and with it inspect,
    # ast, dis, tokenize) is not imported, nor a class's methods compiled at import.
    "dataclasses",
    "inspect",
    "ast",
    "dis",
    "tokenize",
    # Imported where used: threading (the side lock takes _thread's RLock), signal (a crash point firing), copy (a
    # queue read without pieces).
    "threading",
    "signal",
    "copy",
    # Paths are strings on this path (agentd.config.Config's *_file and *_folder, the queue file's, the side lock's and
    # the archive's names), a Path made only when asked for: pathlib (with fnmatch, urllib.parse and ipaddress, 0.6
    # times the interpreter's own start) is not imported.
    "pathlib",
    "urllib",
    "ipaddress",
    "fnmatch",
)
# What `status` (agentd.report.status) has no use for: the scheduler, the store protocols, the lease folder, the
# journal, the usage tally and the PID files are agentd.core.record classes or plain ones (no dataclass methods compiled
# with exec at import), their protocols plain classes at run time (typing under TYPE_CHECKING only), and signal and
# select are imported where a daemon is stopped or started. The journal's and the lease folder's locks are _thread's
# (the same lock, without threading's import). The lease folder, the PID files, the journal, the project state and the
# host's facts are read through string paths (their Path attributes made when asked for): no pathlib (with fnmatch,
# urllib.parse and ipaddress).
STATUS_UNUSED = (
    *("dataclasses", "inspect", "ast", "dis", "tokenize", "typing", "signal", "select", "threading"),
    *("pathlib", "urllib", "ipaddress", "fnmatch"),
    # What only a change needs: the transitions and how an attempt ended (the scheduler imports agentd.core.outcome
    # when one of its names is first asked for), the actions (the pauses are read with agentd.store.base's
    # project_state), and starting or stopping the background service (a look needs agentd.service.probes).
    *("agentd.core.transitions", "agentd.core.outcome", "agentd.actions", "agentd.service.background"),
)
FAST = (
    ("queue", "list"),
    ("queue", "list", "--json"),
    ("queue", "add", "N1", "--title", "New"),
    ("queue", "set-status", "B1", "blocked", "--force"),
)

LIGHT = (
    ("--version",),
    ("queue", "list"),
    ("queue", "list", "--json"),
    ("queue", "add", "N1", "--title", "New"),
    ("queue", "set-status", "B1", "blocked", "--force"),
    ("status",),
)


def imported(argv: tuple[str, ...], cwd: Path) -> set[str]:
    """The modules a real `python -X importtime -m agentd ARGV` imported (checking that it succeeded)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentd", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    others = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode in (0, 3), (argv, others)  # 3: `status` with no daemon running
    return {re.split(r"\|\s*", line)[-1].strip() for line in lines}


def heavy(modules: set[str], names: tuple[str, ...] = HEAVY) -> list[str]:
    """The modules among ``modules`` that are one of ``names`` or inside one."""
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in names))


@pytest.mark.slow
@pytest.mark.parametrize("argv", LIGHT, ids=" ".join)
def test_light_command_imports_no_heavy_module(project: object, argv: tuple[str, ...]) -> None:
    """A light command on a 20-task queue never imports rich, watchdog, tenacity, jsonschema, the daemon or the web
    app; a queue command not even subprocess or the background service."""
    doc = small_queue()
    for index in range(20 - len(doc["tasks"])):
        doc["tasks"].append({"id": f"X{index}", "title": "filler", "type": "Build", "status": "ready"})
    root = project(doc)  # type: ignore[operator]
    modules = imported(argv, root)
    assert "agentd" in modules  # the probe sees our own imports
    assert heavy(modules, HEAVY + (QUEUE_ONLY if argv[0] == "queue" else ())) == []


@pytest.mark.slow
@pytest.mark.parametrize("argv", FAST, ids=" ".join)
def test_hot_queue_command_imports_neither_click_nor_the_daemon_side(project: object, argv: tuple[str, ...]) -> None:
    """`queue add`, `queue set-status` and `queue list` (output not a terminal) take the click-free path and import
    neither click nor the scheduler, the lease folder, the journal, the PID files, the store protocols, typing, logging,
    pathlib or (agentd.toml cached by an earlier call) tomllib; `queue list` not the queue file's writer either."""
    doc = small_queue()
    root = project(doc)  # type: ignore[operator]
    imported(("queue", "list"), root)  # (the first call parses agentd.toml and keeps it)
    modules = imported(argv, root)
    assert "agentd.cli.fast" in modules  # the probe sees our own imports
    reads = ("agentd.store.file.jsonedit",) if argv[1] == "list" else ()  # (the format-preserving writer)
    assert heavy(modules, HEAVY + QUEUE_ONLY + FAST_UNUSED + reads) == []


@pytest.mark.slow
@pytest.mark.parametrize("argv", [("status",), ("status", "--json")], ids=" ".join)
def test_status_imports_no_click(project: object, argv: tuple[str, ...]) -> None:
    """`status` (output not a terminal) takes the click-free path: neither click nor the click commands are imported,
    nor subprocess (only starting a daemon needs it), nor logging (nothing logs), nor tomllib (agentd.toml cached), nor
    zoneinfo (the day of a UTC project) or getpass (nobody's name is asked), nor the queue file's writer, nor what
    the scheduler's and the store protocols' classes once cost (dataclasses, typing), nor signal or select."""
    root = project(small_queue())  # type: ignore[operator]
    imported(("queue", "list"), root)  # (the first call parses agentd.toml and keeps it)
    modules = imported(argv, root)
    assert "agentd.report.status" in modules  # the probe sees the dashboard's imports
    unused = ("subprocess", "logging", "tomllib", "zoneinfo", "getpass", "agentd.store.file.jsonedit", *STATUS_UNUSED)
    assert heavy(modules, (*HEAVY, *CLICK, *unused)) == []


def test_a_lazy_logger_sets_up_logging_as_the_click_path_does() -> None:
    """The click-free path imports logging only when something logs; then the message reads as under click (time,
    level, logger name), the setup done once before the first record."""
    probe = (
        "from agentd import lazylog; from agentd.cli import fast; lazylog.on_first_use(fast._log_setup); "
        "log = lazylog.get_logger('agentd.probe'); log.info('unseen'); log.warning('seen %s', 1); "
        "lazylog.get_logger('agentd.other').error('again')"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(f"{stamp} WARNING agentd.probe: seen 1\n{stamp} ERROR agentd.other: again\n", done.stderr)


def test_version_needs_no_click(tmp_path: Path) -> None:
    """`agentd --version` answers before importing click, the config, the queue reader or jsonschema."""
    modules = imported(("--version",), tmp_path)
    assert heavy(modules, ("click", "agentd.config", "agentd.store", *READER, *HEAVY)) == []


def test_loading_a_schema_and_naming_the_host_import_no_more_than_they_need() -> None:
    """Reading a schema file and the host name import neither jsonschema, nor importlib.resources (tempfile, shutil,
    zipfile), nor socket: milliseconds on every CLI call that validates nothing unusual."""
    probe = (
        "import sys; from agentd import hostinfo, schema; schema.load('task'); hostinfo.hostname(); "
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert heavy(modules, ("jsonschema", "importlib.resources", "tempfile", "socket")) == []


@pytest.mark.slow
def test_a_daemon_running_a_valid_task_loads_no_validator_library(project: object) -> None:
    """A builder pass that claims, runs and completes a valid task judges the queue, its lease and the outcome with the
    stdlib checker: jsonschema and jsonschema-rs (10 MB of an idle daemon's memory) stay unloaded, and so does
    importlib.metadata (the output adapters' entry points, looked up only for a role that names one)."""
    root = project(small_queue(), '[roles.builder]\ncommand = ["true"]\n')  # type: ignore[operator]
    modules = imported(("--role", "builder", "--once"), root)
    assert "agentd.run.daemon" in modules
    unused = ("jsonschema", "jsonschema_rs", "referencing", "decimal", "email", "tenacity", "importlib.metadata")
    assert heavy(modules, unused) == []
    assert '"status": "awaiting_test"' in (root / "SPRINT_QUEUE.json").read_text(encoding="utf-8")


# What a role's daemon started in a plain form (agentd.cli.fast) has no use for: click and the click commands; and
# without worktrees or a log file, the worktrees' manager (git; its shutil, bz2 and lzma) and logging.handlers
# (pickle); nor watchdog on Linux (its change watch is inotify through agentd.store.file.inotify).
DAEMON_UNUSED = (
    *(*CLICK, "agentd.cli.daemon_cmds", "agentd.cli.options"),
    *("agentd.workspaces.manager", "agentd.workspaces.git", "logging.handlers", "pickle"),
    "tomllib",  # (agentd.toml as parsed comes from agentd.configcache once a call has kept it)
    "watchdog",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv", [("--role", "builder", "--once"), ("-v", "run", "--role", "builder", "--drain")], ids=" ".join
)
def test_a_daemon_imports_no_click(project: object, argv: tuple[str, ...]) -> None:
    """`agentd --role ROLE` and `agentd run --role ROLE` in their plain forms start the daemon without click (about a
    tenth of a daemon's start-up instructions), without the worktrees' manager or the file log's handlers where
    neither is used, and without tomllib once agentd.toml is cached, and still run the task; the change watch it sets
    up while the task runs (once it has waited WATCH_AFTER for it) imports no watchdog."""
    root = project(small_queue(), '[roles.builder]\ncommand = ["sleep", "0.5"]\n')  # type: ignore[operator]
    imported(("queue", "list"), root)  # (the first call parses agentd.toml and keeps it)
    modules = imported(argv, root)
    assert "agentd.cli.foreground" in modules  # the probe sees the daemon's start
    assert "agentd.store.file.watch" in modules  # (and its change watch's set-up, while the task runs)
    assert heavy(modules, DAEMON_UNUSED) == []
    assert '"status": "awaiting_test"' in (root / "SPRINT_QUEUE.json").read_text(encoding="utf-8")


# What a role's daemon has no use for until its first pass is over (an empty --drain ends there): dataclasses (with
# inspect, ast and dis; every class's methods compiled with exec at import): the daemon's value classes are
# agentd.core.record classes; typing (a type checker's names, imported under TYPE_CHECKING; the zygote's Handed a
# collections.namedtuple, recovery's LeaseLook a plain class at run time). (tomllib imports typing, when agentd.toml
# is not cached; watchdog, a daemon's change watch where inotify is missing, imports both.) Nor socket (its enums: 1-2
# ms): the zygote's socket pair is _socket's, and only a daemon told of a NOTIFY_SOCKET (systemd) imports it.
DAEMON_START_UNUSED = ("dataclasses", "inspect", "ast", "dis", "typing", "watchdog", "socket")


@pytest.mark.slow
def test_a_daemon_imports_no_dataclasses_before_its_first_pass_is_over(project: object) -> None:
    """An empty drain (it ends after its first pass) imports neither dataclasses nor what it brings (inspect, ast,
    dis), nor typing, nor watchdog, nor socket: the daemon's, dispatcher's, runner's and recovery's value classes are
    agentd.core.record classes, and typing's names are imported for the type checker only."""
    root = project({"tasks": []}, '[roles.builder]\ncommand = ["true"]\n')  # type: ignore[operator]
    imported(("queue", "list"), root)  # (the first call parses agentd.toml and keeps it)
    modules = imported(("--role", "builder", "--drain"), root)
    assert "agentd.run.daemon" in modules  # the probe sees the daemon's imports
    assert heavy(modules, DAEMON_START_UNUSED) == []


@pytest.mark.slow
def test_a_big_queue_is_judged_by_jsonschema_rs(project: object) -> None:
    """Reading a 2,000-task queue switches to jsonschema-rs (about 7 times faster per task than the stdlib checker)
    once the stdlib checker has judged a few hundred tasks."""
    doc = {"tasks": [{"id": f"T{n}", "title": "filler", "status": "done"} for n in range(2000)]}
    modules = imported(("queue", "validate"), project(doc))  # type: ignore[operator]
    assert "jsonschema_rs" in modules
    assert heavy(modules, ("jsonschema", "referencing")) == []


# Run as agentd's entry point, in a process of its own: what the garbage collector is doing when the command's own code
# runs (a daemon's first pass; click's group, for a command the hot path hands over).
GC_PROBE = """
import gc, sys
import agentd.cli.root
from agentd.run import daemon

def said(where):
    sys.stderr.write(f"GC {where} enabled={gc.isenabled()} frozen={gc.get_freeze_count()}\\n")

real_run, real_click = daemon.Daemon.run, agentd.cli.root.main

def run(self, *args, **kwargs):
    said("daemon")
    return real_run(self, *args, **kwargs)

def click_main(*args, **kwargs):
    said("click")
    return real_click(*args, **kwargs)

daemon.Daemon.run, agentd.cli.root.main = run, click_main
gc.enable()  # (as a plain interpreter starts: the entry point is what turns it off)
sys.argv = ["agentd", *sys.argv[1:]]
from agentd.__main__ import main
main()
"""


@pytest.mark.parametrize(
    ("argv", "where", "frozen"),
    [(("--role", "builder", "--drain"), "daemon", True), (("queue", "list", "--help"), "click", False)],
    ids=["daemon", "click"],
)
def test_the_collector_is_off_while_the_modules_load_and_on_once_the_command_runs(
    project: object, argv: tuple[str, ...], where: str, frozen: bool
) -> None:
    """agentd's entry point turns the garbage collector off while a command's modules load (every collection walked
    them again: 3-5 ms of a daemon's start-up); a daemon turns it back on before its first pass, with what its start-up
    made frozen out of the collections' way, and a command handed to click before click loads (its commands may run for
    long: the web app, `status --watch`)."""
    root = project(small_queue(), '[roles.builder]\ncommand = ["true"]\n')  # type: ignore[operator]
    env = {k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}
    done = subprocess.run(
        [sys.executable, "-c", GC_PROBE, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("GC ")]
    assert len(said) == 1 and said[0].startswith(f"GC {where} enabled=True "), done.stderr
    assert (int(said[0].rsplit("frozen=", 1)[1]) > 0) is frozen, said


ZYGOTE_PROBE = """
import sys
from agentd.run import zygote

real = zygote.Zygote._start

def start(self):
    sys.stderr.write(f"ZYGOTE daemon-loaded={'agentd.run.daemon' in sys.modules}\\n")
    return real(self)

zygote.Zygote._start = start
sys.argv = ["agentd", *sys.argv[1:]]
from agentd.__main__ import main
main()
"""


def _zygotes_marked(mark: str) -> list[int]:
    """The processes whose environment holds ``mark`` (a zygote inherits its daemon's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if mark.encode() in environ and b"agentd-zygote" in cmdline:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_daemon_boots_its_zygote_before_loading_its_modules_and_one_that_cannot_start_leaves_it(
    project: object,
) -> None:
    """The plain `agentd --role ROLE` boots its supervisor zygote before the daemon's modules load (the zygote's
    interpreter starts on the other core meanwhile); a daemon that then cannot start (an unknown role) exits with its
    error, and the zygote it booted goes with it."""
    from tests.helpers.daemons import wait_for

    root = project(small_queue(), '[roles.builder]\ncommand = ["true"]\n')  # type: ignore[operator]
    mark = f"zygote-probe-{os.getpid()}-{time.monotonic_ns()}"
    env = {**{k: v for k, v in os.environ.items() if k != "AGENTD_ROOT"}, "AGENTD_TEST_MARK": mark}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120)

    drained = run("-c", ZYGOTE_PROBE, "--role", "builder", "--drain")
    assert drained.returncode == 0, drained.stderr
    assert "ZYGOTE daemon-loaded=False" in drained.stderr.splitlines(), drained.stderr
    refused = run("-m", "agentd", "--role", "nosuchrole", "--drain")
    assert refused.returncode != 0 and "nosuchrole" in refused.stderr, refused.stderr
    wait_for(lambda: not _zygotes_marked(mark), 30, "the zygotes of both runs to exit")
