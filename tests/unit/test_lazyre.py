"""Regular expressions on the CLI's path are compiled on first use (agentd.core.lazyre), and then behave as compiled."""

from __future__ import annotations

import re
import subprocess
import sys

from agentd.core.lazyre import LazyPattern


def test_a_lazy_pattern_answers_as_the_compiled_one() -> None:
    """match, fullmatch, search, sub, finditer, findall and split give what re.compile's pattern gives."""
    text = "a1 b22\nc333"
    lazy, compiled = LazyPattern(r"^(\w)(\d+)", re.MULTILINE), re.compile(r"^(\w)(\d+)", re.MULTILINE)
    assert lazy.match(text).group(2) == compiled.match(text).group(2)  # type: ignore[union-attr]
    assert lazy.fullmatch("x9") is not None and lazy.fullmatch("x9\n") is None
    assert lazy.search(text, 3).span() == compiled.search(text, 3).span()  # type: ignore[union-attr]
    assert lazy.sub(r"\2", text) == compiled.sub(r"\2", text)
    assert [m.span() for m in lazy.finditer(text)] == [m.span() for m in compiled.finditer(text)]
    assert lazy.findall(text) == compiled.findall(text) and lazy.split(text) == compiled.split(text)
    assert lazy.pattern == r"^(\w)(\d+)"


def test_a_bad_pattern_fails_on_first_use_and_an_unknown_name_is_an_attribute_error() -> None:
    """An invalid pattern raises re.error when first used; a name no pattern method has raises AttributeError."""
    bad = LazyPattern("(")
    try:
        bad.match("x")
    except re.error:
        pass
    else:
        raise AssertionError("an invalid pattern was used without an error")
    try:
        LazyPattern("x").groupindex  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown name was answered")


def test_importing_the_queue_modules_compiles_no_regex() -> None:
    """Importing the CLI's queue path (config, model, validation, the queue file's reader and writer) compiles none of
    agentd's regular expressions: each is compiled when a command first needs it."""
    probe = (
        "import re, sys\n"
        "seen = []\n"
        "real = re.compile\n"
        "def spy(pattern, flags=0):\n"
        "    caller = sys._getframe(1).f_globals.get('__name__', '')\n"
        "    if caller.startswith('agentd'):\n"
        "        seen.append((caller, pattern))\n"
        "    return real(pattern, flags)\n"
        "re.compile = spy\n"
        "import agentd.config, agentd.core.edits, agentd.store.file.store, agentd.store.file.jsonedit, agentd.schema\n"
        "print(seen)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
