"""The one place that wires the service together from Settings."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence

import redis
import redis.asyncio as aioredis

from adapters import deadlines
from adapters.collector import tune_for_services
from adapters.persisted_store import RedisPersistedQueries
from adapters.settings import Settings
from adapters.store_config import build_application
from adapters.store_wait import WhenReachable, postgres_store
from adapters.telemetry import Telemetry
from adapters.wakeup import PostgresWakeup
from api.context import CommandBus, EventStore, Services
from api.persisted_queries import MAX_DOCUMENTS
from api.rebuild_workers import share_workers
from domain.application import ProfileApplication, utc_now
from domain.batch import Outcome
from domain.commands import Command
from domain.group_commit import Execute, GroupCommitter
from domain.ports import Clock
from projections import profile, score, segments
from projections.catalog import Catalog, ModelFactory
from projections.profile import ProfileKeys, ProfileReadModel
from projections.profile_queries import ProfileQueries
from projections.rebuild import BuildShares, ProgressObserver, Rebuild
from projections.runner import Health, Projector
from projections.score import ScoreKeys, ScoreReadModel
from projections.segment_queries import SegmentQueries
from projections.segments import SegmentKeys, SegmentsReadModel
from projections.status import StatusReader, TrackedModel
from projections.versions import VersionPointer

ROLES = ("commands", "query", "audit")
# The name the query side's Redis connections give themselves (CLIENT SETNAME).
QUERY_CLIENT_NAME = "profiles-query"


def read_model_factories(
    settings: Settings, clock: Clock, client: redis.Redis
) -> dict[str, ModelFactory]:
    """Each read model by name, built for a given version of its keys."""
    namespace, scoring = settings.redis_namespace, settings.score_model
    return {
        profile.NAME: lambda v, live: ProfileReadModel(ProfileKeys(namespace, v)),
        score.NAME: lambda v, live: ScoreReadModel(ScoreKeys(namespace, v), scoring, clock),
        segments.NAME: lambda v, live: SegmentsReadModel(
            SegmentKeys(namespace, v), scoring, clock, client, publishing=live
        ),
    }


def build_catalog(settings: Settings, clock: Clock, client: redis.Redis) -> Catalog:
    factories = read_model_factories(settings, clock, client)
    return Catalog(factories, VersionPointer(client, settings.redis_namespace))


def _tracked(settings: Settings) -> list[TrackedModel]:
    namespace = settings.redis_namespace
    return [
        TrackedModel(profile.NAME, lambda v: ProfileKeys(namespace, v).tracking),
        TrackedModel(score.NAME, lambda v: ScoreKeys(namespace, v).tracking),
        TrackedModel(segments.NAME, lambda v: SegmentKeys(namespace, v).tracking),
    ]


def build_services(
    settings: Settings, roles: set[str], telemetry: Telemetry, clock: Clock = utc_now
) -> Services:
    services = Services(settings=settings, clock=clock, telemetry=telemetry)
    tune_for_services()
    if "commands" in roles:
        writer = event_store(settings, lambda: build_application(settings, clock))
        units = telemetry.group_commit_units

        def observe(n_units: int, n_commands: int) -> None:
            units.record(n_units)

        def committer(app: ProfileApplication) -> GroupCommitter:
            execute = _counting(app, telemetry)
            return GroupCommitter(execute, max_commands=settings.group_commit_max, on_batch=observe)

        services.commands = CommandBus(writer, committer)
        services.probes["postgres"] = writer.check
        # The committer first: it may be storing a batch with the application's pool.
        services.closers += [services.commands.close, writer.close]
    if "query" in roles:
        # Bounded, and a read waits for a free connection (within the deadline) rather than
        # open more: 2,000 concurrent reads once took every connection Redis would give.
        pool = aioredis.BlockingConnectionPool.from_url(
            str(settings.redis_url),
            decode_responses=True,
            max_connections=settings.limits.redis_connections,
            timeout=settings.deadline_seconds,
            # A frozen server answers nothing: a read gives up at the deadline, as a
            # command does (redis-py's own default waited 5 s, whatever the deadline).
            socket_timeout=settings.deadline_seconds,
            socket_connect_timeout=settings.deadline_seconds,
            client_name=QUERY_CLIENT_NAME,  # CLIENT LIST tells them from the projector's
        )
        client = aioredis.Redis(connection_pool=pool)
        namespace = settings.redis_namespace
        services.profiles = ProfileQueries(client, namespace, settings.score_model, clock)
        services.segments = SegmentQueries(client, namespace)
        services.status = StatusReader(
            client, namespace, _tracked(settings), clock, settings.projection_stalled_seconds
        )
        services.persisted = RedisPersistedQueries(client, namespace, MAX_DOCUMENTS)
        services.closers += [client.aclose, pool.disconnect]
        services.probes["redis"] = client.ping
    if "audit" in roles:
        reader = event_store(settings, lambda: build_application(settings, clock, cache=False))
        services.audit = reader
        services.probes.setdefault("postgres", reader.check)
        services.closers.append(reader.close)
    return services


def event_store(settings: Settings, build: Callable[[], ProfileApplication]) -> EventStore:
    """An application on the event store, built as soon as Postgres answers (it may be down
    when the service starts), reached within the request deadline. The probe (a plain
    connection) comes first: a failed build would leave the library's pool behind, still
    trying to connect in the background."""
    store = postgres_store(str(settings.database_url))
    return EventStore(
        WhenReachable(store, build, ProfileApplication.close), settings.deadline_seconds
    )


def _counting(app: ProfileApplication, telemetry: Telemetry) -> Execute:
    """Executes units in one transaction, within the deadline of the soonest, counting the
    events they appended."""

    def execute(units: Sequence[Sequence[Command]], deadline: float | None) -> list[Outcome]:
        before = app.events_written
        with telemetry.span("event_store.append", units=len(units)), deadlines.within(at=deadline):
            outcomes = app.execute(units)
        telemetry.events_appended.add(app.events_written - before)
        return outcomes

    return execute


def build_projector(
    settings: Settings, telemetry: Telemetry, clock: Clock = utc_now, health: Health | None = None
) -> tuple[Projector, ProfileApplication, PostgresWakeup]:
    """Keeps the serving version of each read model live (a rebuild may switch it).
    The reader application is returned so the caller keeps it (and its pool) alive.
    Raises when a store does not answer: `api.projector_job` waits for them first."""
    reader = build_application(settings, utc_now, cache=False)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)
    batch = telemetry.projection_batch

    def observe(name: str, events: int, seconds: float) -> None:
        batch.record(events, {"read_model": name})

    try:
        projector = Projector(
            reader.recorder,
            reader.mapper,
            client,
            build_catalog(settings, clock, client).serving,
            batch_size=settings.projection_batch,
            on_batch=observe,
            span=telemetry.span,
            clock=clock,
            health=health,
        )
    except Exception:
        reader.close()
        client.close()
        raise
    telemetry.watch_projections(
        lambda: {n: (s.position, s.head, s.lag_seconds) for n, s in projector.status.items()}
    )
    assert settings.database_url is not None
    return projector, reader, PostgresWakeup(settings.database_url)


def build_rebuild(
    settings: Settings,
    names: Sequence[str],
    on_progress: ProgressObserver | None = None,
    clock: Clock = utc_now,
    shares: BuildShares | None = None,
) -> tuple[Rebuild, Callable[[], None]]:
    """A rebuild of the named read models, and what closes its connections; its stream
    pass's shares go to worker processes (`share_workers`) unless `shares` says otherwise."""
    # The stream pass reads each stream once: keys for the pages in flight suffice.
    keys = 2 * settings.rebuild_batch
    reader = build_application(settings, utc_now, cache=False, key_cache=keys)
    client = redis.Redis.from_url(str(settings.redis_url), decode_responses=True)

    def close() -> None:
        reader.close()
        client.close()

    # The clock goes to the worker processes by pickling: an injected closure (a test's fixed
    # clock) cannot, and such a rebuild builds its shares one after another in this process.
    if shares is None and settings.rebuild_processes > 1 and _picklable(clock):
        shares = share_workers(settings, clock)
    try:
        rebuild = Rebuild(
            reader.recorder,
            reader.mapper,
            client,
            build_catalog(settings, clock, client),
            names,
            batch_size=settings.rebuild_batch,
            grace_seconds=settings.rebuild_grace_seconds,
            on_progress=on_progress,
            processes=settings.rebuild_processes,
            shares=shares,
        )
    except LookupError:
        close()
        raise

    return rebuild, close


def _picklable(value: object) -> bool:
    try:
        pickle.dumps(value)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True
