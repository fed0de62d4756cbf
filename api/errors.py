"""Turns errors into the contract's `extensions.code`, and hides what callers must not see."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from eventsourcing.persistence import InterfaceError, OperationalError
from graphql import GraphQLError

from adapters.deadlines import DeadlinePassed
from domain.errors import DomainError

UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OperationalError,
    InterfaceError,
    DeadlinePassed,
)

logger = logging.getLogger(__name__)


class AccessDenied(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def format_error(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    extensions = dict(formatted.get("extensions") or {})
    if isinstance(original, DomainError | AccessDenied):
        extensions["code"] = original.code
        if field := getattr(original, "field", None):
            extensions["field"] = field
        if outcome := getattr(original, "outcome", None):
            # UNAVAILABLE that may have written (OutcomeUnknown): the client retries with the
            # same eventId rather than assume nothing was stored.
            extensions["outcome"] = outcome
    elif isinstance(original, UNAVAILABLE):
        # The query side's Redis or the audit side's Postgres did not answer.
        logger.warning("backing store unavailable: %s", original)
        formatted["message"] = f"a backing store is unavailable; retry later ({original})"
        extensions["code"] = "UNAVAILABLE"
    elif original is None or isinstance(original, GraphQLError):
        # Parse, validation and scalar coercion errors: the request itself is malformed.
        extensions.setdefault("code", "BAD_USER_INPUT")
    else:
        logger.error("unexpected error in %s", error.path, exc_info=original)
        formatted["message"] = "internal error; it has been logged"
        extensions["code"] = "INTERNAL_SERVER_ERROR"
    formatted["extensions"] = extensions
    return formatted
