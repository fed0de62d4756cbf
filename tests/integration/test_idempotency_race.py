"""Invariant 4: an eventId is stored once, even when two processes race to store it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COUNT = 400


def test_two_processes_racing_on_the_same_event_ids_store_each_once(
    settings: Settings, tmp_path: Path
) -> None:
    start = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.race_worker",
                str(settings.database_url),
                str(seed),
                str(COUNT),
                str(out),
                str(start),
            ],
            env=env,
        )
        for seed, out in zip((1, 2), outs, strict=True)
    ]
    time.sleep(2)  # both have imported and are spinning at the line
    start.touch()
    for w in workers:
        assert w.wait(timeout=120) == 0
    firsts = [json.loads(o.read_text())["firsts"] for o in outs]
    # Each eventId was new to exactly one of the two processes...
    assert sorted(firsts[0] + firsts[1]) == sorted(f"e-{i}" for i in range(COUNT))
    assert firsts[0] and firsts[1], "the processes did not overlap; the race was not run"
    # ...and the store holds each interaction once.
    with psycopg.connect(str(settings.database_url)) as conn:
        events = conn.execute(
            "SELECT count(*) FROM profiles_events WHERE topic LIKE %s", ("%InteractionRecorded",)
        ).fetchone()
        claims = conn.execute("SELECT count(*) FROM profiles_interaction_ids").fetchone()
    assert events == claims == (COUNT,)
