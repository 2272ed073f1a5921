"""agentd.toml as parsed, kept beside the project's state so the CLI's hot commands skip tomllib.

Importing tomllib and parsing costs each call of :mod:`agentd.cli.fast` about a third of an interpreter start
(docs/benchmarks.md). The cache, ``.agentd/cache/<name of the config file>.json`` in the config file's folder, holds
the exact bytes it was parsed from, compared with the file's bytes on every use: any edit (the same size, the same
mtime, a file put back by rename) misses. A cache that is missing, unreadable, not JSON, of another agentd or Python
version, or holding anything but the expected shape is never trusted: the caller parses the file itself. It is written
to a temporary file and renamed over (concurrent writers each put a whole cache), and failing to write it changes
nothing.

The caller keeps only data that passed the config schema (:func:`agentd.config.load` puts it after building the
config), and the cache names the schema file it passed (size and modification time): data that passed the schema as it
is now need not be checked again (a few hundredths of an interpreter start on every call); the data of a cache that
names no schema or another one is checked as a parsed file is.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from agentd import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What the cached data depends on besides the bytes: tomllib's version (the Python) and agentd's.
TAG = f"agentd {__version__} python {sys.hexversion:x}"
FOLDER = os.path.join(".agentd", "cache")


def location(config_path: str) -> str:
    """Where the cache of the config file ``config_path`` lives."""
    folder, name = os.path.split(config_path)
    return os.path.join(folder, FOLDER, name + ".json")


def schema_stamp() -> str:
    """What tells one version of the config schema file from another (its size and modification time)."""
    from agentd import schema

    try:
        info = os.stat(schema.schema_file("config"))
    except OSError:
        return ""
    return f"{info.st_size}:{info.st_mtime_ns}"


def get(config_path: str, raw: bytes) -> tuple[dict[str, Any], bool] | None:
    """The data parsed from ``raw`` (the config file's bytes now) when the cache holds these very bytes, and whether
    it passed the config schema as it is now (else it is to be checked); None when the cache does not hold them."""
    try:
        with open(location(config_path), "rb") as handle:
            entry = json.loads(handle.read())
    except (OSError, ValueError):  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return None
    if not (type(entry) is list and len(entry) in (3, 4) and entry[0] == TAG and type(entry[2]) is dict):
        return None
    if not (type(entry[1]) is str and entry[1].encode("utf-8", "surrogatepass") == raw):
        return None
    checked = len(entry) == 4 and type(entry[3]) is str and entry[3] != "" and entry[3] == schema_stamp()
    return entry[2], checked


def put(config_path: str, raw: bytes, data: dict[str, Any]) -> None:
    """Keep ``data``, parsed from ``raw`` and valid by the config schema, for the next call; a value JSON cannot hold (a
    TOML date) or a folder that cannot be written leaves no cache."""
    try:
        text = json.dumps([TAG, raw.decode("utf-8"), data, schema_stamp()], ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return
    target = location(config_path)
    temporary = f"{target}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except (OSError, UnicodeEncodeError):
        with contextlib.suppress(OSError):
            os.unlink(temporary)
