"""What every command shares: settings and logging, the app-role database, the one CLI actor.

Commands import the rest of the application inside their own bodies: a command loads only what it
uses, and `phivault worker` must set prometheus-client's multiprocess directory before anything
imports prometheus-client (see `ingest.worker_metrics`), which the API and search modules do.
"""

from __future__ import annotations

import getpass
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer

from core.db import Database, create_engine, verify_app_role
from core.logging import configure_logging
from core.runtime import Services
from core.settings import Settings, get_settings
from models.audit import Actor

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant id (uuid).")]


def cli_settings() -> Settings:
    """The settings, with logging configured as they ask (JSON lines in production)."""
    settings = get_settings()
    if settings.log_json:
        configure_logging()
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return settings


def cli_actor() -> Actor:
    """Who acts from the command line, in every audit event it writes: the operating-system user."""
    return Actor(actor_id=f"cli:{getpass.getuser()}", actor_type="platform")


def parse_uuid(value: str, what: str = "tenant") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise typer.BadParameter(f"{what} must be a uuid") from None


async def open_app_database(settings: Settings, services: Services) -> Database:
    """The app-role database, after the same role guard the API and workers pass."""
    db = Database(create_engine(services.app_url, settings))
    try:
        await verify_app_role(db.engine)
    except BaseException:
        await db.dispose()
        raise
    return db


@asynccontextmanager
async def app_database(settings: Settings, services: Services) -> AsyncIterator[Database]:
    """`open_app_database` for the length of a block, disposed after."""
    db = await open_app_database(settings, services)
    try:
        yield db
    finally:
        await db.dispose()
