"""`phivault ingest`, `search` and `reembed`: a tenant's documents from the command line, through the
same services as the API (`ingest.service`, `search.service`) and with progress shown."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.context import TenantOption, app_database, cli_actor, cli_settings, parse_uuid
from core.db import Database
from core.keys import key_provider_from_settings
from core.runtime import Services, resolve_services
from core.settings import Settings
from core.storage import object_store_from_settings
from ingest import repository
from ingest.detect import RejectedUpload
from ingest.queue import TaskQueue
from ingest.service import receive_upload
from models.document import Document
from tenants.service import tenant_transactions

if TYPE_CHECKING:
    from embeddings.base import QueryEmbedder
    from search.schemas import SearchResponse

POLL_SECONDS = 0.5
POLL_HINT = "GET /v1/documents/{id} (with a token of the tenant)"


@dataclass
class Summary:
    """What `phivault ingest` did with each file: the ids it uploaded, and why any file did not make it."""

    ready: int = 0
    pending: int = 0
    uploaded: list[tuple[uuid.UUID, Path]] = field(default_factory=list)
    duplicates: list[tuple[Path, uuid.UUID]] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"uploaded {document_id}  {path}" for document_id, path in self.uploaded]
        lines.append(
            f"ready: {self.ready}  failed: {len(self.failed)}  duplicate: {len(self.duplicates)}  "
            f"rejected: {len(self.rejected)}  still processing: {self.pending}"
        )
        lines += [f"  duplicate {path}: same content as {document_id}" for path, document_id in self.duplicates]
        lines += [f"  rejected {path}: {reason}" for path, reason in self.rejected]
        lines += [f"  failed {path}: {reason}" for path, reason in self.failed]
        if self.pending:
            lines.append(f"  poll each uploaded id until its status is ready or failed: {POLL_HINT}")
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
    store = object_store_from_settings(settings, key_provider_from_settings(settings))
    transaction = tenant_transactions(db, tenant_id, cli_actor())
    summary = Summary()
    files = collect_files(paths)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns) as progress:
            uploading = progress.add_task("uploading", total=len(files))
            for path in files:
                try:
                    with path.open("rb") as source:
                        outcome = await receive_upload(
                            transaction, store, queue.enqueue, settings, source, filename=path.name, metadata={}
                        )
                    if outcome.duplicate:
                        summary.duplicates.append((path, outcome.document.id))
                    else:
                        summary.uploaded.append((outcome.document.id, path))
                except RejectedUpload as exc:
                    summary.rejected.append((path, exc.message))
                progress.advance(uploading)
            if wait and summary.uploaded:
                await _wait(db, tenant_id, summary, progress, wait_seconds)
            else:
                summary.pending = len(summary.uploaded)
    finally:
        queue.close()
    return summary


async def _wait(db: Database, tenant_id: uuid.UUID, summary: Summary, progress: Progress, wait_seconds: float) -> None:
    ids = [document_id for document_id, _ in summary.uploaded]
    processing = progress.add_task("processing", total=len(ids))
    deadline = time.monotonic() + wait_seconds
    documents: dict[uuid.UUID, Document] = {}
    while True:
        async with db.tenant_session(tenant_id) as session:
            documents = await repository.documents_by_id(session, tenant_id, ids)
        done = sum(1 for document in documents.values() if document.status in ("ready", "failed"))
        progress.update(processing, completed=done)
        if done == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    for document_id, path in summary.uploaded:
        document = documents.get(document_id)
        if document is None or document.status not in ("ready", "failed"):
            summary.pending += 1
        elif document.status == "ready":
            summary.ready += 1
        else:
            summary.failed.append((path, f"{document.error_message} ({document.error_code})"))


def ingest(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or folders (searched recursively).")],
    tenant: TenantOption,
    wait: Annotated[bool, typer.Option(help="Wait until every document is ready or failed.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for processing.")] = 600,
) -> None:
    """Upload files for a tenant, show progress, and summarise ready / failed / duplicate."""
    settings = cli_settings()
    services = resolve_services(settings)
    tenant_id = parse_uuid(tenant)

    async def run() -> Summary:
        async with app_database(settings, services) as db:
            return await ingest_paths(settings, services, db, tenant_id, paths, wait=wait, wait_seconds=timeout)

    summary = asyncio.run(run())
    typer.echo(summary.render())
    if summary.failed or summary.rejected:
        raise typer.Exit(1)


def search(
    query: str,
    tenant: TenantOption,
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    mode: Annotated[str, typer.Option(help="vector or hybrid")] = "vector",
    local: Annotated[
        bool, typer.Option("--local", help="Embed the query with a model loaded here, even when an API is running.")
    ] = False,
) -> None:
    """Search a tenant's documents and print the results as a table.

    The query is embedded by the API running on this machine when one answers (no model to load here), else by
    the local model; the search itself, its row-level security and its audit run here either way."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from cli.remote_embedder import RemoteEmbeddingFailed, api_query_embedder, api_url
    from search.schemas import SearchRequest
    from search.service import search as run_search
    from tenants.query_keys import QueryKeys

    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)
    try:
        request = SearchRequest(query=query, k=k, mode=mode)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc.errors()[0]["msg"])) from None

    async def run(embedder: QueryEmbedder) -> SearchResponse:
        async with app_database(settings, services) as db:
            query_keys = QueryKeys(db, key_provider_from_settings(settings))
            transactions = tenant_transactions(db, tenant_id, cli_actor())
            return await run_search(transactions, embedder, request, settings, query_keys=query_keys)

    def run_locally() -> SearchResponse:
        from embeddings.sentence_transformer import get_embedder  # loads torch: only on this path

        embedder = get_embedder(settings)  # first: a model not on this machine stays the one line cli.main prints
        typer.echo("phivault: embedding the query with the local model", err=True)
        return asyncio.run(run(embedder))

    remote = None if local else api_query_embedder(settings)
    if remote is None:
        response = run_locally()
    else:
        typer.echo(f"phivault: embedding the query with the running API at {api_url(settings)}", err=True)
        try:
            response = asyncio.run(run(remote))
        except RemoteEmbeddingFailed as exc:  # raised before the search's transaction opens: nothing was written
            typer.echo(f"phivault: the API did not embed the query ({exc})", err=True)
            response = run_locally()
    table = Table(title=f"{len(response.results)} results in {response.took_ms:.0f} ms")
    for column in ("score", "document", "chunk", "page", "text"):
        table.add_column(column)
    for hit in response.results:
        snippet = " ".join(hit.text.split())[:100]
        table.add_row(f"{hit.score:.3f}", hit.filename, str(hit.chunk_index), str(hit.page or ""), snippet)
    Console().print(table)


def reembed(tenant: TenantOption, batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 64) -> None:
    """Re-embed a tenant's chunks made by another model with the active one, with progress."""
    from embeddings.sentence_transformer import get_embedder
    from ingest.reembed import reembed_tenant, stale_chunk_count

    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def run() -> int:
        async with app_database(settings, services) as db:
            embedder = get_embedder(settings)
            total = await stale_chunk_count(db, tenant_id, embedder.model_id)
            with Progress() as progress:
                task = progress.add_task("re-embedding", total=total)
                return await reembed_tenant(
                    db,
                    embedder,
                    tenant_id,
                    cli_actor(),
                    batch_size=batch_size,
                    on_batch=lambda n: progress.advance(task, n),
                )

    typer.echo(f"re-embedded {asyncio.run(run())} chunks")
