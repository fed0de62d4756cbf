"""The typed context every resolver receives, and the services behind it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from strawberry.dataloader import DataLoader

from adapters import deadlines
from adapters.event_store import ping_store
from adapters.settings import Settings
from adapters.store_wait import WhenReachable
from adapters.telemetry import Telemetry
from api.persisted_queries import SharedStore
from domain.application import ProfileApplication
from domain.batch import Outcome
from domain.commands import Command, CommandResult
from domain.errors import DomainError, OutcomeUnknown, StoreUnavailable
from domain.group_commit import GroupCommitter
from domain.ports import Clock

R = TypeVar("R")

READY_SECONDS = 2.0  # /readyz answers within this, or the deadline if shorter
# Of a request's deadline, what is kept for turning the store's silence into an answer and
# sending it: the store work itself ends this much sooner.
ANSWER_MARGIN = 0.1
# How long past its deadline a command's caller waits for the committer, which bounds its
# own work by the deadline: only a wedged committer thread is ever this late.
ANSWER_GRACE = 1.0

if TYPE_CHECKING:
    from projections.profile_queries import ProfileQueries, ProfileView
    from projections.segment_queries import SegmentQueries
    from projections.status import StatusReader


class EventStore:
    """The event store as request handlers reach it: the application once Postgres answers
    (`WhenReachable`), each call on a worker thread and within the request deadline."""

    def __init__(self, app: WhenReachable[ProfileApplication], deadline_seconds: float) -> None:
        self._app = app
        self.deadline_seconds = deadline_seconds

    def app(self) -> ProfileApplication:
        return self._app.get()

    async def call(self, fn: Callable[[ProfileApplication], R], seconds: float | None = None) -> R:
        app = self.app()
        bound = self.deadline_seconds if seconds is None else seconds
        return await asyncio.to_thread(_within, bound, fn, app)

    async def check(self) -> None:
        """What /readyz asks: a statement through the pool that requests use, in the time
        they would have (so it says 200 exactly when requests can be served)."""
        await self.call(ping_store, seconds=min(self.deadline_seconds, READY_SECONDS))

    def close(self) -> None:
        self._app.close()


def _within(seconds: float, fn: Callable[[ProfileApplication], R], app: ProfileApplication) -> R:
    with deadlines.within(seconds - ANSWER_MARGIN):
        return fn(app)


class CommandBus:
    """Hands command units to the group committer without blocking the event loop, and
    answers each within the deadline whatever the store does."""

    def __init__(
        self,
        store: EventStore,
        committer: Callable[[ProfileApplication], GroupCommitter],
    ) -> None:
        self.store = store
        self._make = committer
        self._committer: GroupCommitter | None = None
        self._lock = threading.Lock()

    async def run(self, unit: Sequence[Command]) -> list[CommandResult]:
        committer = self._committer_for(self.store.app())
        seconds = self.store.deadline_seconds
        future = committer.submit(unit, time.monotonic() + seconds - ANSWER_MARGIN)
        try:
            # Cancelling the wait cancels the unit only if it was not taken yet (`_late`).
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), seconds + ANSWER_GRACE)
        except TimeoutError:
            outcome = _late(future)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def _committer_for(self, app: ProfileApplication) -> GroupCommitter:
        with self._lock:
            if self._committer is None:
                self._committer = self._make(app)
            return self._committer

    def close(self) -> None:
        with self._lock:
            committer, self._committer = self._committer, None
        if committer is not None:
            committer.close()


def _late(future: Future[Outcome]) -> Outcome:
    """The outcome of a unit the committer did not answer in time (it bounds its own work,
    so this is a last resort)."""
    if future.cancel():
        raise StoreUnavailable(
            "the event store did not take this command in time; nothing was written, send it again"
        )
    if future.done():
        return future.result()
    raise OutcomeUnknown(
        "the event store did not answer in time while storing this command; send it again "
        "with the same eventId, which is answered duplicate: true if it was stored"
    )


@dataclass
class Services:
    settings: Settings
    clock: Clock
    telemetry: Telemetry
    commands: CommandBus | None = None
    profiles: ProfileQueries | None = None
    segments: SegmentQueries | None = None
    status: StatusReader | None = None
    audit: EventStore | None = None
    persisted: SharedStore | None = None  # the query side's registry of persisted queries
    closers: list[Any] = field(default_factory=list)
    # Name -> a cheap call that raises when that store is down (readiness).
    probes: dict[str, Callable[[], Awaitable[object]]] = field(default_factory=dict)

    async def check_stores(self) -> dict[str, str]:
        results: dict[str, str] = {}
        for name, probe in self.probes.items():
            try:
                await asyncio.wait_for(probe(), timeout=2)
                results[name] = "ok"
            except Exception as error:
                # What an operator needs to act: the store's own words (no secrets in them).
                results[name] = f"unavailable: {str(error) or type(error).__name__}"
        return results


@dataclass
class Context:
    services: Services
    request: Request
    profile_loader: DataLoader[str, ProfileView | None] | None = None
    # Redis reads of this request in flight at once: a document of many aliases waits for
    # its own turns instead of taking the connections other requests need.
    reading: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.reading = asyncio.Semaphore(self.services.settings.limits.request_connections)

    async def read(self, call: Awaitable[R]) -> R:
        """Awaits one read-model read within this request's share of connections."""
        async with self.reading:
            return await call

    def profiles(self) -> ProfileQueries:
        assert self.services.profiles is not None, "query side not wired"
        return self.services.profiles
