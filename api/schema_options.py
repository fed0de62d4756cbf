"""What every schema gets: documents checked against the request limits and cached within a
byte budget, a trace span per operation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import strawberry
from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from adapters.settings import RequestLimits
from api.documents import CheckedDocuments, DocumentCache
from api.errors import NamedLiteralErrors
from api.scalars import SCALARS


class OperationSpan(SchemaExtension):
    """One span per GraphQL operation; the event-store write and the batch nest inside it."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        telemetry = context.services.telemetry
        name = self.execution_context.operation_name or "anonymous"
        started = time.perf_counter()
        with telemetry.span(f"graphql {name}") as span:
            # The trace an INTERNAL answer names; errors are formatted after the span ends.
            context.request.state.trace_id = span.get_span_context().trace_id
            yield
        elapsed = time.perf_counter() - started
        try:
            mutation = self.execution_context.operation_type is OperationType.MUTATION
        except RuntimeError:  # the document did not parse: no operation to classify
            mutation = False
        histogram = telemetry.command_duration if mutation else telemetry.query_duration
        histogram.record(elapsed, {"field": _root_field(self.execution_context)})


def _root_field(context: ExecutionContext) -> str:
    """The first root field (recordInteraction, profile, ...), when the schema has it: a
    label clients cannot vary, as each distinct label keeps a series in memory for good."""
    document = context.graphql_document
    for definition in document.definitions if document else ():
        if isinstance(definition, OperationDefinitionNode):
            root = context.schema._schema.get_root_type(definition.operation)
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    name = selection.name.value
                    known = root is not None and name in root.fields
                    return name if known or name == "__schema" else "unknown"
    return "unknown"


class ProfileSchema(strawberry.Schema):
    """Our scalars and extensions; errors are logged where they are formatted (format_error),
    once each and with their trace id, and a caller's bad input not at all."""

    def __init__(self, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        limits = limits or RequestLimits()
        extensions = schema_extensions(limits, DocumentCache(limits.document_cache_bytes))
        super().__init__(config=SCALARS, extensions=extensions, **kwargs)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        pass


def schema_extensions(
    limits: RequestLimits, documents: DocumentCache
) -> list[Callable[[], SchemaExtension] | type[SchemaExtension]]:
    # Parsing and validation dominate a small query's cost; caching them is most of the speed.
    # The cache is the schema's, so a fresh extension per request still hits it.
    return [
        NamedLiteralErrors,  # first: it sets the validation rules the check runs
        lambda: CheckedDocuments(documents, limits),
        OperationSpan,
    ]
