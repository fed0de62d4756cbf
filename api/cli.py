"""The `profiles` command: dev, serve, migrate, project; rebuild (rebuild_cli) and the audit
tools (privacy_cli)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from adapters.kafka_io import ensure_topics
from adapters.migrate import MigrationError, migrate, status
from adapters.redis_cluster import serves_cluster
from adapters.settings import ConfigurationError, Settings
from adapters.store_wait import redis_store
from adapters.telemetry import Telemetry, setup_telemetry
from api import kafka_cli, privacy_cli, rebuild_cli
from api.child_processes import configure_logging
from api.kafka_workers import start_workers

logger = logging.getLogger("profiles")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profiles", description="Event-sourced customer-profile service."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser(
        "dev",
        help="start embedded Postgres and Valkey (unless DATABASE_URL / REDIS_URL are set), "
        "migrate, and serve all three sides plus the projector on one port",
    )
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--data-dir", type=Path, help="where embedded servers keep their data")
    dev.add_argument(
        "--kafka",
        action="store_true",
        help="also start an embedded Kafka-compatible broker (unless KAFKA_BOOTSTRAP_SERVERS "
        "is set) and run the ingest and relay workers",
    )

    serve = sub.add_parser("serve", help="serve GraphQL for one role or all (production)")
    serve.add_argument("--role", choices=["all", "commands", "query", "audit"], default="all")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument(
        "--project", action="store_true", help="also run the projector in this process"
    )

    mig = sub.add_parser("migrate", help="apply pending SQL migrations (DATABASE_URL)")
    mig.add_argument("--status", action="store_true", help="list applied and pending migrations")

    project = sub.add_parser("project", help="run the projector: keep the Redis read models live")
    project.add_argument(
        "--port", type=int, help="serve /healthz, /readyz and /metrics on this port"
    )
    project.add_argument("--host", default="0.0.0.0")
    privacy_cli.add_parsers(sub)
    rebuild_cli.add_parser(sub)
    kafka_cli.add_parsers(sub)
    return parser


def _serve(
    settings: Settings,
    role: str,
    host: str,
    port: int,
    project: bool,
    telemetry: Telemetry | None = None,
) -> None:
    import uvicorn

    from api.app import create_app

    app = create_app(settings, role, project=project, telemetry=telemetry)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.embedded import start_stack

    if args.data_dir is not None:
        settings = replace(settings, data_dir=args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting embedded servers in {settings.data_dir.resolve()} ...", flush=True)
    settings, stop = start_stack(settings, kafka=args.kafka, temporary=False)
    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it runs `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        applied = migrate(str(settings.database_url))
        print(f"migrations applied: {', '.join(applied) or 'none pending'}")
        telemetry, workers = None, None
        if args.kafka:
            # The workers share the service's telemetry, so /metrics shows their lag too.
            telemetry = setup_telemetry(settings)
            ensure_topics(settings)
            workers = start_workers(settings, telemetry)
            print(f"\n  KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} (ingest, relay)")
        base = f"http://{args.host}:{args.port}"
        print(
            f"\n  commands  {base}/commands/graphql\n  query     {base}/graphql\n"
            f"  audit     {base}/audit/graphql\n  metrics   {base}/metrics\n\n"
            f"  DATABASE_URL={settings.database_url}\n  REDIS_URL={settings.redis_url}\n"
            "\nGraphiQL opens at each GraphQL URL in a browser. Ctrl-C stops everything.\n",
            flush=True,
        )
        _serve(settings, "all", args.host, args.port, project=True, telemetry=telemetry)
    finally:
        if workers is not None:
            workers.stop()
        stop()
    return 0


def _project(args: argparse.Namespace, settings: Settings) -> int:
    """Starts whether or not its stores answer, and waits for them (`api.projector_job`)."""
    from api.health_http import HealthServer
    from api.projector_job import readiness, run_projector
    from projections.runner import Health

    telemetry = setup_telemetry(settings)
    stop, health = threading.Event(), Health()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    if args.port is not None:
        ready = readiness(health, settings)
        server = HealthServer(args.host, args.port, telemetry, ready, "projector").start()
    try:
        run_projector(settings, telemetry, stop, health=health)
    finally:
        if server is not None:
            server.close()
        telemetry.shutdown()
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        print("DATABASE_URL is not set: say which Postgres to migrate", file=sys.stderr)
        return 2
    if args.status:
        for m in status(settings.database_url):
            state = "applied " + m.applied_at.isoformat() if m.applied_at else "pending"
            changed = "" if m.checksum_ok else "  (file changed since it was applied!)"
            print(f"{m.version:04d}  {m.name:<40} {state}{changed}")
        return 0
    applied = migrate(settings.database_url)
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is current"))
    return 0


def _missing(command: str, needs: dict[str, str | None], instead: str) -> bool:
    """Says which settings `command` lacks (all it needs are named), True if any is unset."""
    if all(needs.values()):
        return False
    print(f"profiles {command} needs {' and '.join(needs)} (or {instead})", file=sys.stderr)
    return True


def _on_cluster(command: str, redis_url: str) -> bool:
    """Says so, True, when REDIS_URL names a Redis Cluster node, which the read models cannot
    use yet."""
    if not serves_cluster(redis_url):
        return False
    print(
        f"profiles {command}: REDIS_URL ({redis_store(redis_url).address}) is a node of a "
        "Redis Cluster, and the read models need one standalone Redis or Valkey server: their "
        "scripts touch keys of many hash slots at once. Point REDIS_URL at a server without "
        "cluster-enabled.",
        file=sys.stderr,
    )
    return True


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "dev":
            if settings.redis_url and _on_cluster("dev", settings.redis_url):
                return 2
            return _dev(args, settings)
        if args.command == "migrate":
            return _migrate(args, settings)
        if args.command in privacy_cli.COMMANDS:
            return privacy_cli.run(args, settings)
        if args.command in kafka_cli.COMMANDS:
            needs = {"DATABASE_URL": settings.database_url}
            needs["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
            if _missing(args.command, needs, "use 'profiles dev --kafka'"):
                return 2
            relay = args.command == "relay" and settings.redis_url  # ingest reads no Redis
            if relay and _on_cluster(args.command, str(settings.redis_url)):
                return 2
            return kafka_cli.run(args, settings)
        needs = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
        if _missing(args.command, needs, "use 'profiles dev', which starts embedded servers"):
            return 2
        if _on_cluster(args.command, str(settings.redis_url)):
            return 2
        if args.command == "project":
            return _project(args, settings)
        if args.command == "rebuild":
            return rebuild_cli.run(args, settings)
        _serve(settings, args.role, args.host, args.port, args.project)
        return 0
    except (ConfigurationError, MigrationError) as error:
        print(f"profiles: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
