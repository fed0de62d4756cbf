"""Turns errors into the contract's `extensions.code`, and hides what callers must not see."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import redis.exceptions
from eventsourcing.persistence import InterfaceError, OperationalError
from graphql import GraphQLError, GraphQLInputType, ValueNode, VisitorAction
from graphql.language import SKIP, ArgumentNode, VariableDefinitionNode
from graphql.utilities.validate_input_value import validate_input_literal
from graphql.validation import ValuesOfCorrectTypeRule
from opentelemetry import trace
from starlette.responses import JSONResponse, Response
from strawberry.extensions import SchemaExtension

from adapters.deadlines import DeadlinePassed
from domain.errors import DomainError

INTERNAL_MESSAGE = "internal error of the service; it has been logged: report its traceId"

UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    InterfaceError,
    DeadlinePassed,
)

logger = logging.getLogger(__name__)


def format_error(error: GraphQLError, trace_id: int | None = None) -> dict[str, Any]:
    """The error as the response carries it. `trace_id`: the operation's trace, when the
    caller knows it (else the current span's)."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    extensions = dict(formatted.get("extensions") or {})
    if isinstance(original, DomainError):
        extensions["code"] = original.code
        if field := getattr(original, "field", None):
            extensions["field"] = field
        if limit := getattr(original, "limit", None):
            extensions["limit"] = limit  # a documented limit: the caller splits the request
        if outcome := getattr(original, "outcome", None):
            # UNAVAILABLE that may have written (OutcomeUnknown): the client retries with the
            # same eventId rather than assume nothing was stored.
            extensions["outcome"] = outcome
    elif isinstance(original, UNAVAILABLE):
        # The query side's Redis or the audit side's Postgres did not answer.
        logger.warning("backing store unavailable: %s", original)
        # The store's own first line says what is wrong; the rest (SQL context) is not theirs.
        said = (str(original).strip().splitlines() or [type(original).__name__])[0]
        formatted["message"] = f"a backing store is unavailable; retry later ({said})"
        extensions["code"] = "UNAVAILABLE"
    elif original is None or isinstance(original, GraphQLError):
        # Parse, validation and scalar coercion errors: the request itself is malformed.
        extensions.setdefault("code", "BAD_USER_INPUT")
    else:
        where = ".".join(map(str, error.path)) if error.path else "the request"
        extensions["traceId"] = log_internal(original, where, trace_id)
        formatted["message"] = INTERNAL_MESSAGE
        extensions["code"] = "INTERNAL"
    formatted["extensions"] = extensions
    return formatted


def current_trace_id() -> int | None:
    context = trace.get_current_span().get_span_context()
    return context.trace_id if context.is_valid else None


def log_internal(error: BaseException, where: str, trace_id: int | None = None) -> str:
    """Logs a defect with the trace id that its answer carries, so an operator finds both."""
    known = trace_id or current_trace_id()
    # Without a span (none should be missing) an id of the same form still ties answer to log.
    shown = trace.format_trace_id(known) if known else secrets.token_hex(16)
    logger.error("internal error in %s, traceId %s", where, shown, exc_info=error)
    return shown


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **extensions: object,
) -> Response:
    """A refusal outside GraphQL execution, shaped like any GraphQL error."""
    body = {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
    return JSONResponse(body, status_code=status, headers=headers)


class NamedLiteralValues(ValuesOfCorrectTypeRule):
    """The standard check of literal values, its errors naming the field as resolvers do
    (`input.occurredAt`, `inputs[2].eventId`): the same mistake in a variable or inline gets
    the same kind of answer."""

    _where: str | None = None

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self._where = node.name.value

    def enter_variable_definition(self, node: VariableDefinitionNode, *_args: Any) -> None:
        self._where = f"${node.variable.name.value}"

    def is_valid_value_node(
        self, node: ValueNode, input_type: GraphQLInputType | None
    ) -> VisitorAction:
        if input_type is not None:

            def on_error(error: GraphQLError, path: list[str | int]) -> None:
                steps = (f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
                field = "".join([self._where or "", *steps])
                self.report_error(
                    GraphQLError(
                        f"{field}: {error.message}" if field else error.message,
                        error.nodes or node,
                        original_error=error,  # as graphql-core does for a variable
                        extensions={
                            **(error.extensions or {}),
                            "code": "BAD_USER_INPUT",
                            "field": field,
                        },
                    )
                )

            validate_input_literal(
                node, input_type, on_error, None, None, self.context.hide_suggestions
            )
        return SKIP


class NamedLiteralErrors(SchemaExtension):
    """Puts NamedLiteralValues in the place of the standard rule it extends."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = tuple(
            NamedLiteralValues if rule is ValuesOfCorrectTypeRule else rule
            for rule in context.validation_rules
        )
        yield
