"""`agentd logs -f` across rotations (agentd.store.file.journal.follow): no line lost when the log rotated more than
once between two looks, none repeated. Found by the lead's suite run: with the faster daemons of this round,
`test_log_rotation_keeps_backups_and_logs_follow_reads_through` (max_bytes 1024) saw the follower miss a run's end:
the log had rotated twice between two looks and the follower went from the old file straight to the newest."""

from __future__ import annotations

import os
from pathlib import Path

from agentd.store.file.journal import follow


def rotate(log: Path, backups: int, text: str) -> None:
    """What logging's RotatingFileHandler does: log.N-1 -> log.N ... log -> log.1 (the last one dropped), a new log."""
    for n in range(backups - 1, 0, -1):
        if Path(f"{log}.{n}").exists():
            os.replace(f"{log}.{n}", f"{log}.{n + 1}")
    os.replace(log, f"{log}.1")
    log.write_text(text)


def test_a_log_rotated_twice_between_looks_loses_no_line(tmp_path: Path) -> None:
    """a in the first file; b appended; two rotations (c's whole file is then log.1): b, c, d, in order."""
    log = tmp_path / "builder.log"
    log.write_text("a\n")
    lines = follow(log, from_end=False)
    assert next(lines) == "a"
    with log.open("a") as f:
        f.write("b\n")
    rotate(log, 2, "c\n")
    rotate(log, 2, "d\n")
    for want in ("b", "c", "d"):  # one at a time: a lost line shows as the next one, never as a wait for ever
        assert next(lines) == want
    with log.open("a") as f:
        f.write("e\n")
    assert next(lines) == "e"


def test_a_log_whose_old_file_was_rotated_out_reads_every_backup_once(tmp_path: Path) -> None:
    """Three rotations with two backups: the file being read is gone; both backups and the new log, oldest first."""
    log = tmp_path / "builder.log"
    log.write_text("a\n")
    lines = follow(log, from_end=False)
    assert next(lines) == "a"
    for text in ("b\n", "c\n", "d\n"):
        rotate(log, 2, text)
    for want in ("b", "c", "d"):  # one at a time: a lost line shows as the next one, never as a wait for ever
        assert next(lines) == want


def test_a_single_rotation_reads_on_from_the_new_file_without_repeating(tmp_path: Path) -> None:
    """One rotation: the rest of the old file, then the new one from its start; nothing of log.1 read again."""
    log = tmp_path / "builder.log"
    log.write_text("a\n")
    lines = follow(log, from_end=False)
    assert next(lines) == "a"
    with log.open("a") as f:
        f.write("b\n")
    rotate(log, 3, "c\n")
    with log.open("a") as f:
        f.write("d\n")
    for want in ("b", "c", "d"):  # one at a time: a lost line shows as the next one, never as a wait for ever
        assert next(lines) == want


def test_a_log_cut_short_in_place_reads_its_new_start_and_no_backup(tmp_path: Path) -> None:
    """copytruncate (the same file cut short): the new text from its start, the copy never read again."""
    log = tmp_path / "builder.log"
    log.write_text("a\nb\n")
    lines = follow(log, from_end=False)
    assert [next(lines), next(lines)] == ["a", "b"]
    Path(f"{log}.1").write_text("a\nb\n")  # the copy
    with log.open("r+") as f:
        f.truncate(0)
        f.write("c\n")
    assert next(lines) == "c"
