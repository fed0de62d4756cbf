"""Segment rules: the contract's JSON condition trees, parsed once into typed values.

Every refusal names the offending node by its path, e.g.
`rule.all[1].event.within: 'P7X' is not an ISO 8601 duration`, so a marketer can fix the rule
without reading our code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from domain.consent import ConsentPurpose
from domain.errors import InvalidInput

TRAIT_OPS = ("eq", "neq", "in", "gt", "gte", "lt", "lte", "exists")
SCORE_OPS = ("gt", "gte", "lt", "lte")
MAX_DEPTH = 16
MAX_NODES = 200

_DURATION = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


@dataclass(frozen=True)
class All:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class EventCondition:
    type: str | None
    where: tuple[tuple[str, str], ...]  # (property, its value as canonical JSON), sorted
    at_least: int
    within: timedelta | None

    @cached_property  # looked up per profile per segment evaluated: computed once
    def key(self) -> str:
        """What a profile must remember for this condition: event times per (type, where)."""
        return json.dumps([self.type, self.where], separators=(",", ":"))


@dataclass(frozen=True)
class TraitCondition:
    name: str
    op: str
    value: Any


@dataclass(frozen=True)
class ScoreCondition:
    op: str
    value: float


@dataclass(frozen=True)
class ConsentCondition:
    purpose: ConsentPurpose


Rule = All | AnyOf | Not | EventCondition | TraitCondition | ScoreCondition | ConsentCondition


def leaves(rule: Rule) -> Iterator[Rule]:
    """The conditions of a rule tree, combinators left out."""
    if isinstance(rule, All | AnyOf):
        for child in rule.rules:
            yield from leaves(child)
    elif isinstance(rule, Not):
        yield from leaves(rule.rule)
    else:
        yield rule


def parse_duration(text: object, path: str) -> timedelta:
    if not isinstance(text, str):
        raise InvalidInput(path, "must be an ISO 8601 duration string such as PT10M or P7D")
    upper = text.strip().upper()
    if re.fullmatch(r"P.*\d+[YM].*", upper.split("T")[0]):
        raise InvalidInput(
            path, f"{text!r}: years and months have no fixed length; use days, e.g. P30D"
        )
    match = _DURATION.fullmatch(upper)
    if match is None or upper in ("P", "PT") or upper.endswith("T"):
        raise InvalidInput(path, f"{text!r} is not an ISO 8601 duration (e.g. PT10M, P7D)")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    duration = timedelta(
        weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
    )
    if duration <= timedelta(0):
        raise InvalidInput(path, f"{text!r} must be longer than zero")
    return duration


def parse_rule(raw: object, path: str = "rule") -> Rule:
    counter = [0]
    return _node(raw, path, 0, counter)


def _node(raw: object, path: str, depth: int, counter: list[int]) -> Rule:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise InvalidInput(path, f"the rule has more than {MAX_NODES} conditions")
    if depth > MAX_DEPTH:
        raise InvalidInput(path, f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise InvalidInput(
            path,
            "must be an object with exactly one of all, any, not, event, trait, score, consent",
        )
    ((kind, body),) = raw.items()
    if kind not in ("all", "any", "not", "event", "trait", "score", "consent"):
        raise InvalidInput(
            path, f"unknown condition {kind!r}; use all, any, not, event, trait, score or consent"
        )
    here = f"{path}.{kind}"
    if kind in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise InvalidInput(here, "must be a non-empty list of conditions")
        rules = tuple(_node(r, f"{here}[{i}]", depth + 1, counter) for i, r in enumerate(body))
        return All(rules) if kind == "all" else AnyOf(rules)
    if kind == "not":
        return Not(_node(body, here, depth + 1, counter))
    if not isinstance(body, dict):
        raise InvalidInput(here, "must be an object")
    if kind == "event":
        return _event(body, here)
    if kind == "trait":
        return _trait(body, here)
    if kind == "score":
        return _score(body, here)
    return _consent(body, here)


def _only(body: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"{path}.{unknown[0]}", f"is not a field here; use {sorted(allowed)}")


def _event(body: dict[str, Any], path: str) -> EventCondition:
    _only(body, {"type", "where", "atLeast", "within"}, path)
    type_ = body.get("type")
    if type_ is not None and (not isinstance(type_, str) or not type_):
        raise InvalidInput(f"{path}.type", "must be an interaction type such as product_view")
    where = body.get("where", {})
    if not isinstance(where, dict):
        raise InvalidInput(f"{path}.where", 'must be an object such as {"category": "shoes"}')
    at_least = body.get("atLeast", 1)
    if not isinstance(at_least, int) or isinstance(at_least, bool) or not 1 <= at_least <= 1000:
        raise InvalidInput(f"{path}.atLeast", f"{at_least!r} must be a whole number, 1 to 1000")
    within = body.get("within")
    return EventCondition(
        type=type_,
        where=tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in where.items())),
        at_least=at_least,
        within=None if within is None else parse_duration(within, f"{path}.within"),
    )


def _trait(body: dict[str, Any], path: str) -> TraitCondition:
    _only(body, {"name", "op", "value"}, path)
    name, op = body.get("name"), body.get("op")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{path}.name", "must name a trait, e.g. country")
    if op not in TRAIT_OPS:
        raise InvalidInput(f"{path}.op", f"{op!r} is not one of {', '.join(TRAIT_OPS)}")
    value = body.get("value")
    if op == "exists":
        if "value" in body:
            raise InvalidInput(f"{path}.value", "exists takes no value")
    elif "value" not in body:
        raise InvalidInput(f"{path}.value", f"{op} needs a value")
    elif op == "in" and not isinstance(value, list):
        raise InvalidInput(f"{path}.value", 'in needs a list, e.g. ["DE", "AT"]')
    elif op in ("gt", "gte", "lt", "lte") and not isinstance(value, int | float | str):
        raise InvalidInput(f"{path}.value", f"{op} compares numbers or strings")
    return TraitCondition(name, op, value)


def _score(body: dict[str, Any], path: str) -> ScoreCondition:
    _only(body, {"op", "value"}, path)
    op, value = body.get("op"), body.get("value")
    if op not in SCORE_OPS:
        raise InvalidInput(f"{path}.op", f"{op!r} is not one of {', '.join(SCORE_OPS)}")
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{path}.value", f"{value!r} must be a number, zero or more")
    return ScoreCondition(op, float(value))


def _consent(body: dict[str, Any], path: str) -> ConsentCondition:
    _only(body, {"purpose"}, path)
    purpose = body.get("purpose")
    try:
        return ConsentCondition(ConsentPurpose(str(purpose)))
    except ValueError:
        allowed = ", ".join(p.value for p in ConsentPurpose)
        raise InvalidInput(f"{path}.purpose", f"{purpose!r} is not one of {allowed}") from None
