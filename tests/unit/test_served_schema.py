"""The served schemas declare the contract's nullable arguments with their defaults."""

from __future__ import annotations

from graphql import GraphQLObjectType, print_type

from api.audit_schema import build_audit_schema
from api.query_schema import build_query_schema


def field_line(schema_type: object, field: str) -> str:
    assert isinstance(schema_type, GraphQLObjectType)
    return next(
        line.strip()
        for line in print_type(schema_type).splitlines()
        if line.strip().startswith(f"{field}(")
    )


def test_paging_arguments_are_nullable_with_the_contracts_defaults() -> None:
    query = build_query_schema()._schema
    audit = build_audit_schema()._schema
    assert field_line(query.get_type("Profile"), "recentInteractions") == (
        "recentInteractions(first: Int = 10): [Interaction!]!"
    )
    assert field_line(query.get_type("Segment"), "members") == (
        "members(first: Int = 100, after: String = null): MemberPage!"
    )
    assert field_line(query.get_type("Query"), "profile") == (
        "profile(customerId: ID!, minPosition: Long = null): Profile"
    )
    assert field_line(audit.query_type, "history") == (
        "history(customerId: ID!, after: Int = 0, first: Int = 100): HistoryPage!"
    )
