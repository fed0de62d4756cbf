"""A rebuild's first pass reads the history stream by stream with the segment definitions as
they stand at its end (`projections.stream_build`). A clean build in store order meets the
definitions as they came: some after profiles existed (back-filled), one changed, one retired.
Both must end the same."""

from __future__ import annotations

import uuid
from dataclasses import replace

import redis

from adapters.settings import Settings
from adapters.store_config import build_application
from api.bootstrap import build_rebuild
from domain.application import utc_now
from domain.segment import DefineSegment
from tests.integration.readmodels import by_version, dump, rebuild
from tests.integration.rebuilds import ALL, fixed_clock, seed
from tests.integration.test_projection_invariants import run_commands

LATE = {"id": "late", "name": "Late", "rule": {"event": {"type": "purchase"}}}
CHANGED = {
    "id": "viewers",
    "name": "Viewers",
    "rule": {"event": {"type": "page_view", "atLeast": 3, "within": "P30D"}},
}


def test_definitions_that_changed_during_the_history_rebuild_as_a_clean_build(
    settings: Settings,
) -> None:
    app = build_application(settings, utc_now)
    try:
        seed(app, 40)
        run_commands(app, seed=11, count=1_500)
        app.define_segment(DefineSegment.parse(LATE, field="input"))  # profiles exist already
        app.define_segment(DefineSegment.parse(CHANGED, field="input"))
        run_commands(app, seed=12, count=1_000)
        app.retire_segment("buyers")
        run_commands(app, seed=13, count=500)
    finally:
        app.close()
    clock = fixed_clock()
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)

    job, close = build_rebuild(replace(settings, rebuild_grace_seconds=0), ALL, clock=clock)
    try:
        assert job.run() is not None
    finally:
        close()
    clean_ns = f"clean{uuid.uuid4().hex[:8]}:"
    rebuild(settings, clean_ns, clock)
    ours = by_version(dump(client, settings.redis_namespace), schedule=False)
    clean = by_version(dump(client, clean_ns), schedule=False)
    members = {k: v for k, v in clean.items() if k.startswith("segments:v*:members:")}
    assert any(k.endswith(":late") for k in members) and members  # the late rule has members
    assert not any(k.endswith(":buyers") for k in members)  # the retired one has none
    # The back-fill of "late" replayed erased customers' events: their facts stay dropped.
    assert all(v["cid"] for k, v in clean.items() if k.startswith("segments:v*:facts:"))
    assert ours == clean
