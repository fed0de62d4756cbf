"""`python -m bench.rebuild_child SETTINGS_JSON`: one rebuild of every read model, measured.

Run in a process of its own, so its peak RSS is the rebuild's and nothing else's (with its
catch-up workers, `api.rebuild_workers`, counted in). Prints one JSON line: events, seconds, the
peak RSS (`ru_maxrss`) and RSS sampled along the way.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from typing import Any

from adapters.settings import Settings
from api.bootstrap import build_rebuild
from projections.rebuild import Progress

ALL = ["profile", "score", "segments"]
SAMPLE_SECONDS = 0.5
MARKS = (0.1, 0.25, 0.5, 0.75, 0.9)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    found += [int(child), *_descendants(int(child))]
        except OSError:
            continue
    return found


def rss_mb() -> float:
    """Resident set size now of this process and its worker processes (Linux /proc)."""
    total = 0
    for pid in [os.getpid(), *_descendants(os.getpid())]:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1])
        except OSError:
            continue  # a worker that just ended
    return total * resource.getpagesize() / 2**20


def peak_mb() -> float:
    """Peak RSS of this process plus the largest of its workers' (ru_maxrss: KiB on Linux):
    an upper bound of the sum when there is one worker per model group."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024


def main(argv: list[str]) -> int:
    given: dict[str, Any] = json.loads(argv[0])
    settings = Settings.from_env(
        {
            "DATABASE_URL": given["database_url"],
            "REDIS_URL": given["redis_url"],
            "PROFILES_REDIS_NAMESPACE": given["namespace"],
            "PROFILES_REBUILD_BATCH": str(given["batch"]),
            "PROFILES_REBUILD_GRACE_SECONDS": "0",
            "PROFILES_REBUILD_PROCESSES": str(given.get("processes", 1)),
        }
    )
    started = time.monotonic()
    samples: list[tuple[float, float, float]] = []  # (seconds, fraction built, RSS MB)
    at_marks: dict[str, float] = {}
    fraction = [0.0]

    def on_progress(p: Progress) -> None:
        fraction[0] = p.fraction
        for mark in MARKS:
            if p.phase == "building" and p.fraction >= mark and f"{mark:.0%}" not in at_marks:
                at_marks[f"{mark:.0%}"] = rss_mb()

    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            samples.append((time.monotonic() - started, fraction[0], rss_mb()))

    before = rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rebuild, close = build_rebuild(settings, ALL, on_progress)
    try:
        began = time.monotonic()
        result = rebuild.run()
        seconds = time.monotonic() - began
    finally:
        close()
        stop.set()
    if result is None:
        return 1
    at_marks["100%"] = rss_mb()
    print(
        json.dumps(
            {
                "events": result.events,
                "seconds": seconds,
                "rebuild_seconds": result.seconds,
                "rss_before_mb": before,
                "rss_at_mb": at_marks,
                "peak_rss_mb": max(peak_mb(), *(rss for _, _, rss in samples)),
                "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_rss_largest_worker_mb": (
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                ),
                "samples": samples,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
