"""The FastAPI application: start-up checks, routes, error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from redis.asyncio import Redis

from api.console import install_console
from api.errors import install_error_handlers
from api.limits import UploadSizeLimitMiddleware
from api.metrics import ApiMetrics
from api.middleware import RequestContextMiddleware
from api.openapi import API_DESCRIPTION, TAGS, install_openapi
from api.rate_limiter import RateLimits
from api.routes import audit, documents, embeddings, health, metrics, search, tenants, users
from api.state import AppState
from core.db import Database, create_engine, install_database, verify_app_role
from core.keys import key_provider_from_settings
from core.runtime import Services, resolve_services
from core.security import TokenVerifier
from core.settings import Settings, get_settings
from core.storage import object_store_from_settings
from ingest.queue import TaskQueue
from search.warmup import warm_search
from tenants.query_keys import QueryKeys
from users.revocations import RevocationStore


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app. Services are resolved at start-up unless given (tests, `phivault up`)."""
    settings = settings or get_settings()
    api_metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = services or resolve_services(settings)
        database = Database(create_engine(resolved.app_url, settings))
        redis = Redis.from_url(resolved.redis_url)
        queue = TaskQueue(resolved.redis_url)
        rate_limits = RateLimits(settings, resolved.redis_url) if settings.rate_limits_on else None
        revocations = RevocationStore(resolved.redis_url)
        try:
            await verify_app_role(database.engine)
            install_database(database)
            keys = key_provider_from_settings(settings)
            app.state.phivault = AppState(
                settings=settings,
                services=resolved,
                database=database,
                redis=redis,
                verifier=TokenVerifier(settings),
                keys=keys,
                store=object_store_from_settings(settings, keys),
                enqueue=queue.enqueue,
                metrics=api_metrics,
                embedder=asyncio.create_task(warm_search(database, settings)),
                rate_limits=rate_limits,
                query_keys=QueryKeys(database, keys),
                revocations=revocations,
            )
            yield
        finally:
            install_database(None)
            queue.close()
            if rate_limits is not None:
                await rate_limits.aclose()
            await revocations.aclose()
            await redis.aclose()
            await database.dispose()

    app = FastAPIOffline(  # /docs and /redoc load their scripts and styles from this package, not a CDN
        title="PHIVault",
        version="0.1.0",
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )
    app.add_middleware(UploadSizeLimitMiddleware, max_upload_bytes=settings.max_upload_bytes)
    api_metrics.instrument(app)  # inside the request context layer: an unhandled error is timed as a 500
    app.add_middleware(RequestContextMiddleware, trusted_proxies=settings.trusted_proxies, hsts=settings.hsts)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(tenants.router)
    app.include_router(documents.router)
    app.include_router(search.router)
    app.include_router(embeddings.router)
    app.include_router(audit.router)
    app.include_router(users.router)
    install_console(app, settings)
    install_openapi(app)
    return app
