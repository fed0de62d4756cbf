"""A role pointed at a Redis Cluster node says so at start, and starts nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.embedded import start_valkey_cluster
from adapters.redis_cluster import serves_cluster
from tests.integration.conftest import free_port

# Never connected to: the refusal comes before any store is used.
UNUSED_POSTGRES = "postgresql://nobody@127.0.0.1:1/none"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster_url(embedded_dir: Path) -> Iterator[str]:
    cluster = start_valkey_cluster(embedded_dir / "refusal", masters=3)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    "argv", [["serve", "--role", "query"], ["project"], ["relay"], ["dev"]], ids=" ".join
)
def test_a_role_refuses_a_cluster_node_naming_redis_url(argv: list[str], cluster_url: str) -> None:
    env = {
        **os.environ,
        "REDIS_URL": cluster_url,
        "DATABASE_URL": UNUSED_POSTGRES,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    # In a process of its own: a role that did not refuse would serve until the timeout.
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2, done.stderr
    address = cluster_url.removeprefix("redis://") + "/0"  # host:port/db, never a password
    assert f"REDIS_URL ({address}) is a node of a Redis Cluster" in done.stderr
    assert "standalone" in done.stderr


def test_a_standalone_server_and_an_unreachable_one_are_not_clusters(redis_url: str) -> None:
    assert not serves_cluster(redis_url)
    assert not serves_cluster(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)


def test_a_cluster_node_is_told_from_its_own_info(cluster_url: str) -> None:
    assert serves_cluster(cluster_url)
