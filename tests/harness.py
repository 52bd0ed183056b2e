"""Shared fixtures (a pytest plugin): the real HTTP app over ASGI, tokens, tenants, and a real Celery worker."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from moto import mock_aws
from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.db import get_database, install_database
from core.runtime import Services
from core.security import Role, mint_token
from core.settings import Settings
from embeddings.base import Tokenizer
from models.chunk import EMBEDDING_DIM
from tests.conftest import TEST_APP_PASSWORD
from tests.waiting import POLL_MAX_SECONDS, Deadline, eventually

AWS_REGION = "us-east-1"
NOTE = b"Discharge summary.\n\nThe patient was treated for community acquired pneumonia and recovered.\n"


@contextmanager
def process_database_kept() -> Iterator[None]:
    """An app's lifespan installs its database as the process database and uninstalls it on exit: put back
    whatever was installed before (the `db` fixture, the shared client's app), so later tests are not affected."""
    try:
        previous = get_database()
    except RuntimeError:
        previous = None
    try:
        yield
    finally:
        install_database(previous)


@asynccontextmanager
async def app_client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a freshly built app, its lifespan running, over ASGI from 127.0.0.1."""
    app = create_app(settings, services)
    with process_database_kept():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield http


@pytest.fixture(scope="session")
async def client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings, services) as http:
        yield http


@dataclass
class SentTasks:
    """A stand-in for `TaskQueue.enqueue` that records what would have been sent to the workers."""

    sent: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)

    async def __call__(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        self.sent.append((tenant_id, document_id))
        await asyncio.sleep(0)  # a real send yields to the loop: concurrent callers interleave here
        return True

    def documents(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        return [document for tenant, document in self.sent if tenant == tenant_id]


class WordTokenizer:
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], None
        for i, ch in enumerate(text + " "):
            if ch.isspace() and start is not None:
                spans.append((start, i))
                start = None
            elif not ch.isspace() and start is None:
                start = i
        return spans


class HashEmbedder:
    """A deterministic stand-in for a new model: unit vectors derived from the text's hash."""

    model_id = "hash-v2"
    dim = EMBEDDING_DIM
    native_dim = 8
    max_tokens = 256
    tokenizer: Tokenizer = WordTokenizer()

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        raw = [b - 127.5 for b in digest[:8]]
        norm = sum(x * x for x in raw) ** 0.5
        return [x / norm for x in raw] + [0.0] * (EMBEDDING_DIM - 8)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


@contextmanager
def database_timeline(engine: AsyncEngine) -> Iterator[list[str]]:
    """What the engine does, in order, while the block runs: `begin`, each statement's SQL, `commit`,
    `rollback`. A test may append its own marks to the list to place them among the statements."""
    timeline: list[str] = []
    sync_engine = engine.sync_engine

    def on_begin(conn: object) -> None:
        timeline.append("begin")

    def on_commit(conn: object) -> None:
        timeline.append("commit")

    def on_rollback(conn: object) -> None:
        timeline.append("rollback")

    def on_statement(conn: object, cursor: object, statement: str, *_: object) -> None:
        timeline.append(" ".join(statement.split()))

    hooks: list[tuple[str, Callable[..., None]]] = [
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
        ("before_cursor_execute", on_statement),
    ]
    for name, hook in hooks:
        event.listen(sync_engine, name, hook)
    try:
        yield timeline
    finally:
        for name, hook in hooks:
            event.remove(sync_engine, name, hook)


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def headers(
        self, role: Role, tenant_id: uuid.UUID | None = None, sub: str | None = None, *, with_jti: bool = True
    ) -> dict[str, str]:
        token = mint_token(
            self.settings, subject=sub or f"{role}-user", role=role, tenant_id=tenant_id, with_jti=with_jti
        )
        return {"Authorization": f"Bearer {token}"}

    def platform(self) -> dict[str, str]:
        return self.headers("platform_admin", sub="platform-operator")


@pytest.fixture(scope="session")
def tokens(settings: Settings) -> Tokens:
    return Tokens(settings)


@pytest.fixture
async def tenant_id(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Clinic {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def audit_actions(owner_engine: AsyncEngine, tenant_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """(action, outcome, resource_id) of a tenant's audit events, oldest first (read as the owner)."""
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT action, outcome, resource_id FROM audit_logs WHERE tenant_id = :t ORDER BY id"),
            {"t": tenant_id},
        )
        return [(row.action, row.outcome, row.resource_id) for row in rows]


def worker_env(settings: Settings, services: Services) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=services.owner_url.render_as_string(hide_password=False),
        REDIS_URL=services.redis_url,
        PHIVAULT_DATA_DIR=str(settings.data_dir),
        PHIVAULT_APP_DB_PASSWORD=TEST_APP_PASSWORD,
        HF_HUB_OFFLINE="1",
    )
    return env


class Worker:
    """A `phivault worker` subprocess (prefork, `concurrency` children) with its log in a file.

    `new_session`: the worker leads a process group of its own (its pid is the group's id), which a
    test can kill whole, as an OOM killer or a redeploy would.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, concurrency: int = 1, new_session: bool = False) -> None:
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.new_session = new_session
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--concurrency", str(self.concurrency)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        deadline = Deadline()
        while not deadline.passed():
            if b"ready." in self.log_path.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(deadline.next_interval())
        raise RuntimeError("the worker did not start:\n" + self.log_path.read_text(errors="replace")[-4000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def child_pids(self) -> list[int]:
        assert self.process is not None
        return [child.pid for child in psutil.Process(self.process.pid).children()]


@pytest.fixture(scope="session")
def worker(settings: Settings, services: Services) -> Iterator[Worker]:
    # Its reconciler would send again the `queued` rows tests insert without a message (and race the
    # tests that run the reconciler themselves); tests/ingest/test_worker_crash.py proves the defaults.
    env = worker_env(settings, services) | {"PHIVAULT_QUEUED_TIMEOUT_SECONDS": str(7 * 86400)}
    running = Worker(env, settings.data_dir / "worker.log")
    running.start()
    yield running
    running.stop()


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    content: bytes = NOTE,
    filename: str = "note.txt",
    metadata: str | None = None,
) -> httpx.Response:
    data = {"metadata": metadata} if metadata is not None else {}
    return await client.post(
        "/v1/documents", files={"file": (filename, content, "application/octet-stream")}, data=data, headers=headers
    )


SETTLED = ("ready", "failed")


async def document_in(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    document_id: str,
    states: tuple[str, ...] = SETTLED,
    max_interval: float = POLL_MAX_SECONDS,
) -> dict[str, object]:
    """The document as read through the API, once its status is one of `states` (fails at the deadline)."""

    async def probe() -> dict[str, object] | None:
        body: dict[str, object] = (await client.get(f"/v1/documents/{document_id}", headers=headers)).json()
        return body if body["status"] in states else None

    return await eventually(probe, f"document {document_id} in {states}", max_interval=max_interval)


@asynccontextmanager
async def scratch_database(owner_engine: AsyncEngine, services: Services, prefix: str) -> AsyncIterator[URL]:
    """An empty database on the test server (owner URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    async with owner_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield services.owner_url.set(database=name)
    finally:
        async with owner_engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, no real endpoint, everything served by moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(variable, raising=False)
    with mock_aws():
        yield


def phivault(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `phivault` CLI in a subprocess with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
