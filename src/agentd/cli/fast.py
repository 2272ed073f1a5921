"""The hot commands without click: `queue add`, `queue set-status`, `queue list` and `status`, as agents and scripts
call them, and a role's daemon (`agentd --role ROLE ...`, `agentd run --role ROLE ...`).

Every call of the CLI pays its imports before it does anything, and agents call these from inside their tasks (one
`queue set-status --token` per task). Importing click costs about as much as the command's own work, so :func:`run`
parses these commands' documented options itself and calls the same library code the click commands call
(:mod:`agentd.cli.app`, :mod:`agentd.core.edits`, the store, :mod:`agentd.report.status`,
:mod:`agentd.cli.foreground`). It answers only what it
parses exactly as click would; for anything else (``--help``, an unknown option, a value click would refuse or word, a
terminal's rich output, ``status --watch``, an output stream that is not UTF-8) it returns None and
:func:`agentd.cli.root.main` runs, so every message, exit code and output stays click's own. tests/cli/test_fast.py
runs the same argv through both paths.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
from collections.abc import Callable, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from agentd.cli.app import App

# A command's options: name -> (destination, kind); kind "value" (the last one given wins, as in click), "many"
# (repeatable), "flag", "count" (a flag counted, as click's count=True), "int" (a value converted by int(), as click's
# INT type does) or "float" (by float(), as click's FLOAT).
Spec = dict[str, tuple[str, str]]

GLOBAL: Spec = {
    "--root": ("root", "value"),
    "--queue": ("queue", "value"),
    "--config": ("config_path", "value"),
    "--store": ("store_kind", "value"),
}
ADD: Spec = {
    "--title": ("title", "value"),
    "--type": ("task_type", "value"),
    "--status": ("status", "value"),
    "--priority": ("priority", "int"),
    "--depends-on": ("depends_on", "many"),
    "--prompt": ("prompt", "value"),
    "--parent": ("parent", "value"),
    "--force": ("force", "flag"),
}
SET_STATUS: Spec = {
    "--note": ("note", "value"),
    "--token": ("token", "int"),
    "--force": ("force", "flag"),
}
STATUS: Spec = {"--json": ("as_json", "flag")}  # (--watch, --every: click's)
# A daemon's options (agentd.cli.options.daemon_options; their ranges are checked in _daemon), given to the group
# itself (`agentd --role ROLE ...`) or to `agentd run` with the latter's own.
DAEMON: Spec = {
    "--role": ("role", "value"),
    "--interval": ("interval", "float"),
    "--once": ("once", "flag"),
    "--drain": ("drain", "flag"),
    "--concurrency": ("concurrency", "int"),
    "--instance": ("instance", "value"),
}
VERBOSE: Spec = {"-v": ("verbose", "count"), "--verbose": ("verbose", "count")}
RUN: Spec = {
    **DAEMON,
    "--log-file": ("log_file", "value"),
    "--log-format": ("log_format", "value"),
    "--ready-fd": ("ready_fd", "int"),
}
LIST: Spec = {
    "--status": ("statuses", "many"),
    "--role": ("role", "value"),
    "--json": ("as_json", "flag"),
}


class _Unsure(Exception):
    """Not a command line this module answers exactly as click would: click answers it."""


def _parse(
    args: Sequence[str], spec: Spec, positional: int, *, interspersed: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """Options and ``positional`` arguments (-1: any number) as click parses them, for the plain cases only (else
    _Unsure).

    Without ``interspersed`` (a group's own options), parsing stops at the first positional argument, which is
    returned with everything after it.
    """
    found: dict[str, Any] = {}
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if not arg.startswith("-") or arg == "-":
            if not interspersed:
                return found, list(args[index - 1 :])
            rest.append(arg)
            continue
        name, eq, attached = arg.partition("=")
        if name not in spec:
            raise _Unsure(arg)  # --help, -h, --, an unknown option: click words it
        dest, kind = spec[name]
        if kind in ("flag", "count"):
            if eq:
                raise _Unsure(arg)
            found[dest] = found.get(dest, 0) + 1 if kind == "count" else True
            continue
        if eq:
            value = attached
        elif index < len(args):
            value = args[index]
            index += 1
        else:
            raise _Unsure(arg)  # "requires an argument"
        if value.startswith("-") and not eq:
            raise _Unsure(value)  # a value that looks like an option: let click decide
        if kind in ("int", "float"):
            try:
                found[dest] = int(value) if kind == "int" else float(value)
            except ValueError:
                raise _Unsure(value) from None
        elif kind == "many":
            found.setdefault(dest, []).append(value)
        else:
            found[dest] = value
    if interspersed and positional >= 0 and len(rest) != positional:
        raise _Unsure(rest)
    return found, rest


# click.Path's checks of the global options' values (a folder for --root, a file for --queue and --config).
PATHS = {"root": (False, True), "queue": (True, False), "config_path": (True, False)}


def _path_ok(value: str, file_okay: bool, dir_okay: bool) -> bool:
    """Whether click.Path (exists=False, readable) takes ``value`` without a word."""
    import stat

    try:
        st = os.stat(value)
    except OSError:
        return True
    if (not file_okay and stat.S_ISREG(st.st_mode)) or (not dir_okay and stat.S_ISDIR(st.st_mode)):
        return False
    return os.access(value, os.R_OK)


def _utf8(stream: Any) -> bool:
    encoding = str(getattr(stream, "encoding", "") or "").lower().replace("-", "").replace("_", "")
    return encoding == "utf8"


def _echo(message: str, *, err: bool = False) -> None:
    """click.echo: one line, ANSI codes removed when the stream is not a terminal, flushed."""
    stream = sys.stderr if err else sys.stdout
    if "\x1b" in message and not stream.isatty():
        import re

        message = re.sub(r"\033\[[0-?]*[ -/]*[@-~]", "", message)  # click's own pattern
    stream.write(message + "\n")
    stream.flush()


def _warn(message: str) -> None:
    _echo(f"agentd: warning: {message}", err=True)


def _add(app: App, args: Sequence[str]) -> int:
    from agentd.cli.queue_ops import transact
    from agentd.core import edits
    from agentd.errors import ExitCode

    opts, (task_id,) = _parse(args, ADD, 1)
    if "title" not in opts:
        raise _Unsure("--title")  # "Missing option '--title'"
    status = opts.get("status", "ready")
    if not opts.get("force"):
        edits.check_status(status, app.config.workflow)
    task = edits.new_task(
        task_id,
        title=opts["title"],
        status=status,
        task_type=opts.get("task_type"),
        priority=opts.get("priority"),
        dependencies=tuple(opts.get("depends_on", ())),
        prompt=opts.get("prompt"),
    )
    parent = opts.get("parent")
    transact(app, lambda txn: edits.add(txn, dict(task), parent))
    if status not in app.config.workflow.known_statuses():
        _warn(f"status {status!r} is not claimed or produced by any role")
    _echo(f"added {task_id} ({status})")
    return ExitCode.OK


def _set_status(app: App, args: Sequence[str]) -> int:
    from agentd.cli.queue_ops import transact
    from agentd.core import edits
    from agentd.errors import ExitCode

    opts, (task_id, status) = _parse(args, SET_STATUS, 2)
    if not opts.get("force"):
        edits.check_status(status, app.config.workflow)
    note, token = opts.get("note"), opts.get("token")
    old = transact(app, lambda txn: edits.set_status(txn, task_id, status, note=note, token=token))
    if status not in app.config.workflow.known_statuses():
        _warn(f"status {status!r} is not claimed or produced by any role")
    _echo(f"{task_id}: {old} -> {status}")
    return ExitCode.OK


def _list(app: App, args: Sequence[str]) -> int:
    from agentd.cli.queue_ops import LIST_HEADERS, list_rows, plain_table
    from agentd.core.listing import task_json

    opts, _ = _parse(args, LIST, 0)
    if not opts.get("as_json") and sys.stdout.isatty():
        raise _Unsure("a terminal")  # rich draws the table there
    from agentd.errors import ExitCode

    snapshot = app.store().read()
    tasks = snapshot.tasks
    statuses = opts.get("statuses")
    if statuses:
        tasks = [t for t in tasks if t.status in statuses]
    role = opts.get("role")
    if role:
        spec = app.config.role(role)
        tasks = [t for t in tasks if t.status in spec.claims or t.status == spec.working]
    bad = snapshot.quarantined
    if opts.get("as_json"):
        import json

        _echo(json.dumps([task_json(t, bad) for t in tasks], indent=2, ensure_ascii=False, default=str))
        return ExitCode.OK
    for line in plain_table(LIST_HEADERS, list_rows(tasks, bad)):
        _echo(line)
    if bad:
        _warn(f"{len(bad)} task(s) quarantined: `agentd queue validate` says why")
    return ExitCode.OK


def _status(app: App, args: Sequence[str]) -> int:
    opts, roles = _parse(args, STATUS, -1)
    if not opts.get("as_json") and sys.stdout.isatty():
        raise _Unsure("a terminal")  # rich draws the dashboard there
    from agentd.cli.status_view import plain_lines
    from agentd.core.clock import SystemClock
    from agentd.errors import ExitCode
    from agentd.report import status as dashboard

    config = app.config
    for role in roles:
        config.role(role)  # unknown roles: exit 6 before anything is read
    data = dashboard.snapshot(config, roles or list(config.roles), SystemClock().now())
    if opts.get("as_json"):
        import json

        _echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        for line in plain_lines(data):
            _echo(line)
    if all(r["running"] for r in data["roles"]):
        return ExitCode.OK
    if any(r.get("pid_file_error") for r in data["roles"]):
        return ExitCode.BAD_DATA  # a PID file that cannot be read: running or not is unknown (LSB's 4 too)
    return ExitCode.NOT_RUNNING


def _daemon_options(argv: Sequence[str]) -> dict[str, Any]:
    """The options of a plain `agentd [GLOBAL] --role ROLE [DAEMON]` or `agentd [GLOBAL] run --role ROLE [RUN]`, as
    click would pass them to the daemon (else _Unsure: click says what is wrong, or what else the argv asks for)."""
    given, rest = _parse(argv, {**GLOBAL, **VERBOSE, **DAEMON}, 0, interspersed=False)
    if rest[:1] == ["run"] and not given.keys() & {dest for dest, _ in DAEMON.values()}:
        opts, _ = _parse(rest[1:], RUN, 0)
        given.update(opts)
    elif rest:
        raise _Unsure(rest)  # a subcommand (after daemon options: click's usage error)
    if not given.get("role") or (given.get("once") and given.get("drain")):
        raise _Unsure("--role")  # the help, or click's usage error
    interval, concurrency = given.get("interval"), given.get("concurrency")
    if interval is not None and not (0 < interval < math.inf):
        raise _Unsure(interval)  # click.FloatRange(min=0, min_open=True): click words it (and takes inf and nan)
    if concurrency is not None and concurrency < 1:
        raise _Unsure(concurrency)  # click.IntRange(min=1)
    if given.get("log_format", "text") not in ("text", "json"):
        raise _Unsure(given["log_format"])  # click.Choice
    if "log_file" in given and not _path_ok(given["log_file"], True, False):
        raise _Unsure(given["log_file"])  # click.Path(dir_okay=False)
    return given


def _run_daemon(given: dict[str, Any]) -> int:
    """What the click group (or `agentd run`) does with a daemon's options: logging set up as its callback does, then
    :func:`agentd.cli.foreground.run`."""
    import logging

    verbose = given.get("verbose", 0)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from agentd.run.zygote import default_zygote

    # The supervisor zygote's interpreter starts now, on the other core, while this one loads the daemon's modules and
    # reads the configuration: its first spares are forked by the first claim, which no longer waits for them (1-2
    # ms). A daemon that then cannot start leaves it at once (it reads EOF and goes). (After the logging's set-up, as
    # in click's path: `-vv` shows its start there too.)
    default_zygote().boot()

    from agentd.cli import foreground
    from agentd.cli.app import App

    app = App(
        root=given.get("root"),
        queue=given.get("queue"),
        config_path=given.get("config_path"),
        verbose=verbose,
        store_kind=given.get("store_kind"),
        cache_config=True,
    )
    return foreground.run(
        app,
        given["role"],
        given.get("interval"),
        given.get("once", False),
        given.get("drain", False),
        given.get("concurrency"),
        given.get("instance"),
        log_file=given.get("log_file"),
        log_format=given.get("log_format", "text"),
        ready_fd=given.get("ready_fd"),
    )


COMMANDS: dict[tuple[str, ...], Callable[[App, Sequence[str]], int]] = {
    ("queue", "add"): _add,
    ("queue", "set-status"): _set_status,
    ("queue", "list"): _list,
    ("status",): _status,
}


def run(argv: Sequence[str]) -> int | None:
    """Run ``argv`` (without the program name) when it is one of the hot commands in a plain form; its exit code, or
    None when click should run it (nothing has been read, written or printed then)."""
    if not (_utf8(sys.stdout) and _utf8(sys.stderr)):
        return None  # click re-wraps a misconfigured stream: its own path
    try:
        daemon = _daemon_options(argv)
    except _Unsure:
        pass
    else:
        if "root" not in daemon and os.environ.get("AGENTD_ROOT"):  # click reads --root from the environment too
            daemon["root"] = os.environ["AGENTD_ROOT"]
        if not all(_path_ok(value, *PATHS[dest]) for dest, value in daemon.items() if dest in PATHS):
            return None
        global _daemon_over
        code = _run_daemon(daemon)
        _daemon_over = True
        return code
    try:
        given, rest = _parse(argv, GLOBAL, 0, interspersed=False)
    except _Unsure:
        return None
    depth = 1 if rest[:1] == ["status"] else 2
    command = COMMANDS.get(tuple(rest[:depth]))
    if command is None:
        return None
    if "root" not in given and os.environ.get("AGENTD_ROOT"):  # click reads --root from the environment too
        given["root"] = os.environ["AGENTD_ROOT"]
    if not all(_path_ok(value, *PATHS[dest]) for dest, value in given.items() if dest in PATHS):
        return None
    from agentd import lazylog
    from agentd.cli.app import App

    lazylog.on_first_use(_log_setup)  # what agentd.cli.root.cli sets up, once something logs (mostly nothing does)
    app = App(**given, verbose=0, cache_config=True)
    try:
        return command(app, rest[depth:])
    except _Unsure:
        lazylog.on_first_use(None)
        return None


_daemon_over = False  # run() ran a daemon to its end: main() ends the process with _leave()


def _leave(code: int) -> NoReturn:
    """End the process of a daemon whose run is over without the interpreter's teardown, which frees every object and
    module one by one (~22 M instructions, a tenth of an empty drain's, ~10 ms) and which nothing outside the process
    sees. Everything an exit does that is seen is done first, in the interpreter's order (Py_FinalizeEx's): the
    threads that are not daemon threads waited for (threading's own wait at exit), the atexit handlers run (logging's
    flush and close of a log file, the queue's last unlinks of replaced names, weakref finalizers), stdout and stderr
    flushed (exit 120 when that fails, as the interpreter's). The PID file was released, the journal's
    lines written with os.write, and the kernel closes the descriptors: the zygote reads EOF and goes, and every flock
    this process held is released, as at any exit."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)  # (what the interpreter calls first at exit)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            code = 120
    os._exit(code)


def _log_setup() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str]) -> None:
    """Run a hot command with the CLI's error boundary (:func:`agentd.cli.root.main`'s, without click), or hand ``argv``
    to click when :func:`run` declines."""
    for stream in (sys.stdout, sys.stderr):
        # Text UTF-8 cannot encode (a lone surrogate a JS tool left in a task) prints as a \\u escape, never a crash.
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    try:
        code = run(argv)
    except Exception as exc:  # the boundary of agentd.cli.root.main, for what these commands raise
        from agentd.errors import AgentdError, ExitCode, FileAccessError

        if isinstance(exc, AgentdError):
            _echo(f"agentd: {exc}", err=True)
            sys.exit(int(exc.exit_code))
        if isinstance(exc, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.FAILURE)
        if isinstance(exc, OSError):
            _echo(f"agentd: {FileAccessError.from_os_error(exc)}", err=True)
            sys.exit(ExitCode.IO_ERROR)
        raise
    except KeyboardInterrupt:
        _echo("agentd: interrupted", err=True)
        sys.exit(130)
    if code is None:
        gc.enable()  # (off while agentd.__main__ loaded this: click's commands may run for long, e.g. the web app)
        from agentd.cli.root import main as click_main

        click_main(argv)
        return
    if _daemon_over and sys.getprofile() is None and sys.gettrace() is None:
        _leave(int(code))  # (not under a profiler or tracer: `python -m cProfile -o F -m agentd` writes F after this)
    sys.exit(int(code))
