"""The Segment aggregate: an audience definition, versioned by its events.

Defining an existing id again replaces its rule (a new version); retiring takes it out of
service. The rule is validated when defined and kept as the JSON the marketer sent, so the
query side returns what was written and the read model parses it with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.normalise import check_text, storable_json, validate_name
from domain.rules import MAX_DEPTH, parse_rule

# Fixed forever: changing it would orphan every stored segment.
SEGMENT_NAMESPACE = UUID("0b8f7d36-93c1-5d8e-a7b4-2f61c9e0d5a3")
SLUG = r"[a-z0-9][a-z0-9-]{0,63}"
# Two JSON levels per condition ({"all": [...]}), then a "where" object and its values.
RULE_JSON_DEPTH = 2 * MAX_DEPTH + 16


def segment_uuid(segment_id: str) -> UUID:
    return uuid5(SEGMENT_NAMESPACE, segment_id)


@dataclass(frozen=True)
class DefineSegment:
    segment_id: str
    name: str
    description: str | None
    rule: dict[str, Any]

    @classmethod
    def parse(cls, raw: Mapping[str, object], *, field: str) -> DefineSegment:
        rule = raw.get("rule")
        parse_rule(rule, f"{field}.rule")  # refuses a bad rule, naming the node
        assert isinstance(rule, dict)
        # Kept as sent, so it must be storable as sent (no lone surrogate, no "_type_" key).
        storable_json(rule, f"{field}.rule", RULE_JSON_DEPTH)
        description = raw.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidInput(f"{field}.description", "must be text")
        if description is not None:
            check_text(description, f"{field}.description")
        return cls(
            segment_id=validate_name(raw.get("id"), f"{field}.id", pattern=SLUG, max_len=64),
            name=validate_name(raw.get("name"), f"{field}.name"),
            description=description,
            rule=rule,
        )


class Segment(Aggregate):
    class Defined(Aggregate.Created):
        segment_id: str
        name: str
        description: str | None
        rule: dict[str, Any]

    class Redefined(Aggregate.Event):
        name: str
        description: str | None
        rule: dict[str, Any]

        def apply(self, aggregate: Segment) -> None:
            aggregate.name, aggregate.description = self.name, self.description
            aggregate.rule, aggregate.retired = self.rule, False

    class Retired(Aggregate.Event):
        def apply(self, aggregate: Segment) -> None:
            aggregate.retired = True

    def __init__(
        self, segment_id: str, name: str, description: str | None, rule: dict[str, Any]
    ) -> None:
        self.segment_id = segment_id
        self.name = name
        self.description = description
        self.rule = rule
        self.retired = False

    @staticmethod
    def create_id(segment_id: str) -> UUID:
        return segment_uuid(segment_id)

    @classmethod
    def define(cls, command: DefineSegment, *, at: datetime) -> Segment:
        return cls._create(
            cls.Defined,
            segment_id=command.segment_id,
            name=command.name,
            description=command.description,
            rule=command.rule,
            timestamp=at,
        )

    def redefine(self, command: DefineSegment, *, at: datetime) -> None:
        same = (command.name, command.description, command.rule) == (
            self.name,
            self.description,
            self.rule,
        )
        # Sending the same definition again is a no-op, not a new version that would
        # re-evaluate every profile for nothing.
        if same and not self.retired:
            return
        self.trigger_event(
            self.Redefined,
            name=command.name,
            description=command.description,
            rule=command.rule,
            timestamp=at,
        )

    def retire(self, *, at: datetime) -> None:
        if not self.retired:
            self.trigger_event(self.Retired, timestamp=at)
