"""Compiled operations: the hot mutations answered without the general GraphQL executor.

At 1,500 commands a second on two cores the general executor (input coercion, resolver
plumbing, extension hooks) costs more CPU than storing the events. Production clients send a
few fixed documents with variables, so each document is planned once: if it is exactly one
`recordInteraction` or `recordInteractions` field, fed by variables of the contract's types,
selecting plain fields of CommandResult, it is answered here. Anything else - literals,
fragments, directives, unknown or extra variables, a value that is not cleanly coercible - falls
back to strawberry, which stays the reference: tests compare both on the same requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    located_error,
    parse,
    print_ast,
)

from api.context import Services
from api.errors import format_error
from api.scalars import ScalarRefusal, parse_datetime
from domain.commands import MAX_BATCH, Command, CommandResult, RecordInteraction
from domain.normalise import check_count

RESULT_FIELDS: dict[str, Callable[[CommandResult], object]] = {
    "id": lambda r: r.id,
    "version": lambda r: r.version,
    "position": lambda r: r.position,
    "duplicate": lambda r: r.duplicate,
    "suppressed": lambda r: r.suppressed,
    "__typename": lambda r: "CommandResult",
}
# argument name, the variable type it must be declared with, whether the result is a list
MUTATIONS = {
    "recordInteraction": ("input", "InteractionInput!", False),
    "recordInteractions": ("inputs", "[InteractionInput!]!", True),
}
INPUT_FIELDS = {"eventId", "customerId", "type", "occurredAt", "sessionId", "channel", "properties"}


Selection = tuple[tuple[str, Callable[[CommandResult], object]], ...]


class Declined(Exception):
    """Not for the fast path: strawberry answers instead, errors and all."""


@dataclass(frozen=True)
class Plan:
    name: str  # operation name, for spans and metrics
    field: FieldNode
    key: str  # response key: the alias or the field name
    variable: str
    many: bool
    selection: tuple[tuple[str, Callable[[CommandResult], object]], ...]


# The hot mutations' documents are a few hundred characters; longer ones go to strawberry,
# under the request limits, so the cache below holds at most ~1,000 x 2 KB of text and trees.
MAX_PLANNED_CHARS = 2_048


def plan(query: str, operation_name: str | None) -> Plan | None:
    if len(query) > MAX_PLANNED_CHARS:
        return None
    return _plan(query, operation_name)


@lru_cache(maxsize=1_000)
def _plan(query: str, operation_name: str | None) -> Plan | None:
    try:
        document = parse(query)
    except GraphQLSyntaxError:
        return None
    if len(document.definitions) != 1:
        return None
    op = document.definitions[0]
    if not isinstance(op, OperationDefinitionNode) or op.operation is not OperationType.MUTATION:
        return None
    name = op.name.value if op.name else None
    if op.directives or (operation_name is not None and operation_name != name):
        return None
    if len(op.selection_set.selections) != 1:
        return None
    field = op.selection_set.selections[0]
    if not isinstance(field, FieldNode) or field.directives or field.name.value not in MUTATIONS:
        return None
    argument, type_text, many = MUTATIONS[field.name.value]
    arguments = field.arguments or ()
    if len(arguments) != 1 or arguments[0].name.value != argument:
        return None
    value = arguments[0].value
    definitions = op.variable_definitions or ()
    if not isinstance(value, VariableNode) or len(definitions) != 1:
        return None
    definition = definitions[0]
    if (
        definition.variable.name.value != value.name.value
        or print_ast(definition.type) != type_text
        or definition.default_value is not None
        or definition.directives
    ):
        return None
    selection = leaf_selection(field, RESULT_FIELDS)
    if selection is None:
        return None
    key = field.alias.value if field.alias else field.name.value
    return Plan(name or "anonymous", field, key, value.name.value, many, selection)


G = TypeVar("G")


def leaf_selection(field: FieldNode, fields: Mapping[str, G]) -> tuple[tuple[str, G], ...] | None:
    """(response key, getter) for each leaf `field` selects, or None where a plan would not
    answer as the executor does: a field not in `fields`, arguments, directives, fragments,
    a sub-selection, or a response key given twice (the executor merges those)."""
    if field.selection_set is None:
        return None
    chosen = []
    for node in field.selection_set.selections:
        if (
            not isinstance(node, FieldNode)
            or node.arguments
            or node.directives
            or node.selection_set is not None
            or node.name.value not in fields
        ):
            return None
        chosen.append(((node.alias or node.name).value, fields[node.name.value]))
    keys = [k for k, _ in chosen]
    return tuple(chosen) if len(set(keys)) == len(keys) else None


def _text(value: object, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if isinstance(value, str):
        return value
    raise Declined


def coerce_id(value: object) -> str:
    # GraphQL's ID takes a string, or an integer that it turns into one.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise Declined


def _interaction_input(value: object) -> Mapping[str, object]:
    """Coerces one InteractionInput as GraphQL would, or declines where it might not agree."""
    if not isinstance(value, dict) or not value.keys() <= INPUT_FIELDS:
        raise Declined
    try:
        occurred_at = parse_datetime(value.get("occurredAt"))
    except ScalarRefusal:
        raise Declined from None
    return {
        "eventId": coerce_id(value.get("eventId")),
        "customerId": coerce_id(value.get("customerId")),
        "type": _text(value.get("type"), nullable=False),
        "occurredAt": occurred_at,
        "sessionId": _text(value.get("sessionId"), nullable=True),
        "channel": _text(value.get("channel"), nullable=True),
        "properties": value.get("properties"),
    }


class CommandFastPath:
    def __init__(self, services: Services) -> None:
        self._services = services

    async def answer(self, body: object) -> dict[str, Any] | None:
        """The response for a planned mutation, or None to let strawberry answer."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return None
        operation = body.get("operationName")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict) or not isinstance(operation, str | None):
            return None
        compiled = plan(body["query"], operation)
        if compiled is None or compiled.variable not in variables:
            return None
        started = time.perf_counter()
        telemetry = self._services.telemetry
        refusal: Exception | None = None
        try:
            unit = self._unit(compiled, variables[compiled.variable])
        except Declined:
            return None
        except Exception as error:  # DomainError, or a defect: answered as strawberry would
            refusal = error
        # The span holds the error's formatting: an INTERNAL answer names its trace.
        with telemetry.span(f"graphql {compiled.name}"):
            if refusal is not None:
                answer = self._error(compiled, refusal)
            else:
                answer = await self._run(compiled, unit)
        field = compiled.field.name.value
        telemetry.command_duration.record(time.perf_counter() - started, {"field": field})
        telemetry.fast_path_answers.add(1)
        return answer

    def _unit(self, compiled: Plan, value: object) -> list[Command]:
        now = self._services.clock()
        if not compiled.many:
            return [RecordInteraction.parse(_interaction_input(value), now=now, field="input")]
        if not isinstance(value, list):
            raise Declined
        check_count(len(value), "inputs", MAX_BATCH, "entries")
        raws = [_interaction_input(v) for v in value]  # coerce all before validating any
        return [
            RecordInteraction.parse(raw, now=now, field=f"inputs[{n}]")
            for n, raw in enumerate(raws)
        ]

    async def _run(self, compiled: Plan, unit: list[Command]) -> dict[str, Any]:
        services = self._services
        assert services.commands is not None
        with services.telemetry.span(
            "event_store.write", operation=compiled.field.name.value, commands=len(unit)
        ):
            try:
                results = await services.commands.run(unit) if unit else []
            except Exception as error:
                return self._error(compiled, error)
        shaped = [{key: get(r) for key, get in compiled.selection} for r in results]
        return {"data": {compiled.key: shaped if compiled.many else shaped[0]}}

    @staticmethod
    def _error(compiled: Plan, error: Exception) -> dict[str, Any]:
        # Shaped as the executor would: the non-null root field's error nulls all the data.
        located = located_error(error, [compiled.field], [compiled.key])
        return {"data": None, "errors": [format_error(located)]}
