"""Where the segment read model keeps its state in Redis."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

from projections.versions import FIRST, KEY_CACHE, glob

NAME = "segments"
SCHEMA = 1  # the stored shape this code writes (see profile.SCHEMA)


@dataclass(frozen=True)
class SegmentKeys:
    namespace: str = ""
    version: int = FIRST

    @property
    def base(self) -> str:
        return f"{self.namespace}segments:v{self.version}:"

    @property
    def tracking(self) -> str:
        return f"{self.namespace}projection:{NAME}:v{self.version}"

    @property
    def patterns(self) -> list[str]:
        return [glob(self.base)]

    @property
    def definitions(self) -> str:
        return self.base + "defs"

    @property
    def in_service(self) -> str:
        """The ids of the segments not retired, a sorted JSON list, kept beside the definitions
        so a profile read filters its memberships without reading and parsing them all."""
        return self.base + "in-service"

    @property
    def due(self) -> str:
        return self.base + "due"

    def facts(self, uid: UUID | str) -> str:
        return f"{self.base}facts:{{{key_text(uid)}}}"

    def of(self, uid: UUID | str) -> str:
        return f"{self.base}of:{{{key_text(uid)}}}"

    def members(self, segment_id: str) -> str:
        return f"{self.base}members:{segment_id}"

    @property
    def changes(self) -> str:
        """A capped stream of membership changes, for the segment-changes relay. One for all
        versions: the relay follows it across a rebuild, which appends nothing to it."""
        return f"{self.namespace}segments:changes"

    @property
    def backfill_state(self) -> str:
        return f"{self.base}backfill"


@lru_cache(maxsize=KEY_CACHE)  # UUID.__str__ is Python code; a page formats each id several times
def key_text(uid: UUID | str) -> str:
    return str(uid)
