"""agentd.toml's [[schedule]], [[rules]] and [[hooks]]: checked at load, one line naming the file and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentd import config
from agentd.errors import ConfigInvalid

GOOD = """
[[schedule]]
name = "daily-audit"
cron = "0 9 * * *"
tz = "Europe/Berlin"
task = { title = "Security audit", type = "Audit", priority = 2 }

[[rules]]
name = "tests-on-change"
on = "file"
paths = ["src/**/*.py"]
debounce = "5s"
task = { title = "Run the tests for {changed}", type = "Test" }

[[rules]]
name = "on-failure"
on = "event"
topic = "finished"
filter = { outcome = "failure" }
task = { title = "Look at {event.task}" }

[[hooks]]
name = "ping"
on = ["finished:failure"]
webhook = "https://example.invalid/agentd"
secret = "${AGENTD_TEST_UNSET_SECRET}"
"""


def load(tmp_path: Path, text: str) -> config.Config:
    (tmp_path / "agentd.toml").write_text(text)
    return config.load(root=tmp_path, environ={})


def test_a_good_automation_config_loads(tmp_path: Path) -> None:
    """Schedules, rules and hooks are parsed; an unset ${NAME} in a hook does not stop the load."""
    cfg = load(tmp_path, GOOD)
    assert cfg.automation is not None
    assert [s.name for s in cfg.automation.schedules] == ["daily-audit"]
    assert [r.name for r in cfg.automation.rules] == ["tests-on-change", "on-failure"]
    assert cfg.automation.names() == ["daily-audit", "tests-on-change", "on-failure", "ping"]


def test_no_automation_tables_means_none(tmp_path: Path) -> None:
    """A config without them has no automation (agentd start starts no automation process)."""
    assert not load(tmp_path, "queue = 'Q.json'\n").automation


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("[[schedule]]\nname = 'a'\ncron = '0 9 * *'\ntask = { title = 't' }\n", "$.schedule[0].cron", "not a cron"),
        ("[[schedule]]\nname = 'a'\nevery = '5x'\ntask = { title = 't' }\n", "$.schedule[0].every", "not a duration"),
        (
            "[[schedule]]\nname = 'a'\nevery = '1h'\ntz = 'Mars/Olympus'\ntask = { title = 't' }\n",
            "$.schedule[0].tz",
            "unknown time zone",
        ),
        ("[[schedule]]\nname = 'a'\nevery = '1h'\ntask = { title = 't', id = 'x' }\n", "$.schedule[0].task.id", ""),
        (
            "[[schedule]]\nname = 'a'\nevery = '1h'\ntask = { title = 't', status = 'redy' }\n",
            "$.schedule[0].task.status",
            "not a status",
        ),
        (
            "[[schedule]]\nname = 'a'\nevery = '1h'\ntask = { title = 't', priority = 'high' }\n",
            "$.schedule[0].task.priority",
            "",
        ),
        ("[[schedule]]\nname = 'a'\nevery = '1h'\nwhen = 1\ntask = { title = 't' }\n", "$.schedule[0]", "when"),
        ("[[rules]]\nname = 'r'\non = 'file'\ntask = { title = 't' }\n", "$.rules[0].paths", ""),
        ("[[rules]]\nname = 'r'\non = 'event'\ntask = { title = 't' }\n", "$.rules[0].topic", ""),
        ("[[rules]]\nname = 'r'\non = 'timer'\ntask = { title = 't' }\n", "$.rules[0].on", ""),
        ("[[hooks]]\non = ['*']\ncommand = 'notify.sh'\n", "$.hooks[0].command", ""),
        ("[[hooks]]\non = ['*']\nwebhook = 'ftp://x'\n", "$.hooks[0].webhook", "http"),
        ("[[hooks]]\non = ['*']\ncommand = ['a']\nnotify = ['b://c']\n", "$.hooks[0].command", "exactly one"),
        (
            "[[schedule]]\nname = 'x'\nevery = '1h'\ntask = { title = 't' }\n"
            "[[rules]]\nname = 'x'\non = 'event'\ntopic = 'deployed'\ntask = { title = 't' }\n",
            "$.rules[0].name",
            "already the name of $.schedule[0]",
        ),
    ],
)
def test_a_bad_table_names_the_file_and_the_key_path(tmp_path: Path, text: str, where: str, reason: str) -> None:
    """Each mistake is one ConfigInvalid line: agentd.toml, the JSON path of the key, and why."""
    with pytest.raises(ConfigInvalid) as caught:
        load(tmp_path, text)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("agentd.toml: " + where) or line.startswith(str(tmp_path / "agentd.toml") + ": " + where), (
        line
    )
    assert reason in line
