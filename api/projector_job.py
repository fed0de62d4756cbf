"""The projector as a job that outlives its stores' outages: it starts whether or not Postgres
and Redis answer, waits for them (`adapters.store_wait`), then follows the event store until
stopped, retrying a failed pass. `profiles project` runs it in its main thread; `serve
--project` and `dev` in a thread beside the API (`start_projector`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.settings import Settings
from adapters.store_wait import MAX_DELAY, await_store, describe, postgres_store, redis_store
from adapters.telemetry import Telemetry
from adapters.wakeup import PostgresWakeup
from api.bootstrap import build_projector
from api.health_http import Readiness
from domain.application import ProfileApplication, utc_now
from domain.ports import Clock
from projections.runner import Health, Projector

logger = logging.getLogger("profiles")


def run_projector(
    settings: Settings,
    telemetry: Telemetry,
    stop: threading.Event,
    clock: Clock = utc_now,
    health: Health | None = None,
    on_built: Callable[[Projector], None] | None = None,
) -> None:
    """Waits for the stores, then follows them until `stop` (which may come first).
    `on_built` hears of the projector once both stores have answered."""
    health = health or Health()
    parts = _build(settings, telemetry, clock, stop, health)
    if parts is None:
        return
    projector, reader, wakeup = parts
    if on_built is not None:
        on_built(projector)
    logger.info("projector following the event store")
    try:
        projector.run(stop, wakeup, settings.projection_poll_seconds)
    finally:
        wakeup.close()
        reader.close()


def _build(
    settings: Settings,
    telemetry: Telemetry,
    clock: Clock,
    stop: threading.Event,
    health: Health,
) -> tuple[Projector, ProfileApplication, PostgresWakeup] | None:
    assert settings.database_url is not None and settings.redis_url is not None
    stores = [postgres_store(settings.database_url), redis_store(settings.redis_url)]
    while not stop.is_set():
        if not all(await_store(store, stop, health.trouble) for store in stores):
            return None
        try:
            return build_projector(settings, telemetry, clock, health)
        except Exception as error:
            # A store that went away between its probe and the build: wait for both again.
            line = f"building the projector: {describe(error)}"
            logger.warning("%s; waiting for its stores again", line)
            health.trouble(line)
            stop.wait(MAX_DELAY)
    return None


def readiness(health: Health, settings: Settings) -> Readiness:
    """The projector's /readyz: ready while it follows the store; not while it waits for a
    store, fails a pass, or has not got on for as long as the query side calls stalled."""
    bound = settings.projection_stalled_seconds
    return lambda: {"projector": health.problem(bound) or "ok"}


@dataclass
class ProjectorHandle:
    """A projector in a thread of the API's process (`serve --project`, `dev`)."""

    stop: threading.Event = field(default_factory=threading.Event)
    health: Health = field(default_factory=Health)
    thread: threading.Thread | None = None
    _built: threading.Event = field(default_factory=threading.Event)
    _projector: Projector | None = None

    def wait_built(self, timeout: float = 30.0) -> Projector:
        """The running projector, once its stores have answered."""
        if not self._built.wait(timeout) or self._projector is None:
            raise TimeoutError(f"the projector is still waiting: {self.health.problem(0)}")
        return self._projector

    def built(self, projector: Projector) -> None:
        self._projector = projector
        self._built.set()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def start_projector(
    settings: Settings, telemetry: Telemetry, clock: Clock = utc_now
) -> ProjectorHandle:
    """Starts at once, whether or not the stores answer: the API beside it neither waits nor
    fails for them."""
    handle = ProjectorHandle()

    def follow() -> None:
        try:
            run_projector(settings, telemetry, handle.stop, clock, handle.health, handle.built)
        except Exception:
            logger.exception("the projector stopped on an error")

    handle.thread = threading.Thread(target=follow, name="projector", daemon=True)
    handle.thread.start()
    return handle
