"""Compiled profile reads: the documents ESPs send at send time, answered without the general
GraphQL executor.

An ESP sends a few fixed documents (a `profile` or `profiles` field selecting profile fields,
its consents and recent interactions) millions of times. Strawberry's executor cost more CPU
than the Redis read it waits for, so each such document is planned once, after the schema's
own validation and the request limits have passed it, into getters over the read model's
ProfileView, and answered from one read of every customer it names. Anything else, and any
value that would not pass cleanly (a bad id, a list over its length, `minPosition`, a
negative `first`), goes to strawberry, which stays the reference: tests compare both on
random documents and answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    located_error,
    parse,
    validate,
)

from adapters.settings import RequestLimits
from api.context import Services
from api.documents import measure
from api.errors import format_error
from api.fast_path import MAX_PLANNED_CHARS, Declined, coerce_id, leaf_selection
from api.scalars import serialize_stored_time
from domain.errors import DomainError
from domain.normalise import check_count, check_id
from projections.profile_queries import ConsentView, ProfileView

MAX_BATCH = 500  # ids of one `profiles` field
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

Variables = Mapping[str, object]
Getter = Callable[[ProfileView, Variables], object]
Selection = tuple[tuple[str, Getter], ...]


def _time(stored: str | None) -> str | None:
    return None if stored is None else serialize_stored_time(stored)


# Getters of the plan's own signature: a wrapper around each was a call more per field.
PROFILE_FIELDS: dict[str, Getter] = {
    "customerId": lambda v, _: v.customer_id,
    "version": lambda v, _: v.version,
    "traits": lambda v, _: v.traits,
    "canEmail": lambda v, _: v.can_email,
    "canPersonalize": lambda v, _: v.can_personalize,
    "engagementScore": lambda v, _: float(v.engagement_score),
    "segments": lambda v, _: list(v.segments),
    "interactionCounts": lambda v, _: v.interaction_counts,
    "firstSeenAt": lambda v, _: _time(v.first_seen),
    "lastSeenAt": lambda v, _: _time(v.last_seen),
    "__typename": lambda v, _: "Profile",
}
CONSENT_FIELDS: dict[str, Callable[[ConsentView], object]] = {
    "purpose": lambda c: c.purpose.value,
    "granted": lambda c: c.granted,
    "source": lambda c: c.source,
    "policyVersion": lambda c: c.policy_version,
    "changedAt": lambda c: _time(c.changed),
    "__typename": lambda c: "ConsentState",
}
# A recent item is stored in the answer's own shape and spelling (projections.profile writes
# every key, times by format_utc, the scalar's own rule): most fields go out as they are.
INTERACTION_FIELDS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "eventId": itemgetter("eventId"),
    "type": itemgetter("type"),
    "occurredAt": itemgetter("occurredAt"),
    "channel": itemgetter("channel"),
    "sessionId": itemgetter("sessionId"),
    "properties": lambda i: i.get("properties") or {},
    "__typename": lambda i: "Interaction",
}


@dataclass(frozen=True)
class Root:
    """One root field: `profile` (one id) or `profiles` (a list of them)."""

    key: str
    node: FieldNode
    many: bool
    ids: ValueNode
    selection: Selection
    firsts: tuple[ValueNode | None, ...]  # every recentInteractions(first:) it selects


@dataclass(frozen=True)
class QueryPlan:
    name: str
    roots: tuple[Root, ...]


def _key(node: FieldNode) -> str:
    return (node.alias or node.name).value


def _leaves(
    node: FieldNode, fields: Mapping[str, Callable[[Any], object]]
) -> tuple[tuple[str, Callable[[Any], object]], ...]:
    chosen = leaf_selection(node, fields)
    if chosen is None:
        raise Declined
    return chosen


def _unique(chosen: list[tuple[str, Any]]) -> None:
    keys = [k for k, _ in chosen]
    if len(set(keys)) != len(keys):
        raise Declined  # strawberry merges repeated keys; not worth doing here


def _first(node: ValueNode | None, variables: Variables) -> int:
    """recentInteractions(first:) as the resolver takes it: null and absent mean 10."""
    if node is None or isinstance(node, NullValueNode):
        return 10
    if isinstance(node, IntValueNode):
        value: object = int(node.value)
    elif isinstance(node, VariableNode):
        value = variables.get(node.name.value)
        if value is None:
            return 10
    else:
        raise Declined
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT_MAX:
        raise Declined  # strawberry names the error
    return value


def _profile_selection(
    selection_set: SelectionSetNode | None,
) -> tuple[Selection, tuple[ValueNode | None, ...]]:
    if selection_set is None:
        raise Declined
    chosen: list[tuple[str, Getter]] = []
    firsts: list[ValueNode | None] = []
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives:
            raise Declined
        name = node.name.value
        if name in PROFILE_FIELDS and not node.arguments and node.selection_set is None:
            chosen.append((_key(node), PROFILE_FIELDS[name]))
        elif name == "consents" and not node.arguments:
            chosen.append((_key(node), _consents(_leaves(node, CONSENT_FIELDS))))
        elif name == "recentInteractions":
            args = node.arguments or ()
            if len(args) > 1 or (args and args[0].name.value != "first"):
                raise Declined
            first = args[0].value if args else None
            firsts.append(first)
            chosen.append((_key(node), _recent(first, _leaves(node, INTERACTION_FIELDS))))
        else:
            raise Declined
    _unique(chosen)
    return tuple(chosen), tuple(firsts)


Leaves = tuple[tuple[str, Callable[[Any], object]], ...]


def _consents(leaves: Leaves) -> Getter:
    return lambda view, _: [_shape(c, leaves) for c in view.consents]


def _recent(first: ValueNode | None, leaves: Leaves) -> Getter:
    return lambda view, variables: [
        _shape(i, leaves) for i in view.recent[: _first(first, variables)]
    ]


def _shape(value: Any, leaves: tuple[tuple[str, Callable[[Any], object]], ...]) -> dict[str, Any]:
    return {key: get(value) for key, get in leaves}


def _root(node: FieldNode) -> Root:
    if node.directives:
        raise Declined
    name = node.name.value
    args = {a.name.value: a.value for a in node.arguments or ()}
    if name == "profile" and args.keys() == {"customerId"}:
        many = False
        ids = args["customerId"]
    elif name == "profiles" and args.keys() == {"customerIds"}:
        many = True
        ids = args["customerIds"]
    else:
        raise Declined  # minPosition waits, and everything else is strawberry's
    selection, firsts = _profile_selection(node.selection_set)
    return Root(_key(node), node, many, ids, selection, firsts)


def plan_query(
    schema: GraphQLSchema, limits: RequestLimits, query: str, operation_name: str | None
) -> QueryPlan | None:
    if len(query) > MAX_PLANNED_CHARS:
        return None
    return _plan(schema, limits, query, operation_name)


@lru_cache(maxsize=1_000)
def _plan(
    schema: GraphQLSchema, limits: RequestLimits, query: str, operation_name: str | None
) -> QueryPlan | None:
    try:
        document = parse(query)
    except GraphQLError:
        return None
    if len(document.definitions) != 1:
        return None
    op = document.definitions[0]
    if not isinstance(op, OperationDefinitionNode) or op.operation is not OperationType.QUERY:
        return None
    name = op.name.value if op.name else None
    if op.directives or (operation_name is not None and operation_name != name):
        return None
    # The same checks strawberry's path makes first: what they refuse, strawberry answers.
    if measure(schema, document, limits) is not None or validate(schema, document):
        return None
    roots = []
    try:
        for node in op.selection_set.selections:
            if not isinstance(node, FieldNode):
                return None
            roots.append(_root(node))
    except Declined:
        return None
    keys = [r.key for r in roots]
    if len(set(keys)) != len(keys):
        return None
    return QueryPlan(name or "anonymous", tuple(roots))


def _ids(root: Root, variables: Variables) -> list[str]:
    """The root's ids, coerced and checked as the resolver does; Declined where it would
    refuse them (strawberry then answers with the error)."""
    node = root.ids
    raw: object
    if isinstance(node, VariableNode):
        raw = variables.get(node.name.value)
    elif isinstance(node, StringValueNode):
        raw = node.value
    elif isinstance(node, ListValueNode):
        if not all(isinstance(v, StringValueNode) for v in node.values):
            raise Declined
        raw = [v.value for v in node.values if isinstance(v, StringValueNode)]
    else:
        raise Declined
    values = raw if root.many else [raw]
    if not isinstance(values, list):
        raise Declined
    ids = [coerce_id(v) for v in values]
    try:
        if root.many:
            check_count(len(ids), "customerIds", MAX_BATCH, "ids")
        for n, customer_id in enumerate(ids):
            check_id(customer_id, f"customerIds[{n}]" if root.many else "customerId")
    except DomainError:
        raise Declined from None
    return ids


class QueryFastPath:
    def __init__(self, services: Services, schema: GraphQLSchema) -> None:
        self._services = services
        self._schema = schema

    async def answer(self, body: Mapping[str, object]) -> dict[str, Any] | None:
        """The response for a planned read, or None to let strawberry answer."""
        query, operation = body.get("query"), body.get("operationName")
        variables = body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(operation, str | None):
            return None
        if not isinstance(variables, dict):
            return None
        limits = self._services.settings.limits
        compiled = plan_query(self._schema, limits, query, operation)
        if compiled is None:
            return None
        try:
            wanted = [_ids(root, variables) for root in compiled.roots]
            # One item at least: lastSeenAt is the newest one's time.
            recent = max([1] + [_first(f, variables) for r in compiled.roots for f in r.firsts])
        except Declined:
            return None
        started = time.perf_counter()
        telemetry = self._services.telemetry
        with telemetry.span(f"graphql {compiled.name}"):
            answer = await self._run(compiled, wanted, recent, variables)
        field = compiled.roots[0].node.name.value if compiled.roots else "unknown"
        telemetry.query_duration.record(time.perf_counter() - started, {"field": field})
        telemetry.fast_path_answers.add(1)
        return answer

    async def _run(
        self, compiled: QueryPlan, wanted: list[list[str]], recent: int, variables: Variables
    ) -> dict[str, Any]:
        profiles = self._services.profiles
        assert profiles is not None
        every = list(dict.fromkeys(i for ids in wanted for i in ids))
        try:
            views = await profiles.get_many(every, recent=recent) if every else []
        except Exception as error:
            return _failed(compiled, error)
        found = {
            cid: v.blanked() if v is not None else None for cid, v in zip(every, views, strict=True)
        }
        data: dict[str, Any] = {}
        for root, ids in zip(compiled.roots, wanted, strict=True):
            shaped = [_profile(found[i], root.selection, variables) for i in ids]
            data[root.key] = shaped if root.many else shaped[0]
        return {"data": data}


def _profile(
    view: ProfileView | None, selection: Selection, variables: Variables
) -> dict[str, Any] | None:
    if view is None:
        return None
    return {key: get(view, variables) for key, get in selection}


def _failed(compiled: QueryPlan, error: Exception) -> dict[str, Any]:
    """A read that failed, shaped as the executor would: one error per root field; a
    `profiles` field is non-null, so its error nulls all the data."""
    errors = [format_error(located_error(error, [r.node], [r.key])) for r in compiled.roots]
    if any(r.many for r in compiled.roots):
        return {"data": None, "errors": errors}
    return {"data": {r.key: None for r in compiled.roots}, "errors": errors}
