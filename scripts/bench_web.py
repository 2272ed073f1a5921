#!/usr/bin/env python3
"""The dashboard's share of `make bench`: RSS of an idle `agentd web`, and the time to render the board, /metrics
and /api/status for a 10,000-task queue (a real `agentd web` process, timed over HTTP from this process).

    .venv/bin/python scripts/bench_web.py                      # print the rows
    .venv/bin/python scripts/bench_web.py --write docs/benchmarks-web.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "scripts"))

from bench import make_queue, rss_kb, write_json  # noqa: E402

IDLE_RSS_MB = 60.0
BOARD_S = 1.0
SIZE = 10_000


def start(root: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("AGENTD_ROOT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentd", "web", "--port", "0", "--read-only"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"on (http://\S+)", proc.stdout.readline())
    if match is None:
        proc.kill()
        raise SystemExit("agentd web did not start")
    return proc, match.group(1)


def get(url: str, path: str) -> tuple[float, int]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    began = time.perf_counter()
    conn.request("GET", path)
    body = conn.getresponse().read()
    took = time.perf_counter() - began
    conn.close()
    return took, len(body)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def measure(repeat: int) -> list[tuple[str, str, str, str]]:
    rows = []
    base = Path(tempfile.mkdtemp(prefix="agentd-bench-web-"))
    try:
        small = base / "small"
        small.mkdir()
        write_json(small / "SPRINT_QUEUE.json", make_queue(10))
        proc, url = start(small)
        try:
            get(url, "/")
            time.sleep(2.0)  # idle: nothing asked of it
            idle = rss_kb(proc.pid) / 1024
        finally:
            stop(proc)
        rows.append(
            (
                "idle `agentd web` (10 tasks, one page served)",
                f"{idle:.1f} MB RSS",
                f"< {IDLE_RSS_MB:.0f} MB",
                "ok" if idle < IDLE_RSS_MB else "MISSED",
            )
        )
        big = base / "big"
        big.mkdir()
        write_json(big / "SPRINT_QUEUE.json", make_queue(SIZE, ready=SIZE // 2))
        proc, url = start(big)
        try:
            for path, what in (("/", "board page"), ("/metrics", "/metrics"), ("/api/status", "/api/status")):
                get(url, path)  # the first read fills the store's cache, as a long-running server's would
                times = []
                size = 0
                for _ in range(repeat):
                    took, size = get(url, path)
                    times.append(took)
                median = statistics.median(times)
                target = f"< {BOARD_S:g} s" if path == "/" else ""
                verdict = ("ok" if median < BOARD_S else "MISSED") if path == "/" else ""
                rows.append(
                    (
                        f"{what}, {SIZE:,} tasks ({size / 1e6:.1f} MB of HTML/text)",
                        f"{median * 1000:.0f} ms median of {repeat}",
                        target,
                        verdict,
                    )
                )
            rows.append((f"`agentd web` after serving {SIZE:,} tasks", f"{rss_kb(proc.pid) / 1024:.1f} MB RSS", "", ""))
        finally:
            stop(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows


def render(rows: list[tuple[str, str, str, str]]) -> str:
    lines = [
        "# Dashboard benchmarks",
        "",
        "Measured by `scripts/bench_web.py` (part of `make bench`): a real `agentd web --read-only` process, requests "
        "timed over HTTP on this machine.",
        "",
        "| what | measured | target | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", type=Path, help="write the table to this Markdown file")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = render(measure(args.repeat))
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    print(text, end="")
    print(json.dumps({"ok": "MISSED" not in text}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
