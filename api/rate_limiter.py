"""Per-user and per-tenant request rate limits for upload and search, counted in Redis.

Counts live in the broker's Redis, so every API replica shares them. Each operation has
two moving-window limits: one per token subject within its tenant, one per tenant. The
user limit is taken first, so a user refused by it does not use up the tenant's budget.
If Redis cannot be reached the request is let through (fail open): the limiter guards
capacity, and must never stop clinical work because its own store is down.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import limits
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from api.errors import APIError
from core.settings import Settings

log = logging.getLogger(__name__)

Operation = Literal["upload", "search"]

STORE_TIMEOUT_SECONDS = 0.5
"""How long a limiter call may wait on Redis before the request is let through."""

class RateLimited(APIError):
    """429 `rate_limited`; `Retry-After` is the whole seconds until the window admits another request."""

    def __init__(self, scope: Literal["user", "tenant"], retry_after: int) -> None:
        message = f"the per-{scope} rate limit for this operation was reached; retry after {retry_after} seconds"
        super().__init__(429, "rate_limited", message, headers={"Retry-After": str(retry_after)})


@dataclass(frozen=True)
class _Limits:
    user: limits.RateLimitItem
    tenant: limits.RateLimitItem


class RateLimits:
    """The limiter over its own small Redis connection pool (short timeouts, so failing open is quick)."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self._pool = ConnectionPool.from_url(
            redis_url, socket_timeout=STORE_TIMEOUT_SECONDS, socket_connect_timeout=STORE_TIMEOUT_SECONDS
        )
        storage = RedisStorage(
            "async+redis://",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix="phivault:ratelimit",
            connection_pool=self._pool,  # type: ignore[arg-type]  # passed through to redis-py's client
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits: dict[Operation, _Limits] = {
            "upload": _Limits(
                limits.parse(settings.rate_limit_upload), limits.parse(settings.rate_limit_tenant_upload)
            ),
            "search": _Limits(
                limits.parse(settings.rate_limit_search), limits.parse(settings.rate_limit_tenant_search)
            ),
        }

    async def check(self, operation: Operation, tenant_id: str, subject: str) -> None:
        """Take one request from both limits, or raise `RateLimited`; let it through if Redis is down."""
        items = self._limits[operation]
        # A digest of the verified subject: no client-chosen text becomes part of a Redis key.
        user = hashlib.sha256(subject.encode()).hexdigest()[:32]
        try:
            if not await self._limiter.hit(items.user, operation, "user", tenant_id, user):
                raise RateLimited("user", await self._retry_after(items.user, operation, "user", tenant_id, user))
            if not await self._limiter.hit(items.tenant, operation, "tenant", tenant_id):
                raise RateLimited("tenant", await self._retry_after(items.tenant, operation, "tenant", tenant_id))
        except StorageError as exc:
            log.warning("rate limit store unavailable, request allowed: %s", type(exc.storage_error).__name__)

    async def _retry_after(self, item: limits.RateLimitItem, *identifiers: str) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def aclose(self) -> None:
        await self._pool.aclose()
