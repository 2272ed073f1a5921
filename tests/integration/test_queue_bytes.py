"""The queue store reads a file's bytes as Latin-1 (one character a byte) and decodes only the values outside ASCII:
what people see is what a decode of the whole file would give. A byte that is not UTF-8 is named at its offset, a
JSON error at its line and column in characters, a file of whitespace outside ASCII is empty; and a queue whose
tasks and keys hold characters of every UTF-8 length is read, changed and written as a decoded text would be."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentd.errors import QueueInvalid
from agentd.store.file import jsonedit
from agentd.store.file.queuefile import QueueStore

BOM = b"\xef\xbb\xbf"


def offset_of_bad_byte(raw: bytes) -> int:
    with pytest.raises(UnicodeDecodeError) as caught:
        raw.decode("utf-8")
    return caught.value.start


@pytest.mark.parametrize(
    "raw",
    [
        b'{"tasks": [{"id": "A", "title": "caf\xe9"}]}\n',  # Latin-1's "é"
        BOM + b'{"tasks": [{"id": "A", "title": "caf\xe9"}]}\n',  # the same after a byte-order mark
        b'{"tasks": [{"id": "A", "title": "\xed\xa0\x80"}]}\n',  # an encoded surrogate
        b'{"w\xc3": 1, "tasks": []}\n',  # a cut character in a key before the tasks
        b'{"tasks": [{"id": "A", "title": "\xe2\x86\x92"}, {"id": "B", "title": "\xf0\x9f"}]}\n',  # a good one first
        b'{"tasks": []}\n\xff',  # after the document
        b'{"tasks": [{"id": "A"}] \xff}',  # where JSON wants a comma: the byte is named, not the JSON
    ],
)
def test_a_byte_that_is_not_utf8_is_named_at_its_offset(tmp_path: Path, raw: bytes) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_bytes(raw)
    with pytest.raises(QueueInvalid, match=re.escape(f"not UTF-8 (invalid byte at offset {offset_of_bad_byte(raw)})")):
        QueueStore(queue, parse_retry=0).read()
    assert queue.read_bytes() == raw


def test_a_bad_byte_saved_into_a_task_after_a_good_read_is_named_at_its_offset(tmp_path: Path) -> None:
    """The second read reuses every task but the one changed, whose bytes are decoded: the byte is found there."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks = [{"id": f"T{n}", "title": f"étape {n} → ✅", "type": "Build", "status": "ready"} for n in range(50)]
    good = json.dumps({"tasks": tasks}, indent=2, ensure_ascii=False).encode()
    queue.write_bytes(good)
    store = QueueStore(queue, parse_retry=0)
    assert store.read().data["tasks"][30]["title"] == "étape 30 → ✅"
    bad = good.replace("étape 30 →".encode(), b"\xe9tape 30 \xe2\x86")
    queue.write_bytes(bad)
    with pytest.raises(QueueInvalid, match=re.escape(f"invalid byte at offset {offset_of_bad_byte(bad)})")):
        store.read()
    queue.write_bytes(good)
    assert store.read().data == {"tasks": tasks}


def test_a_json_error_after_characters_outside_ascii_is_placed_in_characters(tmp_path: Path) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    text = '{"tasks": [{"id": "A", "title": "→ 🎉 ✅ é"},]}\n'
    queue.write_text(text, encoding="utf-8")
    column = text.index(",]") + 1  # (in characters, as an editor shows it)
    with pytest.raises(QueueInvalid, match=f"a trailing comma at line 1 column {column} "):
        QueueStore(queue, parse_retry=0).read()


def test_a_file_of_whitespace_outside_ascii_is_empty(tmp_path: Path) -> None:
    queue = tmp_path / "SPRINT_QUEUE.json"
    queue.write_text("\u00a0\u2003\n", encoding="utf-8")
    with pytest.raises(QueueInvalid, match="empty file"):
        QueueStore(queue, parse_retry=0).read()


def test_keys_and_values_outside_ascii_are_read_changed_and_written_as_their_characters(tmp_path: Path) -> None:
    """A queue with keys and values of every UTF-8 length, some escaped: its document is json.loads's, a change
    through a draft and a whole-document change write the bytes jsonedit.apply writes into the decoded text."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    document = {
        "équipe → 🚀": {"rôle": "builder"},
        "tasks": [
            {"id": f"T{n}", "title": f"t{n} — ß 汉 🎉", "type": "Build", "status": "ready", "notes": "\u00e9"}
            for n in range(6)
        ],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False).replace('"\u00e9"', '"\\u00e9"', 2)
    queue.write_bytes(BOM + text.encode())
    store = QueueStore(queue, parse_retry=0)
    assert store.read().data == json.loads(text) == document

    def retitle(draft: object) -> None:
        task = draft.task("T3")  # type: ignore[attr-defined]
        task["title"] = "nouveau → titre 🚀"
        task["status"] = "done"

    store.edit(retitle)
    new = json.loads(text)
    new["tasks"][3].update(title="nouveau → titre 🚀", status="done")
    text = jsonedit.apply(text, json.loads(text), new)
    assert queue.read_bytes() == BOM + text.encode()
    assert store.read().data == new

    def regroup(doc: dict) -> None:  # type: ignore[type-arg]
        doc["équipe → 🚀"]["rôle"] = "testeur ✅"
        doc["tasks"].append({"id": "T9", "title": "ajoutée ☕", "type": "Build", "status": "ready"})

    store.transaction(regroup)
    newer = json.loads(json.dumps(new))
    regroup(newer)
    text = jsonedit.apply(text, new, newer)
    assert queue.read_bytes() == BOM + text.encode()
    assert store.read().data == newer == QueueStore(queue, parse_retry=0).read().data


def test_a_big_read_outside_ascii_still_quarantines_an_escaped_half_surrogate_pair(tmp_path: Path) -> None:
    """A first read of 600 tasks, judged in lists: the one task whose title escapes half an emoji is quarantined,
    the others (all outside ASCII) are not."""
    queue = tmp_path / "SPRINT_QUEUE.json"
    tasks = [{"id": f"T{n}", "title": f"étape {n} → ✅", "type": "Build", "status": "ready"} for n in range(600)]
    text = json.dumps({"tasks": tasks}, indent=2, ensure_ascii=False).replace("étape 321 →", "\\ud83d 321 →")
    queue.write_text(text, encoding="utf-8")
    snapshot = QueueStore(queue, parse_retry=0).read()
    assert list(snapshot.quarantined) == ["T321"]
    assert "text agentd cannot encode" in snapshot.quarantined["T321"].message
