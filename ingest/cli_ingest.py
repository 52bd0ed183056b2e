"""`phivault ingest`: upload local files for a tenant through the same service as the API."""

from __future__ import annotations

import asyncio
import getpass
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from core.db import Database
from core.keys import key_provider_from_settings
from core.runtime import Services
from core.settings import Settings
from core.storage import object_store_from_settings
from ingest.detect import RejectedUpload, UploadLimits, sanitize_filename
from ingest.queue import TaskQueue
from ingest.upload import detect_type, service_transaction, spooled, store_upload
from models.audit import Actor
from models.document import Document

POLL_SECONDS = 0.5


@dataclass
class Summary:
    ready: int = 0
    failed: int = 0
    duplicate: int = 0
    pending: int = 0
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"ready: {self.ready}  failed: {self.failed}  duplicate: {self.duplicate}  "
            f"rejected: {len(self.rejected)}  still processing: {self.pending}"
        ]
        lines += [f"  rejected {path}: {reason}" for path, reason in self.rejected]
        return "\n".join(lines)


def collect_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)
    return files


async def ingest_paths(
    settings: Settings,
    services: Services,
    db: Database,
    tenant_id: uuid.UUID,
    paths: list[Path],
    *,
    wait: bool,
    wait_seconds: float,
) -> Summary:
    queue = TaskQueue(services.redis_url)
    keys = key_provider_from_settings(settings)
    store = object_store_from_settings(settings, keys)
    transaction = service_transaction(db, tenant_id, Actor(actor_id=f"cli:{getpass.getuser()}", actor_type="system"))
    summary = Summary()
    new_ids: list[uuid.UUID] = []
    files = collect_files(paths)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns) as progress:
            uploading = progress.add_task("uploading", total=len(files))
            for path in files:
                try:
                    with path.open("rb") as source:
                        async with spooled(source, settings.data_dir / "spool", settings.max_upload_bytes) as upload:
                            content_type = await detect_type(upload, UploadLimits.from_settings(settings))
                            outcome = await store_upload(
                                transaction,
                                store,
                                queue.enqueue,
                                upload,
                                filename=sanitize_filename(path.name),
                                content_type=content_type,
                                metadata={},
                            )
                    if outcome.duplicate:
                        summary.duplicate += 1
                    else:
                        new_ids.append(outcome.document.id)
                except RejectedUpload as exc:
                    summary.rejected.append((path, exc.message))
                progress.advance(uploading)
            if wait and new_ids:
                await _wait(db, tenant_id, new_ids, summary, progress, wait_seconds)
            else:
                summary.pending = len(new_ids)
    finally:
        queue.close()
    return summary


async def _wait(
    db: Database, tenant_id: uuid.UUID, ids: list[uuid.UUID], summary: Summary, progress: Progress, wait_seconds: float
) -> None:
    processing = progress.add_task("processing", total=len(ids))
    deadline = time.monotonic() + wait_seconds
    statuses: dict[uuid.UUID, str] = {}
    while True:
        async with db.tenant_session(tenant_id) as session:
            rows = await session.execute(
                select(Document.id, Document.status).where(Document.tenant_id == tenant_id, Document.id.in_(ids))
            )
            statuses = {row.id: row.status for row in rows}
        done = sum(1 for status in statuses.values() if status in ("ready", "failed"))
        progress.update(processing, completed=done)
        if done == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    summary.ready = sum(1 for s in statuses.values() if s == "ready")
    summary.failed = sum(1 for s in statuses.values() if s == "failed")
    summary.pending = len(ids) - summary.ready - summary.failed
