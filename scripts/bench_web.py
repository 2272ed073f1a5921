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
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "scripts"))

from bench import (  # noqa: E402
    Cleanup,
    builder_role,
    make_queue,
    realistic_task,
    rss_kb,
    start_daemon,
    store_for,
    wait_exec,
    wait_started,
    wait_status,
    write_config,
    write_json,
)

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


def stop_web(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def stream(url: str, path: str, stop: threading.Event) -> None:
    """Read an SSE stream until told to stop (what an open page does)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
    conn.request("GET", path)
    response = conn.getresponse()
    while not stop.is_set():
        try:
            response.readline()
        except TimeoutError:
            continue
        except OSError:
            return
    conn.close()


def pickup(samples: int, with_page: bool) -> float:
    """Median s from a task added to its command starting, a builder at --interval 60, with or without a page open
    on `agentd web` streaming the board and the journal."""
    cleanup = Cleanup()
    web = None
    stop = threading.Event()
    readers: list[threading.Thread] = []
    try:
        root = cleanup.folder("web-latency")
        write_config(root, builder_role(["true"]), defaults={"interval": 60})
        write_json(root / "SPRINT_QUEUE.json", {"wip_limits": {"builder": 8}, "tasks": []})
        store = store_for(root)
        proc = start_daemon(cleanup, root, "builder", "--interval", "60")
        wait_started(root, proc, settle=0.5)
        if with_page:
            web, url = start(root)
            for path in ("/stream/changes", "/stream/events", "/stream/changes"):
                reader = threading.Thread(target=stream, args=(url, path, stop), daemon=True)
                reader.start()
                readers.append(reader)
        times = []
        for i in range(samples):
            task_id = f"L{i:05d}"
            store.transaction(lambda doc, i=i: doc["tasks"].append(realistic_task(i, prefix="L")))
            added = time.time()
            times.append(wait_exec(root, task_id, proc) - added)
            wait_status(root, task_id, {"awaiting_test"})
            if with_page:
                get(url, "/")  # the page refreshes its board after each change
            time.sleep(0.15)
        return statistics.median(times)
    finally:
        stop.set()
        if web is not None:
            stop_web(web)
        for reader in readers:
            reader.join(timeout=5)
        cleanup.close()


def measure(repeat: int, samples: int) -> list[tuple[str, str, str, str]]:
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
            stop_web(proc)
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
            stop_web(proc)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    plain = pickup(samples, with_page=False)
    watched = pickup(samples, with_page=True)
    rows.append(("pickup latency, no page open", f"{plain * 1000:.0f} ms median of {samples}", "", ""))
    rows.append(
        (
            "pickup latency, a page open on `agentd web` (3 streams, board fetched after each change)",
            f"{watched * 1000:.0f} ms median of {samples}",
            "unchanged",
            "ok" if watched < plain * 1.5 + 0.01 else "MISSED",
        )
    )
    return rows


def render(rows: list[tuple[str, str, str, str]], load: tuple[float, float]) -> str:
    lines = [
        "# Dashboard benchmarks",
        "",
        "Measured by `scripts/bench_web.py` (part of `make bench`): a real `agentd web --read-only` process, requests "
        "timed over HTTP on this machine.",
        "",
        f"Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} on {os.cpu_count()} CPUs; "
        "a load above the CPU count (other work on the machine) slows every figure.",
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
    parser.add_argument("--samples", type=int, default=15, help="pickup latency samples, with and without a page")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    rows = measure(args.repeat, args.samples)
    text = render(rows, (before, os.getloadavg()[0]))
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    print(text, end="")
    print(json.dumps({"ok": "MISSED" not in text}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
