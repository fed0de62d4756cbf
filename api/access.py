"""Who may call an endpoint, and how often: API keys, their roles and their request rates."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import Response

from adapters.settings import Settings
from api.errors import error_response
from api.token_bucket import TokenBucket


def presented_key(headers: Headers) -> str | None:
    """The key of `Authorization: Bearer KEY` (any case of the scheme) or of `X-API-Key`."""
    authorization = headers.get("authorization")
    if authorization is None:
        return headers.get("x-api-key")
    scheme, _, key = authorization.strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


class Access:
    """The keys of PROFILES_API_KEYS; one token bucket per rate-limited key, shared by every
    endpoint of the process."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = settings.api_keys
        self._limits = settings.rate_limits
        self._buckets = {
            key: TokenBucket(limit.rate, limit.burst, clock)
            for key, limit in settings.rate_limits.items()
        }

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def refuse(self, headers: Headers, role: str) -> Response | None:
        """The answer to a request this key may not make now, or None to let it through."""
        key = presented_key(headers)
        roles = self._keys.get(key or "")
        if key is None or roles is None:
            return error_response(
                401,
                "UNAUTHENTICATED",
                "send a known API key as 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role not in roles:
            return error_response(
                403, "FORBIDDEN", f"this key may use {sorted(roles)}, not the {role} endpoint"
            )
        bucket = self._buckets.get(key)
        wait = bucket.take() if bucket is not None else 0.0
        if wait == 0.0:
            return None
        limit = self._limits[key]
        retry_after = math.ceil(wait * 1_000) / 1_000
        return error_response(
            429,
            "RATE_LIMITED",
            f"this key may make {limit.rate:g} requests a second ({limit.burst} at once); "
            f"retry after {retry_after:g} s",
            headers={"Retry-After": str(math.ceil(wait))},
            retryAfter=retry_after,
        )
