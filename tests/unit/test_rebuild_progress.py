"""How a rebuild shows its progress, and the pointer's parsing; no I/O."""

from __future__ import annotations

import io

import pytest

from api.rebuild_cli import ProgressDisplay
from projections.rebuild import Progress
from projections.versions import ModelVersions, glob, parse_pointer


def progress(phase: str, position: int, seconds: float = 10.0, start: int = 0) -> Progress:
    return Progress(("profile", "score"), (2, 3), phase, start, position, 1_000_000, seconds)


def test_rate_and_eta_count_only_this_runs_events() -> None:
    p = progress("building", 400_000, seconds=10.0, start=200_000)
    assert p.done == 200_000
    assert p.rate == 20_000
    assert p.eta_seconds == pytest.approx(30.0)
    assert p.fraction == pytest.approx(0.4)
    assert progress("building", 0, seconds=0.0).eta_seconds is None


def test_a_terminal_gets_one_bar_redrawn_in_place() -> None:
    out = io.StringIO()
    show = ProgressDisplay(out, terminal=True)
    show(progress("building", 250_000))
    show(progress("building", 500_000))
    show(progress("switching", 1_000_000))
    text = out.getvalue()
    assert text.count("\r") == 2
    assert "[###############...............]  50%" in text
    assert "500,000/1,000,000 events  50,000 events/s  ETA 0:00:10" in text
    assert "profile v2, score v3" in text
    assert text.endswith("\nprofile v2, score v3: switching at position 1,000,000\n")


def test_a_log_gets_a_line_every_few_seconds_not_every_page() -> None:
    out = io.StringIO()
    show = ProgressDisplay(out, terminal=False)
    for position in range(10_000, 100_000, 10_000):
        show(progress("building", position))
    show(progress("done", 1_000_000))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first page, then the end: pages within 5 s are not logged
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("profile v2, score v3: building 1% 10,000/1,000,000 events")
    assert lines[1] == "profile v2, score v3: done at position 1,000,000"


def test_the_pointer_defaults_to_the_first_version() -> None:
    assert parse_pointer({}, "profile") == ModelVersions(serving=1)
    fields = {"profile": "3", "profile:building": "4", "profile:retired": "2", "score": "7"}
    assert parse_pointer(fields, "profile") == ModelVersions(3, 4, 2)


def test_key_patterns_take_the_namespace_literally() -> None:
    assert glob("t1:profile:v2:") == "t1:profile:v2:*"
    assert glob("a*b?[c]\\:") == "a\\*b\\?\\[c\\]\\\\:*"
