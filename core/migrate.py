"""Schema migrations (as the owner) and the runtime role's login."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db import UnsafeDatabaseRole, to_libpq_url
from core.settings import APP_ROLE, DEFAULT_TENANT_INDEX_MIN_ROWS
from core.vector_indexes import shared_index_sql, tenant_index_name, tenant_index_sql

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


async def current_revision(conn: AsyncConnection) -> str | None:
    """The revision the database is migrated to (None before the first migration ran)."""
    version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    return None if version is None else str(version)


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

_HOLDER_MAY_CHANGE = {
    "rolcreatedb": "owner_createdb",
    "rolreplication": "owner_replication",
    "rolbypassrls": "owner_bypassrls",
}
"""Attributes a non-superuser (with CREATEROLE and the ADMIN option on the role) may change only if it has
them itself (PostgreSQL 16+), and the `_ROLE_FACTS` column that says whether the owner has it. SUPERUSER
only a superuser may change."""

_ROLE_FACTS = (
    "SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreatedb, r.rolcreaterole, r.rolinherit, r.rolreplication, "
    "me.rolname AS owner, me.rolsuper AS owner_super, me.rolbypassrls AS owner_bypassrls, "
    "me.rolcreatedb AS owner_createdb, me.rolreplication AS owner_replication "
    "FROM pg_roles r, pg_roles me WHERE r.rolname = $1 AND me.rolname = current_user"
)


class AppRoleNotManageable(UnsafeDatabaseRole):
    """The owner cannot turn the runtime role into a plain login role; an administrator has to step in."""


def _attributes_beyond_owner(facts: asyncpg.Record) -> list[str]:
    """The runtime role's forbidden attributes that this owner is not allowed to remove."""
    if facts["owner_super"]:
        return []
    return [
        attribute
        for column, attribute in _FORBIDDEN_ATTRIBUTES.items()
        if facts[column]
        and (column == "rolsuper" or (column in _HOLDER_MAY_CHANGE and not facts[_HOLDER_MAY_CHANGE[column]]))
    ]


async def _enable_app_login(owner_url: URL, password: str) -> None:
    """Let the runtime role log in with `password`, and take away any attribute it must not have.

    Only attributes that are actually set are named: on PostgreSQL 16+ a non-superuser owner with
    CREATEROLE (RDS, Azure, Cloud SQL, Supabase, Neon) may not even state `NOSUPERUSER`, and may
    state `NOBYPASSRLS`, `NOREPLICATION` or `NOCREATEDB` only if it has that attribute itself,
    whatever the role's current value.
    """
    conn = await asyncpg.connect(to_libpq_url(owner_url))
    try:
        facts = await conn.fetchrow(_ROLE_FACTS, APP_ROLE)
        if facts is None:
            raise RuntimeError(f"role {APP_ROLE!r} does not exist: the first migration creates it")
        owner = facts["owner"]
        removals = [f"NO{attribute}" for column, attribute in _FORBIDDEN_ATTRIBUTES.items() if facts[column]]
        beyond = _attributes_beyond_owner(facts)
        if beyond:
            raise AppRoleNotManageable(
                f"role {APP_ROLE!r} has {', '.join(beyond)}, which the owner {owner!r} in DATABASE_URL may not "
                "remove (only a superuser may change SUPERUSER; BYPASSRLS, REPLICATION and CREATEDB only a role "
                f"that has them), and the API and workers refuse to run as such a role. Have an administrator run "
                f"`ALTER ROLE {APP_ROLE} {' '.join(removals)}`, then run `phivault migrate` again."
            )
        statement = await conn.fetchval(
            "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L ' || $3::text, $1::text, $2::text)",
            APP_ROLE,
            password,
            " ".join(removals),
        )
        try:
            await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise AppRoleNotManageable(
                f"the owner {owner!r} in DATABASE_URL may not alter role {APP_ROLE!r} ({exc.message}"
                + (f": {exc.detail}" if exc.detail else "")
                + f"). It needs CREATEROLE and, on PostgreSQL 16+, the ADMIN option on {APP_ROLE!r}, which it has "
                f"when it created the role itself; for a role someone else created, have an administrator run "
                f"`GRANT {APP_ROLE} TO {owner} WITH ADMIN OPTION`, then run `phivault migrate` again."
            ) from exc
    finally:
        await conn.close()


@dataclass(frozen=True)
class SearchIndexes:
    """What `ensure_search_indexes` found the chunks to need: the widths, and the (tenant, width) pairs
    with an index of their own."""

    widths: list[int]
    tenants: list[tuple[uuid.UUID, int]]


async def ensure_search_indexes(owner_url: URL, tenant_index_min_rows: int) -> SearchIndexes:
    """A shared HNSW index for every embedding width the chunks hold, and one of its own for every tenant with at
    least `tenant_index_min_rows` chunks of a width (`core/vector_indexes.py`). Run by `phivault migrate`: run it
    again after switching models, and as tenants grow (an index left invalid by an interrupted build is rebuilt)."""
    conn = await asyncpg.connect(to_libpq_url(owner_url))
    try:
        widths: set[int] = set()
        large: list[tuple[uuid.UUID, int]] = []
        # Tenant by tenant, as row-level security wants even of an owner that is not a superuser.
        async with conn.transaction():
            for tenant_id in [row[0] for row in await conn.fetch("SELECT phivault_tenant_ids()")]:
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id))
                counts = await conn.fetch(
                    "SELECT embedding_dims, count(*) FROM document_chunks WHERE tenant_id = $1 GROUP BY 1", tenant_id
                )
                widths.update(int(dims) for dims, _ in counts)
                large += [(tenant_id, int(dims)) for dims, rows in counts if rows >= tenant_index_min_rows]
        for dims in sorted(widths):
            await conn.execute(shared_index_sql(dims))
        for tenant_id, dims in large:
            name = tenant_index_name(tenant_id, dims)
            if await conn.fetchval(_INVALID_INDEX, name):
                await conn.execute(f"DROP INDEX CONCURRENTLY {name}")
            await conn.execute(tenant_index_sql(tenant_id, dims))  # outside a transaction: CONCURRENTLY
        return SearchIndexes(widths=sorted(widths), tenants=large)
    finally:
        await conn.close()


_INVALID_INDEX = (
    "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1"
)


def migrate(
    owner_url: URL, app_password: str, tenant_index_min_rows: int = DEFAULT_TENANT_INDEX_MIN_ROWS
) -> None:
    """Bring the schema to head, create the search indexes the chunks need, and (re)set the runtime role:
    login, password, no privileges beyond grants."""
    upgrade(owner_url)
    asyncio.run(ensure_search_indexes(owner_url, tenant_index_min_rows))
    asyncio.run(_enable_app_login(owner_url, app_password))
