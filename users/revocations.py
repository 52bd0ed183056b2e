"""Revoked token ids (`jti`), held in Redis so every API replica refuses them from the next request on.

A revocation is one key per (scope, jti) that expires with the token, so the store never needs sweeping.
The scope is the revoking admin's tenant (a tenant admin can revoke only tokens acting in its own tenant)
or `*` for a platform administrator's revocation, which holds in every tenant. Keys carry a digest of
the jti, never the client-chosen text itself. Unlike the rate limiter, the check fails closed: a
revocation that cannot be checked is not a pass (`RevocationsUnavailable`, answered 503).
"""

from __future__ import annotations

import hashlib
import uuid

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

STORE_TIMEOUT_SECONDS = 1.0
"""How long a check may wait on Redis before the request is refused as unavailable."""

PLATFORM_SCOPE = "*"
KEY_PREFIX = "phivault:revoked-jti"


class RevocationsUnavailable(Exception):
    """Redis could not be asked whether a token is revoked (or told that one is)."""


def revocation_scope(tenant_id: uuid.UUID | None) -> str:
    """Where a revocation holds: the revoking admin's tenant, or everywhere for a platform administrator."""
    return PLATFORM_SCOPE if tenant_id is None else str(tenant_id)


def revocation_key(scope: str, jti: str) -> str:
    return f"{KEY_PREFIX}:{scope}:{hashlib.sha256(jti.encode()).hexdigest()}"


class RevocationStore:
    """The revoked jtis over a small Redis connection pool of their own, with short timeouts."""

    def __init__(self, redis_url: str) -> None:
        self._pool = ConnectionPool.from_url(
            redis_url, socket_timeout=STORE_TIMEOUT_SECONDS, socket_connect_timeout=STORE_TIMEOUT_SECONDS
        )
        self._redis = Redis(connection_pool=self._pool)

    async def revoke(self, scope: str, jti: str, ttl_seconds: int) -> None:
        try:
            await self._redis.set(revocation_key(scope, jti), "1", ex=ttl_seconds)
        except (RedisError, OSError) as exc:
            raise RevocationsUnavailable(type(exc).__name__) from exc

    async def is_revoked(self, tenant_id: uuid.UUID | None, jti: str) -> bool:
        """One `EXISTS` over the token's tenant scope and the platform-wide one."""
        keys = {revocation_key(revocation_scope(tenant_id), jti), revocation_key(PLATFORM_SCOPE, jti)}
        try:
            return bool(await self._redis.exists(*keys))
        except (RedisError, OSError) as exc:
            raise RevocationsUnavailable(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._pool.aclose()
