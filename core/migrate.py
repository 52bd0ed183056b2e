"""Schema migrations (as the owner) and the runtime role's login."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from core.db import to_libpq_url
from core.settings import APP_ROLE

MIGRATIONS_PACKAGE = "migrations"
"""Found by name where it is installed (a checkout or the wheel), not imported: its env.py loads the models."""


def migrations_dir() -> Path:
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"the {MIGRATIONS_PACKAGE!r} package is not installed")
    return Path(spec.origin).parent


def alembic_config(owner_url: URL | None = None) -> Config:
    """What `alembic.ini` gives the alembic command line, built here so that an installed wheel needs no file."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    if owner_url is not None:
        config.attributes["url"] = owner_url.render_as_string(hide_password=False)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def upgrade(owner_url: URL, revision: str = "head") -> None:
    command.upgrade(alembic_config(owner_url), revision)


def downgrade(owner_url: URL, revision: str) -> None:
    command.downgrade(alembic_config(owner_url), revision)


async def _enable_app_login(owner_url: URL, password: str) -> None:
    conn = await asyncpg.connect(to_libpq_url(owner_url))
    try:
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L NOSUPERUSER NOBYPASSRLS NOCREATEDB "
            "NOCREATEROLE NOINHERIT NOREPLICATION', $1::text, $2::text)",
            APP_ROLE,
            password,
        )
        await conn.execute(statement)
    finally:
        await conn.close()


def migrate(owner_url: URL, app_password: str) -> None:
    """Bring the schema to head and (re)set the runtime role: login, password, no privileges beyond grants."""
    upgrade(owner_url)
    asyncio.run(_enable_app_login(owner_url, app_password))
