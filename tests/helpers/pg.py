"""A real PostgreSQL server for the tests: Debian's binaries, a throw-away cluster, started and stopped by the suite.

The server refuses to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``); otherwise
it runs as whoever runs the tests. It listens on 127.0.0.1 (a free port) and on a Unix socket in its own folder, with
``trust`` authentication for the tests' own addresses: nothing outside the machine can reach it. Each test gets a
database of its own (``fresh_database``), so tests never see each other's rows.

Where no server can be started, :func:`unavailable` says exactly what is missing, for a one-line skip.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"  # who runs the server when the tests run as root
START_TIMEOUT = 60


def bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: $AGENTD_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    chosen = os.environ.get("AGENTD_PG_BIN")
    if chosen:
        return Path(chosen) if (Path(chosen) / "initdb").exists() else None
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable() -> str | None:
    """Why no test server can be started here (None: it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]'; make test installs it)"
    folder = bin_dir()
    if folder is None:
        return "the PostgreSQL server binaries are not installed (apt-get install postgresql-15; make test does it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser (util-linux) is missing to start the server as postgres"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running test cluster."""

    data: Path
    socket_dir: Path
    host: str
    port: int
    bin: Path
    as_user: str | None  # the user the server runs as (None: this process's)
    listen: str = "127.0.0.1"

    def dsn(self, database: str = "postgres", host: str | None = None) -> str:
        user = self.as_user or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql://{user}@{host or self.host}:{self.port}/{database}"

    def _command(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *argv] if self.as_user else list(argv)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``pg_ctl -D DATA ARGS`` as the server's user."""
        return subprocess.run(
            self._command(str(self.bin / "pg_ctl"), "-D", str(self.data), *args),
            capture_output=True,
            text=True,
            check=check,
            timeout=START_TIMEOUT + 30,
        )

    def start(self) -> None:
        options = f"-c listen_addresses={self.listen} -p {self.port} -k {self.socket_dir}"
        self.ctl("-w", "-t", str(START_TIMEOUT), "-l", str(self.data / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-w", "-m", mode, "stop", check=False)

    def restart(self) -> None:
        """Stop the server (fast: every connection is cut) and start it again on the same port."""
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return (self.data / "server.log").read_text(errors="replace")
        except OSError:
            return ""


def start_server(base: Path, *, listen: str = "127.0.0.1", trust: tuple[str, ...] = ("127.0.0.1/32",)) -> Server:
    """initdb a new cluster in ``base`` and start it; ``trust``: the client networks allowed in (no password)."""
    folder = bin_dir()
    assert folder is not None, unavailable()
    as_user = SERVER_USER if os.geteuid() == 0 else None
    if as_user and base.parent != Path(tempfile.gettempdir()):
        # The server's user must traverse every parent of its folder, and pytest makes /tmp/pytest-of-USER 0700
        # again whenever any pytest session starts (another xdist worker, another run): a cluster under tmp_path
        # then fails with "Permission denied". So the cluster lives in a folder of its own in the system's temporary
        # folder, removed when this process exits; ``base`` gets a link to it.
        real = Path(tempfile.mkdtemp(prefix="agentd-pg-"))
        atexit.register(shutil.rmtree, real, ignore_errors=True)
        if base != real:
            base.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                base.symlink_to(real, target_is_directory=True)
            base = real
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    if as_user:
        entry = pwd.getpwnam(as_user)
        for path in (base, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # the server's user must reach the folder: make every parent traversable (tmp folders are 0700 for root)
        for parent in base.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
    server = Server(data, sockets, "127.0.0.1", free_port(), folder, as_user, listen)
    initdb = server._command(
        str(folder / "initdb"), "-D", str(data), "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"
    )
    done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")  # a throw-away test cluster
        conf.write("max_connections = 200\nshared_buffers = 32MB\n")
    with open(data / "pg_hba.conf", "w") as hba:
        hba.write("local all all trust\n")
        for network in trust:
            hba.write(f"host all all {network} trust\n")
    server.start()
    return server


@contextlib.contextmanager
def running_server(**options: object) -> Iterator[Server]:
    """A server in a temporary folder for the duration of the block."""
    base = Path(tempfile.mkdtemp(prefix="agentd-pg-"))
    server = start_server(base, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server: Server) -> str:
    """A new, empty database on ``server``; its DSN."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(server.dsn(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return server.dsn(name)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the server is still starting up (a restart in another test of this worker)
