"""Schema migrations (as the owner) and the runtime role's login."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from core.db import to_libpq_url
from core.settings import APP_ROLE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(owner_url: URL) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = owner_url.render_as_string(hide_password=False)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(Config(str(ALEMBIC_INI))).get_current_head()
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
