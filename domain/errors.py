"""Errors the domain raises. Outer layers translate them into transport codes (GraphQL, DLQ)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a command can end with; `code` is the contract's error code."""

    code = "BAD_USER_INPUT"


class InvalidInput(DomainError):
    """Input that can never succeed as sent; `field` is the path of the offending value."""

    code = "BAD_USER_INPUT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ListTooLong(InvalidInput):
    """A list (or page) longer than an argument accepts; named in `extensions.limit`."""

    limit = "listLength"


class CustomerErased(DomainError):
    code = "ERASED"

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id!r} was erased; commands for this id are refused")
        self.customer_id = customer_id


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class StoreUnavailable(DomainError):
    """A backing store did not answer; nothing was written and the command may be retried."""

    code = "UNAVAILABLE"


class OutcomeUnknown(StoreUnavailable):
    """The store stopped answering while a write was being committed, and did not answer in
    time to tell whether it was stored. The only UNAVAILABLE that may have written: a retry
    with the same eventId is then answered duplicate: true."""

    outcome = "unknown"  # extensions.outcome


class SourceMoved(DomainError):
    """Another consumer stored a position past this batch's start: nothing of it was written.

    Not a fault of any message: the consumer re-reads its positions and carries on from there.
    """

    code = "CONFLICT"
