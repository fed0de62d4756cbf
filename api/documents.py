"""GraphQL documents before they run: parsed within a token budget, measured against the
request limits, validated, and kept for the next request in a cache bounded in bytes.

One extension does what strawberry's ParserCache and ValidationCache would do, because their
caches are bounded in entries only: a thousand documents of 2,000 aliases each held about
2 GB. Here each document is weighed by an estimate of its syntax tree, and one larger than a
sixteenth of the budget is parsed for its request and not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
    validate,
)
from graphql.type.definition import GraphQLInterfaceType
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from strawberry.extensions import SchemaExtension

from adapters.collector import LARGE_WORK
from adapters.settings import RequestLimits

# Measured with tracemalloc on graphql-core 3.3: a parsed document holds 68-115 bytes per
# character of query text (an alias-heavy one 68-74, a small query 113); comments and long
# string literals cost about 1, so this overestimates them, which only keeps them out sooner.
TREE_BYTES_PER_CHAR = 120
# A list field's objects when an argument sizes it but as a variable: the longest list any
# argument of the contract accepts (members, history, recordInteractions take up to 1,000).
UNKNOWN_LIST = 1_000
# ... and when no argument sizes it (segments, a profile's segments, introspection's types).
UNSIZED_LIST = 10


# Introspection's entry points, which no type lists among its fields.
_META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


class OverLimit(GraphQLError):
    """A document over one of the request limits; `extensions.limit` names it."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT", "limit": limit})


@dataclass(frozen=True)
class Checked:
    """A document as the cache keeps it: its tree and what its check found."""

    document: DocumentNode
    errors: tuple[GraphQLError, ...]


class DocumentCache:
    """Checked documents by query text, least recently used first out, within `budget` bytes
    of estimated tree size. Shared by the requests of one schema (one per endpoint)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[str, Checked] = OrderedDict()
        self._lock = threading.Lock()  # a process may serve from several threads

    @staticmethod
    def weight(text: str) -> int:
        return len(text) * TREE_BYTES_PER_CHAR

    def get(self, text: str) -> Checked | None:
        with self._lock:
            found = self._entries.get(text)
            if found is not None:
                self._entries.move_to_end(text)
            return found

    def put(self, text: str, checked: Checked) -> None:
        weight = self.weight(text)
        if weight > self.budget // 16:
            return
        with self._lock:
            if text in self._entries:
                return
            self._entries[text] = checked
            self.used += weight
            while self.used > self.budget:
                old, _ = self._entries.popitem(last=False)
                self.used -= self.weight(old)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Measure:
    """What a document asks for; the walk stops as soon as one figure is over its limit."""

    depth: int = 0
    aliases: int = 0
    fields: int = 0
    cost: int = 0


class _Walk:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, limits: RequestLimits):
        self.schema = schema
        self.limits = limits
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.measure = Measure()
        self.over: OverLimit | None = None

    def operation(self, node: OperationDefinitionNode) -> None:
        root = self.schema.get_root_type(node.operation)
        if root is not None:
            self.selections(node.selection_set, root, 1, 1, ())

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType,
        objects: int,
        depth: int,
        spreading: tuple[str, ...],
    ) -> None:
        for selection in selection_set.selections:
            if self.over is not None:
                return
            if isinstance(selection, FieldNode):
                self.field(selection, parent, objects, depth, spreading)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = self.schema.get_type(condition.name.value) if condition else parent
                self.selections(selection.selection_set, on or parent, objects, depth, spreading)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spreading:
                    continue  # validation names the unknown fragment or the cycle
                on = self.schema.get_type(fragment.type_condition.name.value) or parent
                self.selections(fragment.selection_set, on, objects, depth, (*spreading, name))

    def field(
        self,
        node: FieldNode,
        parent: GraphQLNamedType,
        objects: int,
        depth: int,
        spreading: tuple[str, ...],
    ) -> None:
        m, limits = self.measure, self.limits
        m.fields += 1
        m.aliases += node.alias is not None
        m.cost += objects
        m.depth = max(m.depth, depth)
        if m.depth > limits.depth:
            self.refuse("depth", f"nests selections {m.depth} deep; at most {limits.depth}")
        elif m.aliases > limits.aliases:
            self.refuse("aliases", f"has over {limits.aliases} aliases; at most {limits.aliases}")
        elif m.fields > limits.fields:
            self.refuse("fields", f"selects over {limits.fields} fields (each fragment use counts)")
        elif m.cost > limits.cost:
            self.refuse("cost", f"may answer over {limits.cost} values; ask for fewer")
        if self.over is not None or node.selection_set is None:
            return
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return
        definition = _META_FIELDS.get(node.name.value) or parent.fields.get(node.name.value)
        if definition is None:
            return  # validation names the unknown field
        inner = objects * (_list_size(node) if _is_list(definition.type) else 1)
        child = get_named_type(definition.type)
        self.selections(node.selection_set, child, inner, depth + 1, spreading)

    def refuse(self, limit: str, message: str) -> None:
        name = {"fields": "PROFILES_MAX_FIELDS", "cost": "PROFILES_MAX_COST"}.get(
            limit, f"PROFILES_MAX_{limit.upper()}"
        )
        self.over = OverLimit(
            limit, f"the document {message} (limit {name}); split it into several requests"
        )


def _is_list(kind: GraphQLOutputType) -> bool:
    while isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    return isinstance(kind, GraphQLList)


def _list_size(node: FieldNode) -> int:
    """How many objects a list field may answer: its `first`, or the length of a list it is
    given (`profiles(customerIds: [...])`); UNKNOWN_LIST when that is a variable."""
    size = UNSIZED_LIST
    for argument in node.arguments or ():
        value, name = argument.value, argument.name.value
        if name == "first" and isinstance(value, IntValueNode):
            return max(int(value.value), 0)
        if isinstance(value, ListValueNode):
            return len(value.values)
        if name == "first" or isinstance(value, VariableNode):
            size = UNKNOWN_LIST
    return size


def measure(
    schema: GraphQLSchema, document: DocumentNode, limits: RequestLimits
) -> OverLimit | None:
    """The first limit the document's largest operation goes over, or None."""
    walk = _Walk(schema, document, limits)
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            walk.measure = Measure()
            walk.operation(definition)
            if walk.over is not None:
                return walk.over
    return None


def check(
    schema: GraphQLSchema,
    text: str,
    limits: RequestLimits,
    rules: Sequence[type] | None = None,
) -> Checked:
    """Parses (refusing past the token limit), measures, then validates `text`."""
    try:
        document = parse(text, max_tokens=limits.tokens)
    except GraphQLError as error:
        if "tokens" in error.message and "more than" in error.message:
            raise OverLimit(
                "tokens",
                f"the document has more than {limits.tokens} tokens (limit PROFILES_MAX_TOKENS); "
                "send values as variables or split it into several requests",
            ) from None
        raise
    over = measure(schema, document, limits)
    if over is not None:
        return Checked(document, (over,))
    errors = validate(schema, document, rules) if rules is not None else validate(schema, document)
    return Checked(document, tuple(errors))


class CheckedDocuments(SchemaExtension):
    """Parses and validates through `cache`; a refused document never reaches execution.
    A factory per request: `lambda: CheckedDocuments(cache, limits)`."""

    def __init__(self, cache: DocumentCache, limits: RequestLimits) -> None:
        super().__init__()
        self.cache = cache
        self.limits = limits
        self._found: Checked | None = None  # this request's, also when too large to keep

    def _checked(self) -> Checked:
        if self._found is not None:
            return self._found
        context = self.execution_context
        text = context.query or ""
        found = self.cache.get(text)
        if found is None:
            LARGE_WORK.spent(DocumentCache.weight(text))  # before: a refusal leaves cycles too
            found = check(context.schema._schema, text, self.limits, list(context.validation_rules))
            self.cache.put(text, found)
        self._found = found
        return found

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            context.graphql_document = self._checked().document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is not None:
            context.pre_execution_errors = list(self._checked().errors)
        yield
