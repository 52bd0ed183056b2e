"""The embedded PostgreSQL keeps its data across a stop and a restart."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from core.embedded import start_postgres
from tests.conftest import run_in_fresh_loop


def test_data_survives_a_restart(tmp_path: Path) -> None:
    first = start_postgres(tmp_path, database="persist")

    async def write() -> None:
        conn = await asyncpg.connect(first.url(database="persist"))
        await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        await conn.close()

    run_in_fresh_loop(write)
    first.server.cleanup()  # stops the server: this process held its only handle

    second = start_postgres(tmp_path, database="persist")
    try:

        async def read() -> object:
            conn = await asyncpg.connect(second.url(database="persist"))
            try:
                return await conn.fetchval("SELECT v FROM kept")
            finally:
                await conn.close()

        assert run_in_fresh_loop(read) == "still here"
        assert second.server.get_pid() != first.server.get_pid()
    finally:
        second.server.cleanup()


def test_shared_buffers_is_set_once_and_kept(tmp_path: Path) -> None:
    """`PHIVAULT_EMBEDDED_SHARED_BUFFERS`: the server restarts with it once; attaching again does not restart it."""
    embedded = start_postgres(tmp_path, database="buffers", shared_buffers="256MB")

    async def state() -> tuple[object, object]:
        conn = await asyncpg.connect(embedded.url(database="buffers"))
        try:
            return await conn.fetchval("SHOW shared_buffers"), await conn.fetchval("SELECT pg_postmaster_start_time()")
        finally:
            await conn.close()

    try:
        buffers, started = run_in_fresh_loop(state)
        assert buffers == "256MB"
        start_postgres(tmp_path, database="buffers", shared_buffers="256MB")
        assert run_in_fresh_loop(state) == (buffers, started)
    finally:
        embedded.server.cleanup()
