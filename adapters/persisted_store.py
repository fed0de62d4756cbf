"""The deployment's registry of persisted queries: one Redis hash, sha256 -> document."""

from __future__ import annotations

from typing import Any

# Registers a document unless the hash is full (an attacker's stream of distinct documents
# must not grow Redis without end); a document already registered is left as it is.
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisPersistedQueries:
    """`client`: a redis.asyncio client with str replies (the query side's)."""

    def __init__(self, client: Any, namespace: str, most: int) -> None:
        self._client = client
        self.key = f"{namespace}persisted-queries"
        self._most = most
        self._put = client.register_script(_PUT)

    async def get(self, digest: str) -> str | None:
        found: str | None = await self._client.hget(self.key, digest)
        return found

    async def put(self, digest: str, query: str) -> bool:
        return bool(await self._put(keys=[self.key], args=[digest, query, self._most]))
