"""Whether a Redis URL names a node of a Redis Cluster, asked of the server itself.

The read models' scripts and transactions touch keys of many hash slots in one call (a page's
customers, a profile read's shared keys), which a cluster refuses or answers with MOVED. Until
they are grouped by slot, a role pointed at a cluster is told so at start instead of failing
page after page.
"""

from __future__ import annotations

import redis


def serves_cluster(url: str, timeout: float = 2.0) -> bool:
    """True when the server at `url` runs in cluster mode. False when it does not, and when it
    cannot tell (no answer within `timeout`, a refused password): the roles wait for or report
    such a store as they always have, and ask again when they are restarted."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        enabled = client.info("cluster").get("cluster_enabled", 0)
    except redis.RedisError:
        return False
    finally:
        client.close()
    return str(enabled) == "1"
