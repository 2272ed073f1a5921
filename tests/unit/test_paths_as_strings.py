"""The hot commands' paths as strings (no pathlib): each name is the one pathlib would give."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from agentd import config
from agentd.store.file import archive

# Path pieces with the characters that change how a path reads: slashes (repeated, leading, trailing) and dots.
_piece = st.text(alphabet="ab./", max_size=8)


@given(name=_piece)
def test_a_config_path_reads_as_pathlib_writes_it(name: str) -> None:
    """_norm gives str(Path(name)): '.' parts and repeated or trailing slashes dropped, '..' and '//' kept."""
    assert config._norm(name) == str(Path(name))


@given(folder=_piece, name=_piece)
def test_a_joined_path_reads_as_pathlib_joins_it(folder: str, name: str) -> None:
    """_join gives str(Path(folder) / name), an absolute name replacing the folder as with pathlib."""
    assert config._join(config._norm(folder), name) == str(Path(folder) / name)


@given(path=_piece, folder=_piece)
def test_a_path_inside_the_root_reads_relative_as_pathlib_says(path: str, folder: str) -> None:
    """_relative gives str(Path(path).relative_to(folder)), or None where pathlib refuses (not inside it)."""
    want = str(PurePosixPath(path).relative_to(folder)) if PurePosixPath(path).is_relative_to(folder) else None
    assert config._relative(config._norm(path), config._norm(folder)) == want


@given(name=st.text(alphabet="ab.", min_size=1, max_size=8).filter(lambda n: n not in (".", "..")))
def test_the_archive_is_named_as_before(name: str) -> None:
    """file_for names the archive path_for does (the queue's stem, then .archive.jsonl), for odd dots too."""
    queue = os.path.join("/p/q", name)
    assert archive.file_for(queue) == str(archive.path_for(Path(queue)))


def test_config_paths_are_paths_built_from_the_strings(tmp_path: Path) -> None:
    """Config.root, path, queue_path, leases_dir and state_dir stay Paths (equal to what pathlib made before), and a
    config made again from its own fields (replace) is equal to it."""
    (tmp_path / "agentd.toml").write_text('queue = "./q//x.json"\nstate_dir = "st/"\n', encoding="utf-8")
    loaded = config.load(root=tmp_path, environ={})
    root = tmp_path.resolve()
    assert loaded.root == root and isinstance(loaded.root, Path)
    assert loaded.path == root / "agentd.toml"
    assert loaded.queue_path == root / "./q//x.json"
    assert str(loaded.queue_path) == loaded.queue_file == str(root / "q" / "x.json")
    assert loaded.state_dir == root / "st" and loaded.leases_dir == root / ".leases"
    assert loaded.replace(lock_timeout=1.0).replace(lock_timeout=loaded.lock_timeout) == loaded
    assert loaded.replace(queue_path=Path("/elsewhere/q.json")).queue_file == "/elsewhere/q.json"
