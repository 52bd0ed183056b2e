"""Turning a queued document into chunks with embeddings.

Three steps, so no transaction stays open while the CPU works:
1. claim: lock the row, mark it `processing`, count the attempt (commit);
2. outside any transaction: fetch and decrypt, extract, chunk, embed, while renewing the claim;
3. finish: lock the row again, replace its chunks, mark it `ready` and audit (one commit).

Step 2 embeds one batch (`PHIVAULT_EMBEDDING_BATCH_SIZE` chunks) at a time and records the claim's
progress (`chunks_total`, `chunks_embedded`) in a short transaction of its own as each batch starts,
so a large document shows how far it has got on `GET /v1/documents/{id}`. A progress write is
fenced like a renewal, and one that fails is logged and skipped: it never fails the document.

A claim is a lease: its holder renews it (`updated_at`) four times per lease period
(`PHIVAULT_PROCESSING_TIMEOUT_SECONDS`) for as long as it works, so a `processing` document whose
lease has lapsed has lost its worker: the reconciler sets it back to `queued` and sends it again.
A second message for a document a live worker holds (a restore, a duplicate) is dropped, not run
beside it; only a message that comes back because its own worker died (redelivered) or its own
retry may take the claim over before the lease lapses. The attempt count is the claim's fencing
token: only the latest claim may finish or fail the document, so a worker that lost its claim (it
stalled past the lease and another took over) changes nothing. Running it twice, or two workers at
once, leaves exactly one set of chunks and one `document.processed` event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import botocore.exceptions
import redis.exceptions
from sqlalchemy.exc import OperationalError

from core.db import Database, database_unavailable
from core.keys import DecryptionError, TenantKeyRef
from core.settings import Settings
from core.storage import ObjectStore
from embeddings.base import Embedder
from embeddings.model_thread import on_model_thread
from ingest import repository
from ingest.chunking import Chunk, chunk_sections
from ingest.extract import ExtractionLimits, extract_sections
from ingest.formats import ContentError
from ingest.metrics import CHUNKS_EMBEDDED
from models.audit import Actor, write_audit_event
from models.document import ChunkProgress, Document
from tenants.repository import get_tenant
from tenants.service import tenant_key_ref

log = logging.getLogger(__name__)

WORKER_ACTOR = Actor(actor_id="phivault-worker", actor_type="system")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    ConnectionError,
    TimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    redis.exceptions.ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """Faults of the database, storage or broker that a later attempt may not meet."""
    if database_unavailable(exc):
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


MAX_ATTEMPTS = 5
RENEWALS_PER_LEASE = 4
"""How often a holder renews its claim per lease period: three renewals in a row may be late or lost."""


@dataclass(frozen=True)
class Claim:
    keys: TenantKeyRef
    content_type: str
    metadata: dict[str, object]
    attempts: int


@dataclass(frozen=True)
class Prepared:
    chunks: list[Chunk]
    vectors: list[list[float]]


async def claim(
    db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID, *, lease: timedelta, take_over: bool = False
) -> Claim | None:
    """Claim the document, unless it is done, deleted, or held by a worker whose lease is still running.

    `take_over`: the message's earlier run is known to have ended (its worker died, or it is a retry
    of its own), so a running lease is no reason to wait.
    """
    async with db.tenant_session(tenant_id) as session:
        document = await repository.lock_claimable(session, tenant_id, document_id)
        if document is None:
            return None
        live_lease = document.status == "processing" and not take_over
        if live_lease and document.updated_at > await repository.database_now(session) - lease:
            log.info("document held by a live claim; message dropped", extra={"document_id": str(document_id)})
            return None
        tenant = await get_tenant(session, tenant_id)
        assert tenant is not None
        document.status = "processing"
        document.attempts += 1
        document.chunks_total = document.chunks_embedded = None  # this claim counts its own
        return Claim(
            keys=tenant_key_ref(tenant),
            content_type=document.content_type,
            metadata=dict(document.metadata_),
            attempts=document.attempts,
        )


def read_chunks(
    claimed: Claim, document_id: uuid.UUID, store: ObjectStore, embedder: Embedder, settings: Settings
) -> list[Chunk]:
    """Decrypt, extract and chunk (CPU-bound; runs in a thread)."""
    data = store.read(claimed.keys, document_id)
    sections = extract_sections(data, claimed.content_type, ExtractionLimits.from_settings(settings))
    max_tokens = min(settings.chunk_tokens, embedder.max_tokens)
    chunks = chunk_sections(sections, embedder.tokenizer, max_tokens, settings.chunk_overlap_tokens)
    if not chunks:
        raise ContentError("no_text", "no text could be extracted from this document")
    return chunks


async def prepare(
    db: Database,
    tenant_id: uuid.UUID,
    document_id: uuid.UUID,
    claimed: Claim,
    store: ObjectStore,
    embedder: Embedder,
    settings: Settings,
) -> Prepared:
    """Chunk, then embed batch by batch (both in a thread), recording progress as each batch starts.

    The progress write runs while the batch is embedded, so the model never waits for the database.
    """
    chunks = await asyncio.to_thread(read_chunks, claimed, document_id, store, embedder, settings)
    vectors: list[list[float]] = []
    for start in range(0, len(chunks), settings.embedding_batch_size):
        texts = [chunk.text for chunk in chunks[start : start + settings.embedding_batch_size]]
        progress = ChunkProgress(chunks_total=len(chunks), chunks_embedded=len(vectors))
        recording = asyncio.create_task(record_progress(db, tenant_id, document_id, claimed.attempts, progress))
        try:
            vectors += await on_model_thread(embedder.embed_documents, texts)
        finally:
            await recording  # never left running: a cancelled query would spoil its connection
        CHUNKS_EMBEDDED.inc(len(texts))
    return Prepared(chunks=chunks, vectors=vectors)


async def record_progress(
    db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID, attempts: int, progress: ChunkProgress
) -> bool:
    """Record the progress of the claim made at attempt `attempts`; False if it was not recorded (the
    claim was lost, or the write failed: logged by type, never raised, so it never fails the document)."""
    try:
        async with db.tenant_session(tenant_id) as session:
            return await repository.record_progress(session, tenant_id, document_id, attempts, progress)
    except Exception as exc:
        level = logging.WARNING if is_transient(exc) else logging.ERROR
        log.log(
            level, "progress not recorded", extra={"document_id": str(document_id), "error_type": type(exc).__name__}
        )
        return False


async def renew(db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID, attempts: int) -> bool:
    """Renew the claim made at attempt `attempts`; False once it is no longer the document's claim."""
    async with db.tenant_session(tenant_id) as session:
        return await repository.renew_claim(session, tenant_id, document_id, attempts)


async def _keep_claim(
    db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID, attempts: int, every: float, done: asyncio.Event
) -> None:
    """Renew the claim every `every` seconds until `done`, or until it is lost."""
    while True:
        try:
            await asyncio.wait_for(done.wait(), every)
            return
        except TimeoutError:
            pass
        try:
            if not await renew(db, tenant_id, document_id, attempts):
                log.warning("claim lost to another worker", extra={"document_id": str(document_id)})
                return
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning(
                "claim renewal failed", extra={"document_id": str(document_id), "error_type": type(exc).__name__}
            )


async def finish(
    db: Database,
    tenant_id: uuid.UUID,
    document_id: uuid.UUID,
    claimed: Claim,
    prepared: Prepared,
    embedder: Embedder,
) -> bool:
    model_id = embedder.model_id
    async with db.tenant_session(tenant_id) as session:
        document = await repository.lock_claimable(session, tenant_id, document_id, attempts=claimed.attempts)
        if document is None:
            return False
        await repository.replace_chunks(
            session,
            tenant_id,
            document_id,
            [
                {
                    "chunk_index": chunk.index,
                    "text": chunk.text,
                    "token_count": chunk.token_count,
                    "page": chunk.page,
                    "embedding": vector,
                    "embedding_dims": embedder.native_dim,
                    "embedding_model": model_id,
                    "metadata_": chunk.metadata,
                }
                for chunk, vector in zip(prepared.chunks, prepared.vectors, strict=True)
            ],
        )
        _mark(document, "ready", chunk_count=len(prepared.chunks))
        await write_audit_event(
            session,
            WORKER_ACTOR.event(
                tenant_id,
                "document.processed",
                resource_type="document",
                resource_id=document_id,
                metadata={"chunk_count": len(prepared.chunks), "embedding_model": model_id},
            ),
        )
    return True


async def fail(
    db: Database, tenant_id: uuid.UUID, document_id: uuid.UUID, claimed: Claim, code: str, message: str
) -> None:
    async with db.tenant_session(tenant_id) as session:
        # A document deleted while it was processed is still marked failed: restoring it shows why.
        document = await repository.lock_claimable(
            session, tenant_id, document_id, attempts=claimed.attempts, include_deleted=True
        )
        if document is None:
            return
        _mark(document, "failed", error_code=code, error_message=message)
        await repository.delete_chunks(session, tenant_id, document_id)
        await write_audit_event(
            session,
            WORKER_ACTOR.event(
                tenant_id,
                "document.failed",
                outcome="error",
                resource_type="document",
                resource_id=document_id,
                metadata={"error_code": code},
            ),
        )


def _mark(
    document: Document,
    status: str,
    *,
    chunk_count: int = 0,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    document.status = status
    document.chunk_count = chunk_count
    document.error_code = error_code
    document.error_message = error_message
    document.chunks_total = document.chunks_embedded = None


async def process_document(
    db: Database,
    store: ObjectStore,
    embedder: Embedder,
    settings: Settings,
    tenant_id: uuid.UUID,
    document_id: uuid.UUID,
    *,
    take_over: bool = False,
) -> str:
    """Run the pipeline; returns the document's resulting state. Transient errors propagate (retry).

    `take_over`: see `claim`.
    """
    lease = timedelta(seconds=settings.processing_timeout_seconds)
    claimed = await claim(db, tenant_id, document_id, lease=lease, take_over=take_over)
    if claimed is None:
        return "skipped"
    if claimed.attempts > MAX_ATTEMPTS:
        await fail(
            db,
            tenant_id,
            document_id,
            claimed,
            "processing_error",
            "processing failed repeatedly; delete this document and upload the file again",
        )
        return "failed"
    done = asyncio.Event()
    renewing = asyncio.create_task(
        _keep_claim(db, tenant_id, document_id, claimed.attempts, lease.total_seconds() / RENEWALS_PER_LEASE, done)
    )
    try:
        prepared = await prepare(db, tenant_id, document_id, claimed, store, embedder, settings)
    except ContentError as exc:
        await fail(db, tenant_id, document_id, claimed, exc.code, exc.message)
        return "failed"
    except DecryptionError:
        log.error("stored object failed authentication", extra={"document_id": str(document_id)})
        await fail(db, tenant_id, document_id, claimed, "integrity_error", "the stored file failed its integrity check")
        return "failed"
    except Exception as exc:
        if is_transient(exc):
            raise
        # A parser's own error can quote the document: only its type is logged.
        log.error("processing failed", extra={"document_id": str(document_id), "error_type": type(exc).__name__})
        await fail(db, tenant_id, document_id, claimed, "processing_error", "the document could not be processed")
        return "failed"
    finally:
        done.set()
        await renewing  # lets a renewal in flight finish: a cancelled query would spoil its connection
    return "ready" if await finish(db, tenant_id, document_id, claimed, prepared, embedder) else "skipped"
