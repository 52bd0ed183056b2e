"""Database engines and the one door to tenant data: `tenant_session`.

Two roles, two URLs: `DATABASE_URL` is the owner (migrations only); the API and
workers connect as `phivault_app`, which cannot bypass row-level security. Every
transaction that touches tenant data is opened by `tenant_session`, which first
sets `app.tenant_id` for that transaction only (`set_config(..., true)`), so a
pooled connection never carries one tenant's context into another's request.

When PostgreSQL goes away, the pool recovers by itself: a connection that broke
mid-use is invalidated, and every pooled one is pinged at checkout (`pool_pre_ping`),
so the first request after PostgreSQL is back gets a fresh connection.
`database_unavailable` says which errors are such an outage (the API answers 503,
the worker retries) rather than a fault of the statement.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from core.settings import APP_ROLE, Settings

SYSTEM_TENANT_ID = uuid.UUID(int=0)

_SET_TENANT = text("SELECT set_config('app.tenant_id', :tid, true)")

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long opening one connection may take (asyncpg's own default is 60 s, which holds a request that long)."""

_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
"""admin_shutdown, crash_shutdown, cannot_connect_now (starting up or shutting down), too_many_connections;
besides these, every code of class 08 (connection_exception)."""


class UnsafeDatabaseRole(RuntimeError):
    """The runtime role could bypass tenant isolation or the append-only audit log."""


class DatabaseUnreachable(ConnectionError):
    """No connection to PostgreSQL could be opened (refused, reset, timed out, no such host).

    The driver raises these as bare `OSError`s, which would be indistinguishable from a failing disk;
    the engine's connect hook re-raises them as this, with the original as `__cause__`.
    """


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL being unreachable or not serving for now, so that a retry may succeed.

    True for: no connection could be opened; the connection broke (SQLAlchemy invalidated it, or the
    driver saw it close); the server is shutting down, crashed or starting up; no free connection slot,
    in the server or in the pool. Every other error (a constraint, a type, a permission, a syntax
    error) is about the statement itself, and stays what it is.
    """
    if isinstance(exc, DatabaseUnreachable | PoolTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    cause: BaseException | None = exc.orig
    while cause is not None:
        if isinstance(cause, asyncpg.ConnectionDoesNotExistError):
            return True
        if isinstance(cause, asyncpg.PostgresError):
            return cause.sqlstate.startswith("08") or cause.sqlstate in _UNAVAILABLE_SQLSTATES
        cause = cause.__cause__
    return False


def to_asyncpg_url(url: str) -> URL:
    """Normalise `postgres://` / `postgresql://` URLs to the asyncpg driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg")


def to_libpq_url(url: URL) -> str:
    """The plain `postgresql://` form of a URL (for asyncpg.connect and humans), password kept."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class DatabaseUrls:
    owner: URL
    app: URL


def database_urls(settings: Settings, owner_url: str) -> DatabaseUrls:
    """The owner URL as given, and the app URL: explicit, or the owner URL with the app role."""
    owner = to_asyncpg_url(owner_url)
    if settings.app_database_url:
        app = to_asyncpg_url(settings.app_database_url)
    else:
        app = owner.set(username=APP_ROLE, password=settings.app_db_password.get_secret_value())
    return DatabaseUrls(owner=owner, app=app)


def create_engine(url: URL, settings: Settings) -> AsyncEngine:
    """The pooled engine; statement parameters never appear in its errors (they can hold PHI)."""
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args=connect_args(settings),
    )
    event.listen(engine.sync_engine, "do_connect", _connect)
    return engine


def _connect(dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
    """The dialect's own connect, with the driver's socket-level failures named `DatabaseUnreachable`."""
    try:
        return dialect.connect(*cargs, **cparams)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnreachable(f"cannot connect to the database ({type(exc).__name__})") from exc


def connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg connection arguments; behind PgBouncer (transaction mode) no prepared statement outlives its query.

    PgBouncer hands each transaction to any server connection, so a statement prepared and
    cached on one may be missing, or clash by name, on the next: both caches are off and
    every statement gets a unique name. `tenant_session` needs nothing more, because its
    `set_config(..., true)` lasts exactly one transaction, which PgBouncer never splits.
    """
    args: dict[str, Any] = {"server_settings": {"application_name": "phivault"}, "timeout": CONNECT_TIMEOUT_SECONDS}
    if settings.db_pgbouncer:
        args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=lambda: f"__asyncpg_{uuid.uuid4()}__",
        )
    return args


class Database:
    """The process's app-role engine and session factory (one per process and event loop)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def tenant_session(self, tenant_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """One transaction scoped to `tenant_id`: commits on success, rolls back on error.

        The tenant context is set before anything else runs and is local to the
        transaction, so it disappears with the commit or rollback.
        """
        if not isinstance(tenant_id, uuid.UUID):
            raise TypeError("tenant_id must be a uuid.UUID")
        async with self.sessionmaker() as session, session.begin():
            await session.execute(_SET_TENANT, {"tid": str(tenant_id)})
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


_ROLE_FACTS = text(
    """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls,
           (SELECT pg_has_role(current_user, d.datdba, 'MEMBER')
              FROM pg_database d WHERE d.datname = current_database()) AS owns_database,
           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
               AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS owned_relations,
           (SELECT count(*) FROM pg_namespace n
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
               AND pg_has_role(current_user, n.nspowner, 'MEMBER')) AS owned_schemas
      FROM pg_roles r WHERE r.rolname = current_user
    """
)

_AUDIT_WRITE_PRIVILEGES = text(
    """
    SELECT has_table_privilege('audit_logs', 'UPDATE') OR has_table_privilege('audit_logs', 'DELETE')
        OR has_table_privilege('audit_logs', 'TRUNCATE')
    """
)

_UNFORCED_TENANT_TABLES = text(
    """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
       AND (c.relname = 'tenants' OR EXISTS (
             SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))
       AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
     ORDER BY 1
    """
)


async def verify_app_role(engine: AsyncEngine) -> None:
    """Refuse to run as a role that could read across tenants or rewrite the audit trail."""
    async with engine.connect() as conn:
        facts = (await conn.execute(_ROLE_FACTS)).mappings().one()
        problems: list[str] = []
        if facts["rolsuper"]:
            problems.append("it is a superuser")
        if facts["rolbypassrls"]:
            problems.append("it has BYPASSRLS")
        if facts["owns_database"]:
            problems.append("it owns the database")
        if facts["owned_relations"] or facts["owned_schemas"]:
            problems.append("it owns tables or schemas (owners are exempt from grants and can alter policies)")
        if not problems and await conn.scalar(_AUDIT_WRITE_PRIVILEGES):
            problems.append("it may UPDATE, DELETE or TRUNCATE audit_logs")
        unforced = list((await conn.scalars(_UNFORCED_TENANT_TABLES)).all())
        if unforced:
            problems.append("row-level security is not enabled and forced on " + ", ".join(unforced))
        await conn.rollback()
    if problems:
        raise UnsafeDatabaseRole(
            f"refusing to run as database role {facts['rolname']!r}: "
            + "; ".join(problems)
            + f". Connect the API and workers as {APP_ROLE!r} (run `phivault migrate` to create it)."
        )


_database: Database | None = None


def install_database(database: Database | None) -> None:
    """Make `database` the process's app-role database (done once at API or worker start)."""
    global _database
    _database = database


def get_database() -> Database:
    if _database is None:
        raise RuntimeError("the database is not initialised in this process")
    return _database


Row = TypeVar("Row")


async def written(session: AsyncSession, row: Row) -> Row:
    """Send `row`'s pending changes and read back what the database set (defaults, triggers, `updated_at`)."""
    await session.flush()
    await session.refresh(row)
    return row


def tenant_session(tenant_id: uuid.UUID) -> AbstractAsyncContextManager[AsyncSession]:
    """The only way application code reaches tenant data: see `Database.tenant_session`."""
    return get_database().tenant_session(tenant_id)
