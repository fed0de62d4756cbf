"""Automatic persisted queries: a client sends a document's SHA-256 instead of its text.

The protocol (Apollo's, which most GraphQL clients speak): a request whose
`extensions.persistedQuery` is `{"version": 1, "sha256Hash": H}` and has no `query` runs the
document registered under H, or answers PERSISTED_QUERY_NOT_FOUND; the client then sends the
text with the hash once, which registers it. A send-time hook then needs only a URL: a GET
with `extensions` and `variables`.

Registered documents are kept in the process (a bounded number of bounded size) and, where a
store is given (the query side's Redis), in a hash shared by every process of the deployment,
so a hash an ESP's template carries survives a restart and reaches every replica.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

from graphql import GraphQLError, Lexer, Source, TokenKind

logger = logging.getLogger(__name__)

# ESP templates' documents are a few hundred bytes; a larger one still runs, unregistered.
MAX_DOCUMENT_BYTES = 16_384
# Distinct documents kept, in the process and in the shared store: at most 32 MiB of text.
MAX_DOCUMENTS = 2_000


class PersistedQueryNotFound(Exception):
    """The hash names no document this deployment knows; send the text with it once."""

    code = "PERSISTED_QUERY_NOT_FOUND"
    # The message APQ clients compare with (Apollo's), word for word; the hint is for people.
    message = "PersistedQueryNotFound"
    hint = "no document is registered under this sha256Hash; send the query with it once"

    def __init__(self) -> None:
        super().__init__(self.message)


class PersistedQueryRefused(Exception):
    """`extensions.persistedQuery` is malformed, or its hash is not the query's."""


class SharedStore(Protocol):
    """The deployment's registry (the query side's: adapters.persisted_store)."""

    async def get(self, digest: str) -> str | None: ...

    async def put(self, digest: str, query: str) -> bool:
        """Registers `query` under `digest`; False when the registry is full."""
        ...


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PersistedQueries:
    def __init__(self, shared: SharedStore | None = None, most: int = MAX_DOCUMENTS) -> None:
        self.shared = shared
        self.most = most
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    async def resolve(self, query: object, extensions: object) -> str | None:
        """The document to run: `query` itself, or the one its persisted hash names."""
        asked = _persisted_hash(extensions)
        if asked is None:
            return query if isinstance(query, str) else None
        if isinstance(query, str) and query:
            if sha256_hex(query) != asked:
                raise PersistedQueryRefused(
                    "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query "
                    "(hex of its UTF-8 bytes); send the hash of exactly this text"
                )
            await self._register(asked, query)
            return query
        known = self._get(asked)
        if known is None and self.shared is not None:
            known = await self.shared.get(asked)
            if known is not None:
                self._keep(asked, known)
        if known is None:
            raise PersistedQueryNotFound()
        return known

    async def _register(self, digest: str, query: str) -> None:
        if len(query.encode("utf-8")) > MAX_DOCUMENT_BYTES or self._get(digest) is not None:
            return
        self._keep(digest, query)
        # The shared registry outlives any erasure: a string in the text could be an email.
        if self.shared is not None and not _has_strings(query):
            await self._share(digest, query)

    async def _share(self, digest: str, query: str) -> None:
        assert self.shared is not None
        if not await self.shared.put(digest, query):
            logger.warning(
                "persisted queries: the shared registry holds %d documents; %s is kept in "
                "this process only",
                self.most,
                digest,
            )

    def _get(self, digest: str) -> str | None:
        with self._lock:
            found = self._known.get(digest)
            if found is not None:
                self._known.move_to_end(digest)
            return found

    def _keep(self, digest: str, query: str) -> None:
        with self._lock:
            self._known[digest] = query
            while len(self._known) > self.most:
                self._known.popitem(last=False)


def _has_strings(query: str) -> bool:
    """Whether the document carries string values (else its values come as variables)."""
    lexer = Lexer(Source(query))
    try:
        while (token := lexer.advance()).kind is not TokenKind.EOF:
            if token.kind in (TokenKind.STRING, TokenKind.BLOCK_STRING):
                return True
    except GraphQLError:
        return True  # not a document: nothing to share
    return False


def _persisted_hash(extensions: object) -> str | None:
    if not isinstance(extensions, Mapping) or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, Mapping):
        raise PersistedQueryRefused(
            'extensions.persistedQuery must be an object like {"version": 1, "sha256Hash": "..."}'
        )
    if persisted.get("version") != 1:
        raise PersistedQueryRefused(
            f"extensions.persistedQuery.version is {persisted.get('version')!r}; send 1"
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or len(digest) != 64:
        raise PersistedQueryRefused(
            "extensions.persistedQuery.sha256Hash must be the 64 hex digits of the query's SHA-256"
        )
    try:
        int(digest, 16)
    except ValueError:
        raise PersistedQueryRefused(
            "extensions.persistedQuery.sha256Hash must be hex digits (0-9, a-f)"
        ) from None
    return digest.lower()
