"""Configuration: the one place that reads the process environment.

Everything else receives a `Settings` value. Each field names its variable, so an operator can
find a knob from an error message, and a wrong value fails at start with the variable named.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from domain.consent import ConsentModel
from domain.errors import InvalidInput
from domain.rules import parse_duration
from domain.score import DEFAULT_WEIGHTS, ScoreModel

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


class ConfigurationError(ValueError):
    """A configuration variable holds a value the service cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ConfigurationError(f"{name}={value} must be a number of seconds above 0")
    return value


@dataclass(frozen=True)
class RateLimit:
    """An API key's allowance: `rate` requests a second on average, `burst` at once."""

    rate: float
    burst: int


_KEYS_SYNTAX = (
    "'KEY:ROLE[|ROLE...][;rate=R][;burst=B]' (ROLE one of commands, query, audit, all; "
    "R requests per second, B requests at once, default R rounded up)"
)


def _api_keys(raw: str) -> tuple[dict[str, frozenset[str]], dict[str, RateLimit]]:
    """`key:role[|role...][;rate=R][;burst=B],key2:role` -> ({key: roles}, {key: limit})."""
    keys: dict[str, frozenset[str]] = {}
    limits: dict[str, RateLimit] = {}
    allowed = {"commands", "query", "audit", "all"}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, rest = item.partition(":")
        key = key.strip()
        if not sep or not key:
            raise ConfigurationError(
                f"PROFILES_API_KEYS entry {item!r} must look like {_KEYS_SYNTAX}"
            )
        # Never echo a key whole: the message may end up in a log.
        shown = f"for key ending {key[-4:]!r}"
        roles, *params = rest.split(";")
        role_set = frozenset(r.strip() for r in roles.split("|") if r.strip())
        unknown = role_set - allowed
        if unknown or not role_set:
            raise ConfigurationError(
                f"PROFILES_API_KEYS entry {shown} has unknown role(s) "
                f"{sorted(unknown) or '(none)'}; use commands, query, audit or all"
            )
        keys[key] = frozenset(allowed) if "all" in role_set else role_set
        limit = _rate_limit(params, shown)
        if limit is not None:
            limits[key] = limit
    return keys, limits


def _rate_limit(params: list[str], shown: str) -> RateLimit | None:
    values: dict[str, str] = {}
    for param in params:
        name, sep, value = (p.strip() for p in param.partition("="))
        if not sep or name not in {"rate", "burst"} or name in values:
            raise ConfigurationError(
                f"PROFILES_API_KEYS entry {shown} has {param.strip()!r}; "
                f"an entry looks like {_KEYS_SYNTAX}"
            )
        values[name] = value
    if not values:
        return None
    if "rate" not in values:
        raise ConfigurationError(f"PROFILES_API_KEYS entry {shown} has a burst but no rate=R")
    try:
        rate = float(values["rate"])
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ConfigurationError(
            f"PROFILES_API_KEYS entry {shown} has rate={values['rate']!r}; "
            "send requests per second above 0, like rate=50 or rate=0.5"
        )
    burst = max(1, math.ceil(rate))
    if "burst" in values:
        try:
            burst = int(values["burst"])
        except ValueError:
            burst = 0
        if burst < 1:
            raise ConfigurationError(
                f"PROFILES_API_KEYS entry {shown} has burst={values['burst']!r}; "
                "send a whole number of requests of at least 1, like burst=100"
            )
    return RateLimit(rate=rate, burst=burst)


@dataclass(frozen=True)
class RequestLimits:
    """What one request may cost, refused before it runs (BAD_USER_INPUT with
    `extensions.limit` naming the field below; a body over `body_bytes` is HTTP 413)."""

    body_bytes: int = 1_048_576  # PROFILES_MAX_BODY_BYTES (also a GET's URL parameters)
    # PROFILES_MAX_TOKENS: lexical tokens of a document, checked while parsing, so that a
    # document of a million fields is refused before its syntax tree is built. Parsing holds
    # the event loop (20,000 tokens took 117 ms); hand-written queries take a few hundred, the
    # standard introspection query about 1,000; values belong in variables.
    tokens: int = 10_000
    # PROFILES_MAX_DEPTH: nested selection sets, fragments followed; the standard introspection
    # query (GraphiQL's) nests 15 deep.
    depth: int = 15
    aliases: int = 100  # PROFILES_MAX_ALIASES
    fields: int = 1_000  # PROFILES_MAX_FIELDS: selections, counted once per fragment use
    # PROFILES_MAX_COST: the values an answer may hold: each field once per object it is
    # resolved for, a list field's objects counted at its `first` or ids (see api/documents).
    cost: int = 100_000
    # PROFILES_REQUEST_CONNECTIONS: Redis connections one query request may hold at once;
    # its other reads wait for one of them, and other requests are not starved.
    request_connections: int = 4
    # PROFILES_REDIS_MAX_CONNECTIONS: the query side's Redis connections in all; a read that
    # finds none free within the deadline answers UNAVAILABLE.
    redis_connections: int = 64
    # PROFILES_DOCUMENT_CACHE_BYTES: parsed and validated documents kept, per schema, by an
    # estimate of their syntax trees' size (api/documents.py).
    document_cache_bytes: int = 16_777_216

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RequestLimits:
        d = cls()
        return cls(
            body_bytes=_int(env, "PROFILES_MAX_BODY_BYTES", d.body_bytes, minimum=1_024),
            tokens=_int(env, "PROFILES_MAX_TOKENS", d.tokens, minimum=100),
            depth=_int(env, "PROFILES_MAX_DEPTH", d.depth, minimum=2),
            aliases=_int(env, "PROFILES_MAX_ALIASES", d.aliases, minimum=0),
            fields=_int(env, "PROFILES_MAX_FIELDS", d.fields, minimum=10),
            cost=_int(env, "PROFILES_MAX_COST", d.cost, minimum=10),
            request_connections=_int(
                env, "PROFILES_REQUEST_CONNECTIONS", d.request_connections, minimum=1
            ),
            redis_connections=_int(
                env, "PROFILES_REDIS_MAX_CONNECTIONS", d.redis_connections, minimum=1
            ),
            document_cache_bytes=_int(
                env, "PROFILES_DOCUMENT_CACHE_BYTES", d.document_cache_bytes, minimum=0
            ),
        )


def _score_model(env: Mapping[str, str]) -> ScoreModel:
    weights = dict(DEFAULT_WEIGHTS)
    for item in filter(None, (p.strip() for p in env.get("PROFILES_SCORE_WEIGHTS", "").split(","))):
        kind, sep, raw = item.partition("=")
        try:
            if not sep or not kind.strip():
                raise ValueError
            weights[kind.strip()] = float(raw)
        except ValueError:
            raise ConfigurationError(
                f"PROFILES_SCORE_WEIGHTS entry {item!r} must look like 'purchase=10'"
            ) from None
    try:
        half_life = parse_duration(env.get("PROFILES_SCORE_HALF_LIFE", "P7D"), "half-life")
    except InvalidInput as error:
        raise ConfigurationError(f"PROFILES_SCORE_HALF_LIFE: {error.message}") from None
    default = _float(env, "PROFILES_SCORE_DEFAULT_WEIGHT", 1.0)
    return ScoreModel(half_life=half_life, weights=weights, default_weight=default)


@dataclass(frozen=True)
class KafkaSettings:
    """Topics and knobs of `profiles ingest` and `profiles relay` (the broker address is
    KAFKA_BOOTSTRAP_SERVERS, on Settings)."""

    interactions_topic: str = "interactions"  # PROFILES_KAFKA_INTERACTIONS_TOPIC
    dlq_topic: str = "interactions.dlq"  # PROFILES_KAFKA_DLQ_TOPIC (default: <interactions>.dlq)
    events_topic: str = "profile-events"  # PROFILES_KAFKA_EVENTS_TOPIC
    segment_changes_topic: str = "segment-changes"  # PROFILES_KAFKA_SEGMENT_CHANGES_TOPIC
    group_id: str = "profiles-ingest"  # PROFILES_KAFKA_GROUP_ID
    ingest_batch: int = 2_000  # PROFILES_INGEST_BATCH (messages per Postgres transaction)
    # PROFILES_INGEST_PROCESSES: consumers `profiles ingest` runs, one process each (one GIL
    # each); they share the topic's partitions as one consumer group.
    ingest_processes: int = 2
    max_message_bytes: int = 65_536  # PROFILES_INGEST_MAX_MESSAGE_BYTES (larger: dead-lettered)
    relay_batch: int = 1_000  # PROFILES_RELAY_BATCH (events per producer flush)
    # PROFILES_KAFKA_SESSION_TIMEOUT_MS: how soon a dead worker's partitions move to another.
    session_timeout_ms: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSettings:
        def topic(name: str, default: str) -> str:
            value = env.get(name, "").strip() or default
            if not _TOPIC.fullmatch(value):
                raise ConfigurationError(
                    f"{name}={value!r} is not a Kafka topic name: use 1-249 letters, digits, "
                    "'.', '_' or '-'"
                )
            return value

        interactions = topic("PROFILES_KAFKA_INTERACTIONS_TOPIC", "interactions")
        return cls(
            interactions_topic=interactions,
            dlq_topic=topic("PROFILES_KAFKA_DLQ_TOPIC", f"{interactions}.dlq"),
            events_topic=topic("PROFILES_KAFKA_EVENTS_TOPIC", "profile-events"),
            segment_changes_topic=topic("PROFILES_KAFKA_SEGMENT_CHANGES_TOPIC", "segment-changes"),
            group_id=env.get("PROFILES_KAFKA_GROUP_ID", "").strip() or "profiles-ingest",
            ingest_batch=_int(env, "PROFILES_INGEST_BATCH", 2_000, minimum=1),
            ingest_processes=_int(env, "PROFILES_INGEST_PROCESSES", 2, minimum=1),
            max_message_bytes=_int(env, "PROFILES_INGEST_MAX_MESSAGE_BYTES", 65_536, minimum=1),
            relay_batch=_int(env, "PROFILES_RELAY_BATCH", 1_000, minimum=1),
            session_timeout_ms=_int(env, "PROFILES_KAFKA_SESSION_TIMEOUT_MS", 10_000, 1_000),
        )


@dataclass(frozen=True)
class Settings:
    """What the service needs to know about its surroundings."""

    database_url: str | None = None  # DATABASE_URL; None: start embedded Postgres (dev, tests)
    redis_url: str | None = None  # REDIS_URL; None: start embedded Valkey
    kafka_bootstrap_servers: str | None = None  # KAFKA_BOOTSTRAP_SERVERS
    consent_model: ConsentModel = ConsentModel.OPT_OUT  # PROFILES_CONSENT_MODEL
    redis_namespace: str = ""  # PROFILES_REDIS_NAMESPACE: prefix of every Redis key
    data_dir: Path = Path(".profiles-data")  # PROFILES_DATA_DIR (embedded servers' files)
    snapshot_interval: int = 100  # PROFILES_SNAPSHOT_INTERVAL (events between snapshots)
    aggregate_cache_size: int = 100_000  # PROFILES_AGGREGATE_CACHE_SIZE
    command_retries: int = 3  # PROFILES_COMMAND_RETRIES (optimistic-concurrency retries)
    group_commit_max: int = 1_000  # PROFILES_GROUP_COMMIT_MAX (commands per transaction)
    postgres_pool_size: int = 4  # PROFILES_POSTGRES_POOL_SIZE
    # PROFILES_POSTGRES_CONNECT_TIMEOUT: how long a command waits for a connection before it
    # answers UNAVAILABLE (the library's own default, 30 s, times 10 retries, hangs for minutes).
    postgres_connect_timeout: int = 2
    projection_batch: int = 1_000  # PROFILES_PROJECTION_BATCH (events per Redis transaction)
    projection_poll_seconds: float = 1.0  # PROFILES_PROJECTION_POLL_SECONDS (NOTIFY fallback)
    # PROFILES_PROJECTION_STALLED_SECONDS: a read model whose projector has not reported for
    # longer is `stalled` in `projections`, and the projector's /readyz answers 503.
    projection_stalled_seconds: float = 5.0
    # PROFILES_REBUILD_BATCH: events per page of a rebuild. 2,000 built 1M events as fast as
    # 5,000 did (56.5 s, two processes) and held 240 MB for all processes against 305 MB.
    rebuild_batch: int = 2_000
    # PROFILES_REBUILD_PROCESSES: the processes a rebuild's stream pass is shared over, one
    # share of the stream ids each (`api.rebuild_workers`). One Python process is held to one
    # core by its GIL while Redis and Postgres leave another idle: 2 (default) uses both cores.
    rebuild_processes: int = 2
    # PROFILES_REBUILD_GRACE_SECONDS: after a switch, how long the replaced version is kept
    rebuild_grace_seconds: float = 2.0
    min_position_timeout: float = 2.0  # PROFILES_MIN_POSITION_TIMEOUT (seconds)
    # PROFILES_DEADLINE_SECONDS: the longest a request waits on a store (a frozen Postgres, a
    # lock held elsewhere) before it answers UNAVAILABLE; what it started there is cancelled.
    deadline_seconds: float = 5.0
    api_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)  # PROFILES_API_KEYS
    # PROFILES_API_KEYS too: an entry's ";rate=R;burst=B", a token bucket per key and process
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    limits: RequestLimits = field(default_factory=RequestLimits)  # PROFILES_MAX_* and the rest
    # PROFILES_SCORE_HALF_LIFE (ISO 8601, default P7D), PROFILES_SCORE_WEIGHTS
    # ("purchase=10,page_view=1", over the contract's defaults), PROFILES_SCORE_DEFAULT_WEIGHT
    score_model: ScoreModel = field(default_factory=ScoreModel)
    fast_path: bool = True  # PROFILES_FAST_PATH: compiled hot mutations (off: all via strawberry)
    kafka: KafkaSettings = field(default_factory=lambda: KafkaSettings())
    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str = "customer-profiles"  # OTEL_SERVICE_NAME

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        model_raw = env.get("PROFILES_CONSENT_MODEL", "opt-out").strip().lower()
        try:
            model = ConsentModel(model_raw)
        except ValueError:
            raise ConfigurationError(
                f"PROFILES_CONSENT_MODEL={model_raw!r}: use 'opt-out' (track unless ANALYTICS "
                "is withdrawn) or 'opt-in' (track only once ANALYTICS is granted)"
            ) from None
        api_keys, rate_limits = _api_keys(env.get("PROFILES_API_KEYS", ""))
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            consent_model=model,
            redis_namespace=env.get("PROFILES_REDIS_NAMESPACE", ""),
            data_dir=Path(env.get("PROFILES_DATA_DIR", ".profiles-data")),
            snapshot_interval=_int(env, "PROFILES_SNAPSHOT_INTERVAL", 100, minimum=1),
            aggregate_cache_size=_int(env, "PROFILES_AGGREGATE_CACHE_SIZE", 100_000, minimum=1),
            command_retries=_int(env, "PROFILES_COMMAND_RETRIES", 3),
            group_commit_max=_int(env, "PROFILES_GROUP_COMMIT_MAX", 1_000, minimum=1),
            postgres_pool_size=_int(env, "PROFILES_POSTGRES_POOL_SIZE", 4, minimum=1),
            postgres_connect_timeout=_int(env, "PROFILES_POSTGRES_CONNECT_TIMEOUT", 2, minimum=1),
            projection_batch=_int(env, "PROFILES_PROJECTION_BATCH", 1_000, minimum=1),
            projection_poll_seconds=_float(env, "PROFILES_PROJECTION_POLL_SECONDS", 1.0),
            projection_stalled_seconds=_positive(env, "PROFILES_PROJECTION_STALLED_SECONDS", 5.0),
            rebuild_batch=_int(env, "PROFILES_REBUILD_BATCH", 2_000, minimum=1),
            rebuild_processes=_int(env, "PROFILES_REBUILD_PROCESSES", 2, minimum=1),
            rebuild_grace_seconds=_float(env, "PROFILES_REBUILD_GRACE_SECONDS", 2.0),
            min_position_timeout=_float(env, "PROFILES_MIN_POSITION_TIMEOUT", 2.0),
            deadline_seconds=_positive(env, "PROFILES_DEADLINE_SECONDS", 5.0),
            api_keys=api_keys,
            rate_limits=rate_limits,
            limits=RequestLimits.from_env(env),
            score_model=_score_model(env),
            fast_path=env.get("PROFILES_FAST_PATH", "on").strip().lower() not in {"off", "0", "no"},
            kafka=KafkaSettings.from_env(env),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            service_name=env.get("OTEL_SERVICE_NAME", "customer-profiles"),
        )

    def with_urls(self, database_url: str, redis_url: str) -> Settings:
        return replace(self, database_url=database_url, redis_url=redis_url)
