"""Where the database and broker are: configured URLs, or the embedded servers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import URL

from core.db import DatabaseUrls, database_urls
from core.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from core.settings import Settings


@dataclass(frozen=True)
class Services:
    database: DatabaseUrls
    redis_url: str
    embedded_postgres: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None

    @property
    def owner_url(self) -> URL:
        return self.database.owner

    @property
    def app_url(self) -> URL:
        return self.database.app


def resolve_services(settings: Settings, *, need_redis: bool = True) -> Services:
    """Use `DATABASE_URL` / `REDIS_URL` when set; otherwise start (or attach to) the embedded servers."""
    embedded_pg = None
    owner_url = settings.database_url
    if owner_url is None:
        embedded_pg = start_postgres(settings.data_dir, shared_buffers=settings.embedded_shared_buffers)
        owner_url = embedded_pg.url()
    embedded_redis = None
    redis_url = settings.redis_url or ""
    if not redis_url and need_redis:
        embedded_redis = start_redis(settings.data_dir)
        redis_url = embedded_redis.url
    return Services(
        database=database_urls(settings, owner_url),
        redis_url=redis_url,
        embedded_postgres=embedded_pg,
        embedded_redis=embedded_redis,
    )


def throwaway_services(settings: Settings) -> Services:
    """A private embedded stack in `settings.data_dir`, migrated, deleted at exit (tests, benchmarks)."""
    from core.migrate import migrate

    postgres = start_postgres(settings.data_dir, cleanup="delete", shared_buffers=settings.embedded_shared_buffers)
    redis = start_redis(settings.data_dir / "redis")
    services = Services(
        database=database_urls(settings, postgres.url()),
        redis_url=redis.url,
        embedded_postgres=postgres,
        embedded_redis=redis,
    )
    migrate(services.owner_url, settings.app_db_password.get_secret_value(), settings.search_tenant_index_min_rows)
    return services
