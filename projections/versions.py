"""Which version of each read model serves, and which one is being built: one Redis hash.

A read model's keys carry its version (`profile:v2:{uid}`). The pointer hash names the version
that serves; a rebuild writes version N+1 beside it and moves the pointer in one script call
once N+1 has reached N's position, so a reader sees N or N+1 whole, never a half-built model.
Readers confirm the pointer inside the transaction that reads the model (`ServingVersions`).

    readmodels  profile -> "2"             serving version (absent: FIRST)
                profile:building -> "3"    being built
                profile:retired -> "1"     switched away from, its keys not yet deleted
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FIRST = 1
# Key names formatted per customer, kept per read model (UUID.__str__ is Python code, and a
# page formats each key several times). A page reuses its own; later pages seldom meet the
# same customers, and 100,000 held ~12 MB per model in a rebuild process. An entry's size is
# fixed (namespace, version, uuid), so this bounds bytes too: the keys of one profile read took
# 735 bytes an id, about 15 MB in all.
KEY_CACHE = 20_000


def pointer_key(namespace: str) -> str:
    return f"{namespace}readmodels"


def glob(prefix: str) -> str:
    """A SCAN pattern matching every key that starts with `prefix` (taken literally)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"


@dataclass(frozen=True)
class ModelVersions:
    serving: int = FIRST
    building: int | None = None
    retired: int | None = None


def parse_pointer(fields: Mapping[str, str], name: str) -> ModelVersions:
    def number(field: str) -> int | None:
        raw = fields.get(field)
        return int(raw) if raw else None

    return ModelVersions(
        serving=number(name) or FIRST,
        building=number(f"{name}:building"),
        retired=number(f"{name}:retired"),
    )


class VersionPointer:
    """The pointer for the projector and the rebuild; `client` is a sync redis client (str)."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self.key = pointer_key(namespace)
        self._switch = client.register_script(SWITCH)

    def read(self, names: Iterable[str]) -> dict[str, ModelVersions]:
        fields = self._client.hgetall(self.key)
        return {name: parse_pointer(fields, name) for name in names}

    def begin(self, names: Sequence[str]) -> dict[str, int]:
        """The version to build for each model: the one already being built (a rebuild that
        stopped resumes it), else serving + 1, recorded as building."""
        chosen: dict[str, int] = {}
        for name, versions in self.read(names).items():
            wanted = versions.building or max(versions.serving, versions.retired or 0) + 1
            # HSETNX: two rebuilds started at once agree on one version.
            self._client.hsetnx(self.key, f"{name}:building", wanted)
            chosen[name] = int(self._client.hget(self.key, f"{name}:building"))
        return chosen

    def switch(self, building: Mapping[str, int], tracking: Callable[[str, int], str]) -> bool:
        """Makes every given version serve at once, if each has reached the position of the
        version it replaces; False (nothing changed) when one is still behind."""
        serving = self.read(building)
        names = list(building)
        keys = [self.key]
        for name in names:
            keys += [tracking(name, serving[name].serving), tracking(name, building[name])]
        argv: list[Any] = []
        for name in names:
            argv += [name, building[name]]
        return bool(self._switch(keys=keys, args=argv))

    def cancel(self, name: str) -> int | None:
        """Forgets the version being built (its keys are left to `drop`); returns it."""
        building = self.read([name])[name].building
        self._client.hdel(self.key, f"{name}:building")
        return building

    def schemas(self, tracking_keys: Sequence[str]) -> list[int | None]:
        """The schema each version's tracking key is stamped with (None: not stamped yet)."""
        with self._client.pipeline(transaction=False) as pipe:
            for key in tracking_keys:
                pipe.hget(key, "schema")
            return [int(raw) if raw else None for raw in pipe.execute()]

    def forget_retired(self, name: str, version: int) -> None:
        # Only if it is still the retired one: a later switch may have retired another.
        if self._client.hget(self.key, f"{name}:retired") == str(version):
            self._client.hdel(self.key, f"{name}:retired")


# KEYS: pointer, then per model (serving tracking key, building tracking key).
# ARGV: per model (name, building version). All or nothing.
SWITCH = """
local n = #ARGV / 2
for i = 1, n do
  local name, version = ARGV[2 * i - 1], ARGV[2 * i]
  if redis.call('HGET', KEYS[1], name .. ':building') ~= version then return 0 end
  local old = tonumber(redis.call('HGET', KEYS[2 * i], 'position') or '0')
  local new = tonumber(redis.call('HGET', KEYS[2 * i + 1], 'position') or '0')
  if new < old then return 0 end
end
for i = 1, n do
  local name, version = ARGV[2 * i - 1], ARGV[2 * i]
  local old = redis.call('HGET', KEYS[1], name) or '1'
  redis.call('HSET', KEYS[1], name, version, name .. ':retired', old)
  redis.call('HDEL', KEYS[1], name .. ':building')
end
return 1
"""


def drop_version(client: Any, tracking_key: str, patterns: Sequence[str], page: int = 1_000) -> int:
    """Deletes a version's keys; returns how many. The tracking key goes first, so a projector
    still writing to this version is refused (its position no longer matches) rather than
    re-creating keys behind the deletion."""
    client.delete(tracking_key)
    deleted = 0
    for pattern in patterns:
        batch: list[str] = []
        for key in client.scan_iter(match=pattern, count=page):
            batch.append(key)
            if len(batch) >= page:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    return deleted


class ServingVersions:
    """The query side's cached view of the pointer. Each read puts HGETALL of the pointer
    first in its MULTI; when the answer differs from the versions the read used, the read
    is repeated with the new ones (at most once per switch)."""

    def __init__(self, namespace: str) -> None:
        self.key = pointer_key(namespace)
        self._serving: dict[str, int] = {}
        self._building: dict[str, int | None] = {}

    def serving(self, name: str) -> int:
        return self._serving.get(name, FIRST)

    def confirm(self, fields: Mapping[str, str], names: Iterable[str]) -> bool:
        """Learns the pointer read in the same transaction; True if `names` were current."""
        current = True
        for name in names:
            versions = parse_pointer(fields, name)
            if versions.serving != self.serving(name):
                current = False
            self._serving[name] = versions.serving
            self._building[name] = versions.building
        return current

    def building(self, name: str) -> int | None:
        return self._building.get(name)
