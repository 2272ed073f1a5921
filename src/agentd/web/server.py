"""Serving the dashboard: decide who may do what, bind the socket, run uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentd.config import Config
from agentd.core.clock import SystemClock
from agentd.web.auth import Guard, is_loopback, load_or_create_token

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class BindRefused(ValueError):
    """Binding this host with these options would expose the dashboard; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    """What ``agentd web`` will serve: where, with which guard, and the token file it used."""

    host: str
    port: int
    guard: Guard
    token_file: Path | None


def plan(config: Config, host: str, port: int, *, read_only: bool, token_file: Path | None, no_token: bool) -> Plan:
    """Decide the guard; BindRefused for a non-loopback host without a token."""
    loopback = is_loopback(host)
    if no_token:
        if not loopback:
            raise BindRefused(
                f"refusing to serve on {host} without a token: anyone who can reach it could change the queue; "
                "drop --no-token (the token is then required for every page) or bind 127.0.0.1"
            )
        return Plan(host, port, Guard(None, read_only=read_only), None)
    path = token_file or config.state_dir / "web.token"
    if token_file is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    token = load_or_create_token(path)
    return Plan(host, port, Guard(token, read_only=read_only, reads_need_token=not loopback), path)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


def serve(config: Config, chosen: Plan, sock: socket.socket) -> None:
    """Run the dashboard on ``sock`` until stopped."""
    import uvicorn

    from agentd.web.app import create_app
    from agentd.web.data import Source

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """SIGINT/SIGTERM stop the server, which then exits 0 (uvicorn's own would re-raise the signal)."""
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

    app = create_app(Source(config, SystemClock()), chosen.guard)
    server = Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    )
    server.run(sockets=[sock])
