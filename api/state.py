from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.db import Database
from core.runtime import Services
from core.settings import Settings


@dataclass
class AppState:
    """What the running API holds: configuration, the app-role database and the broker client."""

    settings: Settings
    services: Services
    database: Database
    redis: Redis
