"""The Starlette application: one GraphQL endpoint per role, /metrics and /healthz."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from adapters.collector import freeze_startup_heap
from adapters.settings import RequestLimits, Settings
from adapters.telemetry import Telemetry, setup_telemetry
from api.access import Access
from api.audit_schema import build_audit_schema
from api.bootstrap import ROLES, build_services
from api.commands_schema import build_command_schema
from api.context import Context, Services
from api.errors import INTERNAL_MESSAGE, error_response, format_error, log_internal
from api.fast_path import CommandFastPath
from api.persisted_queries import PersistedQueries, PersistedQueryNotFound, PersistedQueryRefused
from api.projector_job import start_projector
from api.query_plan import QueryFastPath
from api.query_schema import build_query_schema
from api.request_json import BadRequest, request_body, request_json
from domain.application import utc_now
from domain.ports import Clock

logger = logging.getLogger(__name__)

PATHS = {"commands": "/commands/graphql", "query": "/graphql", "audit": "/audit/graphql"}
NO_STORE = (b"cache-control", b"no-store")


class RoleGraphQL(GraphQL[Context, None]):
    """A GraphQL endpoint for one role: checks the API key, formats errors with their codes,
    and answers every request with a JSON body, whatever fails."""

    def __init__(
        self, schema: BaseSchema, services: Services, role: str, access: Access | None = None
    ) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.services = services
        self.role = role
        self.access = access or Access(services.settings)
        self.fast: CommandFastPath | QueryFastPath | None = None
        if services.settings.fast_path and role == "commands":
            self.fast = CommandFastPath(services)
        elif services.settings.fast_path and role == "query":
            self.fast = QueryFastPath(services, schema._schema)  # type: ignore[attr-defined]
        # The query side's registry is shared through Redis; the other sides keep their own.
        self.persisted = PersistedQueries(services.persisted if role == "query" else None)

    def encode_json(self, data: object) -> str | bytes:
        # orjson: the stdlib encoder took a tenth of the query side's CPU on profile answers.
        # What it refuses (a lone surrogate echoed in an error, an int beyond 64 bits) the
        # stdlib spells, escaped.
        try:
            return orjson.dumps(data)
        except (orjson.JSONEncodeError, TypeError):
            return super().encode_json(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Answers carry personal data, errors may echo it: no cache keeps any of them.
                message = {**message, "headers": [*message.get("headers", ()), NO_STORE]}
            await send(message)

        try:
            await self._answer(scope, receive, watched)
        except Exception as error:
            if started:  # too late for an answer of our own: the server ends the connection
                raise
            await self._internal(error, scope)(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        denied = self._deny(request)
        if denied is not None:
            await denied(scope, receive, send)
            return
        body = await self._bounded_body(request)
        if body is None:
            await self._too_large()(scope, receive, send)
            return
        if self.fast is not None:
            answer = await self._answer_fast(request, body)
            if answer is not None:
                await answer(scope, receive, send)
                return
        await super().__call__(scope, _replay(body), send)

    async def _bounded_body(self, request: Request) -> bytes | None:
        """The body (a GET's URL parameters count too), or None past the size limit, found
        without reading more than the limit: a 10 MB body is refused, never held."""
        limit = self.services.settings.limits.body_bytes
        if len(request.scope.get("query_string", b"")) > limit:
            return None
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> Response:
        limit = self.services.settings.limits.body_bytes
        return error_response(
            413,
            "BAD_USER_INPUT",
            f"the request is over {limit} bytes (limit PROFILES_MAX_BODY_BYTES); send values "
            "as variables once, or fewer of them per request",
            limit="bodyBytes",
        )

    def _internal(self, error: Exception, scope: Scope) -> Response:
        """A defect outside GraphQL execution (the HTTP layer, the context): a JSON answer
        with the contract's INTERNAL and a trace of its own to find the log line by."""
        where = f"{scope.get('method', 'HTTP')} {scope.get('path', '')}"
        with self.services.telemetry.span("http.internal_error", path=where) as span:
            span.record_exception(error)
            trace_id = log_internal(error, where, span.get_span_context().trace_id)
        return error_response(500, "INTERNAL", INTERNAL_MESSAGE, traceId=trace_id)

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        # Requests the view refuses before executing (unknown operationName, no query, bad
        # JSON) answer as GraphQL errors with a code, like every other error, not as plain text.
        try:
            return await super().run(request, context, root_value)
        except HTTPException as error:
            return error_response(error.status_code, "BAD_USER_INPUT", error.reason)
        except (PersistedQueryNotFound, PersistedQueryRefused) as error:
            return _persisted_error(error)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, list):
            return data  # batching is off: the view refuses it
        query = await self.persisted.resolve(data.query, data.extensions)
        return data if query is data.query else replace(data, query=query)

    def decode_json(self, data: str | bytes) -> object:
        # Strawberry hands over the body as bytes and a URL parameter as text.
        try:
            return request_body(data) if isinstance(data, bytes) else request_json(data)
        except BadRequest as error:
            raise HTTPException(400, str(error)) from None

    async def _answer_fast(self, request: Request, body: bytes) -> Response | None:
        assert self.fast is not None
        try:
            if _is_json_post(request):
                parsed = request_body(body)
            elif request.method == "GET" and isinstance(self.fast, QueryFastPath):
                parsed = _query_parameters(request)  # mutations never run from a GET
            else:
                return None
        except BadRequest:
            return None  # strawberry refuses it, as it refuses it on every endpoint
        try:
            query = await self.persisted.resolve(parsed.get("query"), parsed.get("extensions"))
        except (PersistedQueryNotFound, PersistedQueryRefused) as error:
            return _persisted_error(error)
        if query is not None:
            parsed = {**parsed, "query": query}
        result = await self.fast.answer(parsed)
        if result is None:
            return None
        # The view's own encoder: a fast answer is byte for byte what strawberry would send.
        return Response(self.encode_json(result), media_type="application/json")

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET naming a persisted query (extensions, no query) is an operation, not a visit.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    def _deny(self, request: Request) -> Response | None:
        # The GraphiQL page itself carries no data; every operation is checked (a GET that
        # names a persisted query has no `query` parameter).
        asks = "query" in request.query_params or "extensions" in request.query_params
        if not self.access.required or (request.method == "GET" and not asks):
            return None
        return self.access.refuse(request.headers, self.role)

    async def get_context(self, request: Request, response: Any) -> Context:  # type: ignore[override]
        return Context(services=self.services, request=request)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            trace_id = getattr(request.state, "trace_id", None)
            response["errors"] = [format_error(e, trace_id) for e in result.errors]
        stale = getattr(request.state, "read_your_writes", None)
        if stale is not None:
            response["extensions"] = {"readYourWrites": stale}
        return response


def _persisted_error(error: PersistedQueryNotFound | PersistedQueryRefused) -> Response:
    if isinstance(error, PersistedQueryNotFound):
        return error_response(200, error.code, error.message, hint=error.hint)  # APQ's answer
    return error_response(400, "BAD_USER_INPUT", str(error), field="extensions.persistedQuery")


def _query_parameters(request: Request) -> dict[str, object]:
    """A GET's GraphQL parameters, decoded as strawberry decodes them."""
    params: dict[str, object] = dict(request.query_params)
    for name in ("variables", "extensions"):
        raw = params.get(name)
        if isinstance(raw, str) and raw:
            params[name] = request_json(raw)
    return params


def _is_json_post(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return request.method == "POST" and content_type.startswith("application/json")


def _replay(body: bytes) -> Receive:
    """A receive channel that hands the already-read body to strawberry's view."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def create_app(
    settings: Settings,
    role: str = "all",
    *,
    clock: Clock = utc_now,
    project: bool = False,
    telemetry: Telemetry | None = None,
) -> Starlette:
    """`role` is all, commands, query or audit; `project` also runs the projector in-process."""
    roles = set(ROLES) if role == "all" else {role}
    if not roles <= set(ROLES):
        raise ValueError(f"unknown role {role!r}; use all, commands, query or audit")
    telemetry = telemetry or setup_telemetry(settings)
    services = build_services(settings, roles, telemetry, clock)
    schemas: dict[str, Callable[[RequestLimits], BaseSchema]] = {
        "commands": build_command_schema,
        "query": build_query_schema,
        "audit": build_audit_schema,
    }
    access = Access(settings)  # one allowance per key for the whole process
    routes = [
        Route(
            PATHS[r],
            RoleGraphQL(schemas[r](settings.limits), services, r, access),
            methods=["GET", "POST"],
        )
        for r in ROLES
        if r in roles
    ]

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(
            telemetry.prometheus_text(), media_type="text/plain; version=0.0.4"
        )

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "roles": sorted(roles)})

    async def ready(_: Request) -> Response:
        """Ready when every store this process's roles use answers."""
        checks = await services.check_stores()
        status = 200 if all(v == "ok" for v in checks.values()) else 503
        return JSONResponse({"status": "ok" if status == 200 else "unavailable", **checks}, status)

    routes += [Route("/metrics", metrics), Route("/healthz", health), Route("/readyz", ready)]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        handle = start_projector(settings, telemetry, clock) if project else None
        freeze_startup_heap()
        try:
            yield
        finally:
            if handle is not None:
                handle.close()
            for close in reversed(services.closers):
                result = close()
                if inspect.isawaitable(result):
                    await result
            telemetry.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return app
