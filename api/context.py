"""The typed context every resolver receives, and the services behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from strawberry.dataloader import DataLoader

from adapters.settings import Settings
from adapters.telemetry import Telemetry
from domain.commands import Command, CommandResult
from domain.errors import DomainError
from domain.group_commit import GroupCommitter
from domain.ports import Clock

if TYPE_CHECKING:
    from domain.application import ProfileApplication
    from projections.profile_queries import ProfileQueries, ProfileView
    from projections.segment_queries import SegmentQueries
    from projections.status import StatusReader


class CommandBus:
    """Hands command units to the group committer without blocking the event loop."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer

    async def run(self, unit: Sequence[Command]) -> list[CommandResult]:
        outcome = await asyncio.wrap_future(self._committer.submit(unit))
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome


@dataclass
class Services:
    settings: Settings
    clock: Clock
    telemetry: Telemetry
    commands: CommandBus | None = None
    command_app: ProfileApplication | None = None
    profiles: ProfileQueries | None = None
    segments: SegmentQueries | None = None
    status: StatusReader | None = None
    audit_app: ProfileApplication | None = None
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
                results[name] = f"unavailable: {type(error).__name__}"
        return results


@dataclass
class Context:
    services: Services
    request: Request
    profile_loader: DataLoader[str, ProfileView | None] | None = None

    def profiles(self) -> ProfileQueries:
        assert self.services.profiles is not None, "query side not wired"
        return self.services.profiles
