"""Optional profiles (`--profile`): py-spy samples a process while a block of the run goes on.

Samples include waiting (`--idle`), so a thread that waits on Postgres shows where it waits;
threads parked on a queue, lock or event are left out of the summary. Profiling slows what it
watches: a profiled run's figures are not comparable with others.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.common import say

TOP_INCLUSIVE = 30
TOP_OWN = 15
PARKED = {
    "Condition.wait",
    "Event.wait",
    "Thread.join",
    "Thread._wait_for_tstate_lock",
    "Queue.get",
    "_Worker._serve",  # a bench worker waiting for its next call
}
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<id>\w+)\): ?(?P<name>.*)$")


def py_spy() -> str | None:
    return os.environ.get("BENCH_PY_SPY") or shutil.which("py-spy")


@contextlib.contextmanager
def sampled(enabled: bool, pid: int, out: Path) -> Iterator[None]:
    """py-spy on `pid` while the block runs: raw stacks at `out`, a summary beside it (.txt)."""
    binary = py_spy() if enabled else None
    if enabled and binary is None:
        say("profile: py-spy not found (pip install py-spy, or set BENCH_PY_SPY); skipped")
    if binary is None:
        yield
        return
    command = [binary, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    command += ["--idle", "--threads", "--nonblocking", "--output", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        if out.exists():
            summary = out.with_suffix(".txt")
            summary.write_text(summarise(out.read_text()))
            say(f"profile: {summary}")
        else:
            say(f"profile: py-spy wrote nothing (exit {process.returncode}; ptrace allowed?)")


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/"):
        path = path.split(marker, 1)[-1]
    return f"{match['func']} ({path})"


def summarise(text: str) -> str:
    """Per busy thread: functions by samples with them on the stack, and by own samples."""
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        first, *rest = stack.split(";")
        match = _THREAD.match(first)
        thread = f"{match['name'] or '?'} ({match['id']})" if match else "?"
        frames = [_name(f) for f in (rest if match else [first, *rest])]
        if not frames or frames[-1].split(" (")[0] in PARKED:
            continue
        count = int(count_text)
        totals[thread] += count
        own[thread][frames[-1]] += count
        for name in set(frames):
            inclusive[thread][name] += count
    lines = ["py-spy --idle: wall-clock samples per thread (parked threads left out)"]
    busiest = max(totals.values(), default=0)
    for thread, total in totals.most_common():
        if total < busiest * 0.05:
            continue
        lines += ["", f"== thread {thread}: {total} samples", "-- with the function on the stack:"]
        lines += [f"{n / total:7.1%}  {f}" for f, n in inclusive[thread].most_common(TOP_INCLUSIVE)]
        lines += ["-- own (the function itself, or what it waits on):"]
        lines += [f"{n / total:7.1%}  {f}" for f, n in own[thread].most_common(TOP_OWN)]
    return "\n".join(lines) + "\n"
