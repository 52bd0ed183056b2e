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


_FORBIDDEN_ATTRIBUTES = {
    "rolsuper": "SUPERUSER",
    "rolbypassrls": "BYPASSRLS",
    "rolcreatedb": "CREATEDB",
    "rolcreaterole": "CREATEROLE",
    "rolinherit": "INHERIT",
    "rolreplication": "REPLICATION",
}
"""pg_roles columns that must be false for the runtime role, and the attribute each one is."""


async def _enable_app_login(owner_url: URL, password: str) -> None:
    """Let the runtime role log in with `password`, and take away any attribute it must not have.

    Only attributes that are actually set are named: on PostgreSQL 16+ a non-superuser owner with
    CREATEROLE (RDS, Azure, Cloud SQL, Supabase, Neon) may not even state `NOSUPERUSER`,
    `NOBYPASSRLS` or `NOREPLICATION`, whatever the role's current value.
    """
    conn = await asyncpg.connect(to_libpq_url(owner_url))
    try:
        facts = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolinherit, rolreplication "
            "FROM pg_roles WHERE rolname = $1",
            APP_ROLE,
        )
        if facts is None:
            raise RuntimeError(f"role {APP_ROLE!r} does not exist: the first migration creates it")
        removals = " ".join(f"NO{attribute}" for column, attribute in _FORBIDDEN_ATTRIBUTES.items() if facts[column])
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L ' || $3::text, $1::text, $2::text)",
            APP_ROLE,
            password,
            removals,
        )
        try:
            await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RuntimeError(
                f"the owner in DATABASE_URL may not change role {APP_ROLE!r} ({removals or 'LOGIN, PASSWORD'}): "
                f"grant it CREATEROLE, or have a superuser run: ALTER ROLE {APP_ROLE} {removals or 'LOGIN'}"
            ) from exc
    finally:
        await conn.close()


def migrate(owner_url: URL, app_password: str) -> None:
    """Bring the schema to head and (re)set the runtime role: login, password, no privileges beyond grants."""
    upgrade(owner_url)
    asyncio.run(_enable_app_login(owner_url, app_password))
