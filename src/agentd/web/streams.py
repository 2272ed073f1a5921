"""Server-sent event streams: "something changed" for the board, a run's log as it grows, the journal as it grows.

Each stream polls ``stat`` (cheap, no lock, no read of the queue) a few times a second and sends only when something
changed; the page then fetches what it shows. A stream ends when the client goes away.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from agentd.store.base import Filter
from agentd.store.file.journal import parse_line

POLL = 0.1  # s between looks: a change reaches the page well within 500 ms
KEEPALIVE = 15.0  # s between comments that keep proxies from closing an idle stream
CHUNK = 64 * 1024


def message(data: str, event: str | None = None) -> str:
    """One SSE message (``data`` must be one line: send JSON)."""
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


async def changes(signature: Callable[[], object]) -> AsyncIterator[str]:
    """A ``change`` message whenever ``signature()`` differs from the last look."""
    last = signature()
    quiet = 0.0
    yield ": connected\n\n"
    while True:
        await asyncio.sleep(POLL)
        now = signature()
        if now != last:
            last, quiet = now, 0.0
            yield message("{}", "change")
        else:
            quiet += POLL
            if quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": keepalive\n\n"


async def tail(path: Path, offset: int = 0) -> AsyncIterator[str]:
    """The file from ``offset`` on and everything appended to it, as JSON strings of text (``tail -f``)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    quiet = 0.0
    yield ": connected\n\n"
    while True:
        try:
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < offset:
                    offset = 0  # truncated or replaced: start again
                handle.seek(offset)
                data = handle.read(CHUNK)
        except OSError:
            data = b""
        if data:
            offset += len(data)
            text = decoder.decode(data)
            if text:
                quiet = 0.0
                yield message(json.dumps(text, ensure_ascii=False))
            continue  # more may be waiting
        await asyncio.sleep(POLL)
        quiet += POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keepalive\n\n"


async def journal(path: Path, where: Filter) -> AsyncIterator[str]:
    """Every journal event appended from now on that passes ``where``, as its JSON line."""
    try:
        st = os.stat(path)
        inode, offset = st.st_ino, st.st_size
    except OSError:
        inode, offset = None, 0
    pending = b""
    quiet = 0.0
    yield ": connected\n\n"
    while True:
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                if st.st_ino != inode or st.st_size < offset:
                    inode, offset, pending = st.st_ino, 0, b""  # rotated: the new live file from its start
                handle.seek(offset)
                data = handle.read(CHUNK)
        except OSError:
            data = b""
        if data:
            offset += len(data)
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                event = parse_line(line)
                if event is not None and where.matches(event):
                    quiet = 0.0
                    yield message(json.dumps(event.data, ensure_ascii=False, default=str))
            continue
        await asyncio.sleep(POLL)
        quiet += POLL
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keepalive\n\n"
