"""Object storage failing during an upload: a 503 in the error shape, no orphan row, no orphan object.

Each case runs against the local encrypted store and against the S3 envelope store on moto's server
(real HTTP on 127.0.0.1), and each ends with the same upload retried once the fault is gone: 202, one
row, one object. The faults are real where they can be: a store directory that cannot be created, an
S3 endpoint that refuses connections, PostgreSQL stopped between the put and the commit. A put cut off
midway is a source whose reads fail (as a failing spool disk would) after the store began writing.
"""

from __future__ import annotations

import errno
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import httpx
import pytest

from core.keys import TenantKeyRef
from core.storage import DEFAULT_CHUNK_SIZE, MIB, ObjectStore, StoredObject
from tests.deploy.servers import PostgresServer, S3Endpoint, moto_s3
from tests.faults.conftest import FaultStack, RunningApp, create_tenant, document_rows, files_under, running_app
from tests.harness import upload
from tests.security.error_shape import assert_error
from tests.waiting import patience, wait_until

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from sqlalchemy.ext.asyncio import AsyncEngine

LINE = b"Progress note. Vital signs stable; the wound is healing well and the dressing was changed.\n"


def note(size: int = 0) -> bytes:
    """A plain-text note of at least `size` bytes, unique to the call (so it is never a duplicate)."""
    head = f"Note {uuid.uuid4()}.\n".encode()
    return head + LINE * max(1, (size - len(head)) // len(LINE) + 1)


@dataclass
class Backend:
    """One kind of store, and how to break it, mend it, and list everything it holds."""

    name: str
    settings_update: dict[str, object]
    objects: Callable[[], list[str]]
    """Every stored object's key, and anything half-written (temporary files, unfinished multipart uploads)."""
    break_store: Callable[[], None]
    mend_store: Callable[[], None]
    half_written: Callable[[], list[str]] = field(default=lambda: [])


def local_backend(data_dir: Path) -> Backend:
    objects = data_dir / "objects"
    blocker = objects / "tenants"

    def break_store() -> None:
        # Where every tenant's directory must go, a file: creating the object's directory fails (ENOTDIR).
        objects.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"")

    def listing() -> list[str]:
        return [f"tenants/{name}" for name in files_under(blocker)] if blocker.is_dir() else []

    return Backend(
        name="local",
        settings_update={"storage": "local"},
        objects=listing,
        break_store=break_store,
        mend_store=lambda: blocker.unlink(missing_ok=True),
        half_written=lambda: [name for name in listing() if Path(name).name.startswith(".upload-")],
    )


def s3_backend(endpoint: S3Endpoint) -> Backend:
    client = endpoint.client()

    def unfinished() -> list[str]:
        return [item["Key"] for item in client.list_multipart_uploads(Bucket=endpoint.bucket).get("Uploads", [])]

    return Backend(
        name="s3",
        settings_update={
            "storage": "s3",
            "s3_bucket": endpoint.bucket,
            "s3_endpoint_url": endpoint.endpoint_url,
            "s3_encryption": "envelope",
            "aws_region": endpoint.region,
        },
        objects=lambda: endpoint.object_keys() + unfinished(),
        break_store=endpoint.server.stop,
        mend_store=endpoint.server.start,
        half_written=unfinished,
    )


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "local":
        yield local_backend(tmp_path / "data")
        return
    with moto_s3() as endpoint:
        for name, value in endpoint.env.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(name, raising=False)
        yield s3_backend(endpoint)


@pytest.fixture
async def app(fault_stack: FaultStack, backend: Backend, tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = fault_stack.settings_for(tmp_path / "data", **backend.settings_update)
    async with running_app(settings, fault_stack.services) as running:
        yield running


def assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0


async def assert_retry_succeeds(
    app: RunningApp, backend: Backend, owner: AsyncEngine, tenant_id: uuid.UUID, content: bytes
) -> None:
    """The same upload once the fault is gone: 202, and exactly one row with exactly its one object."""
    response = await upload(app.http, app.tokens.headers("member", tenant_id), content)
    assert response.status_code == 202, response.text
    rows = await document_rows(owner, tenant_id)
    assert [str(row[0]) for row in rows] == [response.json()["id"]]
    assert backend.objects() == [rows[0][1]]


def spool(app: RunningApp) -> list[str]:
    return files_under(app.state.settings.data_dir / "spool")


async def test_a_store_that_fails_answers_503_and_keeps_nothing(
    app: RunningApp, backend: Backend, fault_owner: AsyncEngine
) -> None:
    tenant_id = await create_tenant(app)
    content = note()
    backend.break_store()
    try:
        response = await upload(app.http, app.tokens.headers("member", tenant_id), content)
    finally:
        backend.mend_store()
    assert_unavailable(response)
    assert await document_rows(fault_owner, tenant_id) == []
    assert backend.objects() == []
    assert spool(app) == []
    await assert_retry_succeeds(app, backend, fault_owner, tenant_id, content)


class Delegating:
    """An `ObjectStore` that passes everything to the app's real store; subclasses change `put`."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        return self.inner.put(tenant, document_id, source)

    def iter_plaintext(
        self, tenant: TenantKeyRef, document_id: uuid.UUID, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[bytes]:
        return self.inner.iter_plaintext(tenant, document_id, chunk_size)

    def read(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bytes:
        return self.inner.read(tenant, document_id)

    def delete(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        self.inner.delete(tenant_id, document_id)

    def exists(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        return self.inner.exists(tenant_id, document_id)

    def rekey(self, tenant: TenantKeyRef, document_id: uuid.UUID) -> bool:
        return self.inner.rekey(tenant, document_id)

    def document_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        return self.inner.document_ids(tenant_id)


class StopsDatabaseAfterPut(Delegating):
    """The real put, then PostgreSQL goes away (fast shutdown) before the row can be committed."""

    def __init__(self, inner: ObjectStore, postgres: PostgresServer) -> None:
        super().__init__(inner)
        self.postgres = postgres
        self.stored: list[bool] = []

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        stored = self.inner.put(tenant, document_id, source)
        self.stored.append(self.inner.exists(tenant.tenant_id, document_id))
        self.postgres.stop()
        return stored


async def test_a_commit_that_fails_after_the_put_removes_the_object(
    app: RunningApp, backend: Backend, fault_stack: FaultStack, fault_owner: AsyncEngine
) -> None:
    tenant_id = await create_tenant(app)
    content = note()
    real_store = app.state.store
    app.state.store = faulty = StopsDatabaseAfterPut(real_store, fault_stack.postgres)
    try:
        response = await upload(app.http, app.tokens.headers("member", tenant_id), content)
    finally:
        app.state.store = real_store
        fault_stack.postgres.start()
    assert faulty.stored == [True], "the object was not stored before the database went away"
    assert_unavailable(response)
    assert "database" in response.json()["error"]["message"]
    assert backend.objects() == []
    assert await document_rows(fault_owner, tenant_id) == []
    assert spool(app) == []
    await assert_retry_succeeds(app, backend, fault_owner, tenant_id, content)


class FailsAfterStoring(Delegating):
    """The real put, then a failure of the store itself (as S3's check of the stored object, or a directory
    sync after the rename, may fail once the object is in place)."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.stored: list[bool] = []

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        self.inner.put(tenant, document_id, source)
        self.stored.append(self.inner.exists(tenant.tenant_id, document_id))
        raise OSError(errno.EIO, "input/output error")


async def test_a_put_that_fails_once_the_object_is_stored_removes_it(
    app: RunningApp, backend: Backend, fault_owner: AsyncEngine
) -> None:
    tenant_id = await create_tenant(app)
    content = note()
    real_store = app.state.store
    app.state.store = faulty = FailsAfterStoring(real_store)
    try:
        response = await upload(app.http, app.tokens.headers("member", tenant_id), content)
    finally:
        app.state.store = real_store
    assert faulty.stored == [True]
    assert_unavailable(response)
    assert "storage" in response.json()["error"]["message"]
    assert backend.objects() == []
    assert await document_rows(fault_owner, tenant_id) == []
    await assert_retry_succeeds(app, backend, fault_owner, tenant_id, content)


class _FailingReads(io.RawIOBase):
    """The upload's bytes, until `limit` of them were read; then every read fails with EIO."""

    def __init__(self, source: BinaryIO, limit: int, on_failure: Callable[[], None]) -> None:
        super().__init__()
        self.source, self.limit, self.on_failure = source, limit, on_failure

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.source.seek(offset, whence)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        position = self.source.tell()
        if position >= self.limit:
            self.on_failure()
            raise OSError(errno.EIO, "input/output error")
        with memoryview(buffer) as target:
            data = self.source.read(min(len(target), self.limit - position))
            target[: len(data)] = data
        return len(data)


class CutsOffMidway(Delegating):
    """The real put over a source that fails after `limit` bytes; what the store held then is recorded."""

    def __init__(self, inner: ObjectStore, limit: int, half_written: Callable[[], list[str]]) -> None:
        super().__init__(inner)
        self.limit = limit
        self.half_written = half_written
        self.seen: list[list[str]] = []

    def put(self, tenant: TenantKeyRef, document_id: uuid.UUID, source: BinaryIO) -> StoredObject:
        failing = _FailingReads(source, self.limit, self._record)
        return self.inner.put(tenant, document_id, io.BufferedReader(failing))

    def _record(self) -> None:
        """What is half-written when the source fails (S3 starts the multipart upload in a thread of its own)."""
        try:
            self.seen.append(
                wait_until(lambda: self.half_written() or None, "the store to begin writing", seconds=patience(0.1))
            )
        except AssertionError:
            self.seen.append([])


async def test_a_put_cut_off_midway_leaves_no_partial_object(
    app: RunningApp, backend: Backend, fault_owner: AsyncEngine
) -> None:
    # Locally, past the first segments (a temporary file is being written). In S3, while the second 8 MiB part
    # is read: the multipart upload was created and its first part sent (the store reads a segment ahead).
    size, limit = (3 * MIB, 2 * MIB) if backend.name == "local" else (20 * MIB, 13 * MIB)
    tenant_id = await create_tenant(app)
    content = note(size)
    real_store = app.state.store
    app.state.store = faulty = CutsOffMidway(real_store, limit, backend.half_written)
    try:
        response = await upload(app.http, app.tokens.headers("member", tenant_id), content)
    finally:
        app.state.store = real_store
    assert faulty.seen, "the source never failed"
    assert faulty.seen[0], "the store had not begun writing when the source failed"
    assert_unavailable(response)
    assert backend.objects() == []
    assert await document_rows(fault_owner, tenant_id) == []
    assert spool(app) == []
    await assert_retry_succeeds(app, backend, fault_owner, tenant_id, content)


@pytest.mark.parametrize("backend", ["s3"], indirect=True)
async def test_a_download_while_the_store_is_down_answers_503_then_succeeds(
    app: RunningApp, backend: Backend, fault_owner: AsyncEngine
) -> None:
    """The object is fetched before the response starts, so a store outage is a clean 503 the client retries."""
    tenant_id = await create_tenant(app)
    headers = app.tokens.headers("member", tenant_id)
    content = note()
    document_id = (await upload(app.http, headers, content)).json()["id"]
    backend.break_store()
    try:
        response = await app.http.get(f"/v1/documents/{document_id}/content", headers=headers)
    finally:
        backend.mend_store()
    assert_unavailable(response)
    again = await app.http.get(f"/v1/documents/{document_id}/content", headers=headers)
    assert again.status_code == 200, again.text
    assert again.content == content
