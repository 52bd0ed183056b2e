"""The deploy smoke test's servers: each starts on 127.0.0.1, answers, wants its password, and leaves nothing behind."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis

from tests.deploy.servers import (
    HOST,
    PG_CREATEROLE_OWNER,
    PG_DATABASE,
    PROVIDER_EXTENSIONS,
    PostgresServer,
    moto_s3,
    postgres_server,
    tcp_postgres,
    tcp_redis,
)


def _refuses_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((HOST, port)) != 0


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}").geturl()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path) as running:
        yield running


async def _fetchrow(url: str, sql: str) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql)
        assert row is not None
        return row
    finally:
        await conn.close()


async def test_superuser_owner(server: PostgresServer) -> None:
    url = server.create_database("superuser")
    assert urlsplit(url).hostname == HOST
    row = await _fetchrow(url, "SELECT rolsuper, current_database() AS db FROM pg_roles WHERE rolname = current_user")
    assert row["rolsuper"] is True
    assert row["db"] == PG_DATABASE


async def test_createrole_owner_is_no_superuser_and_owns_the_database(server: PostgresServer) -> None:
    url = server.create_database("createrole")
    row = await _fetchrow(
        url,
        "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication, "
        "d.datdba = r.oid AS owns_database, "
        "(SELECT array_agg(extname::text ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql') AS extensions "
        "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()",
    )
    assert row["rolname"] == PG_CREATEROLE_OWNER
    assert row["rolcreaterole"] is True
    assert [row[name] for name in ("rolsuper", "rolcreatedb", "rolbypassrls", "rolreplication")] == [False] * 4
    assert row["owns_database"] is True
    assert row["extensions"] == sorted(PROVIDER_EXTENSIONS)


@pytest.mark.parametrize("owner", ["superuser", "createrole"])
async def test_a_wrong_password_is_refused_over_tcp(
    server: PostgresServer, owner: Literal["superuser", "createrole"]
) -> None:
    """scram-sha-256, not trust: the right user with a wrong password gets nowhere."""
    url = server.create_database(owner)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_with_password(url, "not-the-password"))


async def test_listens_on_loopback_and_every_rule_asks_for_a_scram_password(server: PostgresServer) -> None:
    conn = await asyncpg.connect(server.superuser_url("postgres"))
    try:
        assert await conn.fetchval("SHOW listen_addresses") == HOST
        assert await conn.fetchval("SHOW password_encryption") == "scram-sha-256"
        rules = await conn.fetch("SELECT type, address, auth_method, error FROM pg_hba_file_rules")
    finally:
        await conn.close()
    assert {(r["type"], r["address"], r["auth_method"], r["error"]) for r in rules} == {
        ("local", None, "scram-sha-256", None),
        ("host", HOST, "scram-sha-256", None),
    }


def test_postgres_stops_and_removes_its_files_even_when_the_test_fails(tmp_path: Path) -> None:
    port, files = 0, tmp_path
    with pytest.raises(RuntimeError, match="the test failed"), postgres_server(tmp_path) as running:
        port, files = running.port, running.files
        assert (files / "data" / "PG_VERSION").exists()
        assert not _refuses_connections(port)
        raise RuntimeError("the test failed")
    assert _refuses_connections(port)
    assert not files.exists()
    assert list(tmp_path.iterdir()) == []


def test_tcp_postgres_yields_the_owner_url(tmp_path: Path) -> None:
    with tcp_postgres(tmp_path / "pg", "createrole") as url:
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.username, parts.path) == (
            "postgresql",
            HOST,
            PG_CREATEROLE_OWNER,
            f"/{PG_DATABASE}",
        )
        assert parts.password
    assert not (tmp_path / "pg").exists()


def test_redis_answers_with_its_password_only(tmp_path: Path) -> None:
    with tcp_redis(tmp_path / "redis") as url:
        parts = urlsplit(url)
        assert parts.hostname == HOST
        client = redis.Redis.from_url(url)
        try:
            assert client.ping() is True
            assert client.config_get("bind") == {"bind": HOST}
            assert client.config_get("save") == {"save": ""}
        finally:
            client.close()
        anonymous = redis.Redis(host=HOST, port=parts.port or 0)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()
    assert _refuses_connections(parts.port or 0)
    assert not (tmp_path / "redis").exists()


def test_s3_put_and_get_through_the_endpoint() -> None:
    with moto_s3() as s3:
        assert urlsplit(s3.endpoint_url).hostname == HOST
        key = f"tenants/{uuid.uuid4()}/object"
        client = s3.client()
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"ciphertext bytes")
        assert client.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"ciphertext bytes"
        assert s3.objects() == {key: b"ciphertext bytes"}
        assert set(s3.env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(s3.endpoint_url, timeout=5)
