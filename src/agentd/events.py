"""The event journal: every state change a daemon makes, one JSON line in ``.agentd/events.jsonl``.

The same call writes the human log line, so the log and the journal cannot disagree.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agentd.clock import Clock, format_timestamp
from agentd.leases import hostname

EVENT_TYPES = (
    "daemon-started",
    "daemon-stopped",
    "claimed",
    "started",
    "heartbeat-lost",
    "finished",
    "retry-scheduled",
    "refused",
    "recovered",
    "released",
    "unblocked",
    "queue-invalid",
    "wip-full",
    "wip-room",
)


class Journal:
    """Appends events to a JSON-lines file (one ``write`` per line, O_APPEND) and logs them."""

    def __init__(self, path: Path | None, clock: Clock, role: str | None, logger: logging.Logger) -> None:
        self.path = path
        self.clock = clock
        self.role = role
        self.log = logger
        self.host = hostname()
        self._lock = threading.Lock()

    def emit(self, event: str, message: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """Log ``message`` and append the event with its fields."""
        self.log.log(level, message)
        if self.path is None:
            return
        record = {
            "time": format_timestamp(self.clock.now()),
            "event": event,
            "role": self.role,
            "host": self.host,
            "pid": os.getpid(),
            **fields,
            "message": message,
        }
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.log.warning("cannot append to %s: %s", self.path, exc.strerror)
