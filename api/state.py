from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from api.metrics import ApiMetrics
from api.rate_limiter import RateLimits
from core.db import Database
from core.keys import KeyProvider
from core.runtime import Services
from core.security import TokenVerifier
from core.settings import Settings
from core.storage import ObjectStore
from embeddings.base import Embedder
from tenants.query_keys import QueryKeys
from users.revocations import RevocationStore


@dataclass
class AppState:
    """What the running API holds: configuration, the app-role database, the broker, keys and storage."""

    settings: Settings
    services: Services
    database: Database
    redis: Redis
    verifier: TokenVerifier
    keys: KeyProvider
    store: ObjectStore
    enqueue: Callable[[uuid.UUID, uuid.UUID], Awaitable[bool]]
    metrics: ApiMetrics
    embedder: asyncio.Future[Embedder]
    """The model, loaded and warmed in the background from start-up; `/readyz` is green only once it is done."""
    rate_limits: RateLimits | None
    """Upload and search rate limits; None when they are off (`Settings.rate_limits_on`)."""
    query_keys: QueryKeys
    """The tenants' audit query-HMAC keys, unwrapped once per process (`tenants.query_keys`)."""
    revocations: RevocationStore
    """Revoked token ids (`jti`), in Redis, checked on every request whose token carries one."""
