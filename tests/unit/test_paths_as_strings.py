"""The hot commands' paths as strings (no pathlib): each name is the one pathlib would give."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from hypothesis import example, given
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
@example(path="//", folder="///")  # found by hypothesis: "//" is a root of its own, not inside "/"
@example(path="//a", folder="//")
@example(path="/a", folder="//")
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


# Names a run folder or a journal's folder may hold: dots where pathlib's suffix and name rules differ from a string's.
_file_names = st.lists(st.text(alphabet="ab.pid0123", min_size=1, max_size=9), max_size=8, unique=True)


@given(names=_file_names)
def test_the_pid_files_are_listed_as_pathlib_lists_them(tmp_path_factory: object, names: list[str]) -> None:
    """pid_files (strings, for `agentd status`) lists the files all_pid_files lists, in the same order."""
    from agentd.store.file.pidfile import all_pid_files, pid_files

    run = Path(tmp_path_factory.mktemp("run"))  # type: ignore[attr-defined]
    for name in names:
        if name not in (".", ".."):
            (run / name).write_text("")
    assert pid_files(str(run)) == [str(path) for path in all_pid_files(run)]
    assert pid_files(str(run / "missing")) == [] == all_pid_files(run / "missing")


def _rotated_by_pathlib(path: Path) -> list[Path]:
    """The journal's files as rotated_files found them with pathlib (before `agentd status` read it by name)."""
    numbered: list[tuple[int, Path]] = []
    prefix = path.name + "."
    for entry in path.parent.iterdir():
        suffix = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
        if suffix.isdigit() and int(suffix) > 0:
            numbered.append((int(suffix), entry))
    return [entry for _, entry in sorted(numbered, reverse=True)] + ([path] if path.exists() else [])


@given(names=_file_names)
def test_the_journal_rotations_are_found_as_before(tmp_path_factory: object, names: list[str]) -> None:
    """The journal's files found by name (strings, for `agentd status`) are those pathlib found, oldest first."""
    from agentd.store.file.journal import _rotated, rotated_files

    folder = Path(tmp_path_factory.mktemp("journal"))  # type: ignore[attr-defined]
    for name in names:
        (folder / ("events.jsonl" + name)).write_text("")
    journal = folder / "events.jsonl"
    assert _rotated(str(journal)) == [str(path) for path in _rotated_by_pathlib(journal)]
    assert rotated_files(journal) == _rotated_by_pathlib(journal)
