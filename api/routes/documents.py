"""Documents: upload, list, read, download, delete and restore (the rules are in `ingest.service`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.context import TenantScope, route_of, tenant_scope
from api.errors import APIError
from api.openapi import BEARER, error_responses, link
from api.rate_limits import rate_limited
from audit.service import record_denial
from core.errors import InvalidInput
from core.validation import PG_TEXT
from ingest import service
from ingest.detect import RejectedUpload
from ingest.schemas import DocumentOut, DocumentPage, DocumentStatus, UploadOut, parse_metadata
from ingest.service import UploadOutcome

router = APIRouter(prefix="/v1/documents", tags=["documents"])

Readers = Annotated[TenantScope, Depends(tenant_scope("admin", "member", "viewer"))]
Writers = Annotated[TenantScope, Depends(tenant_scope("admin", "member"))]
Uploaders = Annotated[TenantScope, Depends(rate_limited("upload", tenant_scope("admin", "member", before_body=True)))]

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the document"},
                        "metadata": {
                            "type": "string",
                            "description": "a JSON object stored with the document",
                            "examples": ['{"department": "cardiology", "mrn_hash": "4be1c3"}'],
                        },
                    },
                }
            }
        },
    }
}

DOCUMENT_EXAMPLE = {
    "id": "8a4f2c1e-6b3d-4f9a-8e7c-2d1b0a9f8e7d",
    "filename": "discharge-summary.pdf",
    "content_type": "application/pdf",
    "size_bytes": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "status": "ready",
    "progress": None,
    "error_code": None,
    "error_message": None,
    "chunk_count": 12,
    "metadata": {"department": "cardiology"},
    "created_at": "2026-11-24T09:30:00Z",
    "updated_at": "2026-11-24T09:30:41Z",
}
PROCESSING_EXAMPLE = {
    **DOCUMENT_EXAMPLE,
    "status": "processing",
    "progress": {"chunks_total": 12, "chunks_embedded": 4},
    "chunk_count": 0,
}
QUEUED_EXAMPLE = {**DOCUMENT_EXAMPLE, "status": "queued", "chunk_count": 0, "duplicate": False}


def _example(value: object) -> dict[str, Any]:
    return {"content": {"application/json": {"example": value}}}


UPLOADED_LINKS = {
    "read": link("get", "/v1/documents/{document_id}", document_id="$response.body#/id"),
    "download": link("get", "/v1/documents/{document_id}/content", document_id="$response.body#/id"),
    "delete": link("delete", "/v1/documents/{document_id}", document_id="$response.body#/id"),
}


def _file_field(form: FormData) -> UploadFile:
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise APIError(422, "validation_error", "file: a multipart file field named 'file' is required")
    return file


def _rejection_reason(error: Exception) -> str | None:
    """The code of an upload refused for its size, type, content, metadata or form (the error body's code);
    None for other refusals (a suspended tenant, a missing token), which are audited where they happen."""
    if isinstance(error, RejectedUpload | InvalidInput) or (isinstance(error, APIError) and error.status_code == 422):
        return error.code
    if isinstance(error, StarletteHTTPException) and error.status_code == 400:
        return "bad_request"  # a malformed multipart body
    return None


@asynccontextmanager
async def _rejections_audited(request: Request, scope: TenantScope) -> AsyncIterator[None]:
    """A refused upload leaves one `document.rejected` (outcome `denied`, `metadata.reason` = the code) by the
    caller, in a transaction of its own; never the filename or the content."""
    try:
        yield
    except Exception as error:
        reason = _rejection_reason(error)
        if reason is not None:
            await record_denial(
                scope.state.database,
                scope.actor,
                scope.tenant_id,
                "document.rejected",
                reason,
                route=route_of(request),
                resource_type="document",
            )
        raise


def _uploaded(outcome: UploadOutcome) -> JSONResponse:
    """202 with the new document, or 200 with the one that already holds the same content."""
    body = UploadOut.model_validate(outcome.document).model_copy(update={"duplicate": outcome.duplicate})
    return JSONResponse(
        status_code=status.HTTP_200_OK if outcome.duplicate else status.HTTP_202_ACCEPTED,
        content=body.model_dump(mode="json"),
        headers={"Location": f"/v1/documents/{outcome.document.id}"},
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadOut,
    responses={
        200: {
            "model": UploadOut,
            "description": "the same content was already uploaded",
            "links": UPLOADED_LINKS,
            **_example({**DOCUMENT_EXAMPLE, "duplicate": True}),
        },
        202: {"description": "accepted and queued for processing", "links": UPLOADED_LINKS, **_example(QUEUED_EXAMPLE)},
        **error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    },
    openapi_extra={**UPLOAD_BODY, **BEARER},
    summary="Upload a document",
    description=(
        "Send the file as the multipart field `file`, and optionally `metadata`, a JSON object stored with it "
        "(and usable in search `filters`). The type is judged from the bytes (PDF, DOCX, text, Markdown, HTML, "
        "CSV, JSON), never from the name. The answer is 202 with the document `queued`: poll `GET "
        "/v1/documents/{id}` until its `status` is `ready` or `failed`. The same content uploaded again answers "
        "200 with the existing document and `duplicate: true`. Roles: `admin`, `member`; rate-limited per user "
        "and per tenant. Audited as `document.uploaded` (or `document.duplicate`); a refusal for size, type, content, "
        "metadata or form as `document.rejected` with the error's code."
    ),
)
async def upload_document(request: Request, scope: Uploaders) -> Response:
    """The body is read only after the token and role are checked (hence no File/Form parameters)."""
    async with _rejections_audited(request, scope), request.form(max_files=1, max_fields=1) as form:
        file = _file_field(form)
        metadata = parse_metadata(form.get("metadata"))
        state = scope.state
        outcome = await service.receive_upload(
            scope.transaction,
            state.store,
            state.enqueue,
            state.settings,
            file.file,
            filename=file.filename,
            metadata=metadata,
        )
    return _uploaded(outcome)


@router.get(
    "",
    response_model=DocumentPage,
    responses={
        200: _example({"items": [PROCESSING_EXAMPLE], "next_cursor": None}),
        **error_responses(401, 403, 422, 503),
    },
    openapi_extra=BEARER,
    summary="List documents",
    description=(
        "The tenant's live documents, newest first, optionally only those in one `status`. Pages hold `limit` "
        "documents (1 to 100, default 50); pass `next_cursor` back as `cursor` until it is null. A `processing` "
        "document carries its `progress` once its chunks are counted. Roles: `admin`, `member`, `viewer`. "
        "Audited as `document.listed`."
    ),
)
async def list_tenant_documents(
    scope: Readers,
    status_filter: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200), PG_TEXT] = None,
) -> DocumentPage:
    async with scope.transaction() as tx:
        return await service.list_page(tx, status=status_filter, limit=limit, cursor=cursor)


@router.get(
    "/{document_id}",
    response_model=DocumentOut,
    responses={200: _example(DOCUMENT_EXAMPLE), **error_responses(401, 403, 404, 422, 503)},
    openapi_extra=BEARER,
    summary="Read a document",
    description=(
        "One live document: its `status` (`queued`, `processing`, `ready` or `failed`), `progress` while "
        "processing, `chunk_count` once ready, and `error_code` with an `error_message` a person can act on once "
        "failed. Another tenant's id answers 404, as a missing one does. Roles: `admin`, `member`, `viewer`. "
        "Audited as `document.viewed`."
    ),
)
async def get_tenant_document(scope: Readers, document_id: uuid.UUID) -> DocumentOut:
    async with scope.transaction() as tx:
        document = await service.read_document(tx, document_id)
    return DocumentOut.model_validate(document)


def _content_disposition(filename: str) -> str:
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


@router.get(
    "/{document_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The original bytes, with the detected `Content-Type` (`application/pdf`, "
            "`text/plain`, ...) and the filename in `Content-Disposition`."
        },
        **error_responses(401, 403, 404, 422, 503),
    },
    openapi_extra=BEARER,
    summary="Download a document",
    description=(
        "The original file, decrypted, exactly as uploaded, whatever its processing status. Roles: `admin`, "
        "`member`. Audited as `document.downloaded`."
    ),
)
async def download_document(scope: Writers, document_id: uuid.UUID) -> StreamingResponse:
    async with scope.transaction() as tx:
        download = await service.open_download(tx, scope.state.store, document_id)
    document = download.document
    return StreamingResponse(
        download.pieces(),
        media_type=document.content_type,
        headers={
            "Content-Disposition": _content_disposition(document.filename),
            "Content-Length": str(document.size_bytes),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        204: {
            "links": {
                "restore": link("post", "/v1/documents/{document_id}/restore", document_id="$request.path.document_id")
            }
        },
        **error_responses(401, 403, 404, 422, 503),
    },
    openapi_extra=BEARER,
    summary="Delete a document",
    description=(
        "Removes the document from lists, reads and search at once. It can be restored for "
        "`PHIVAULT_RETENTION_DAYS`, after which it is purged with its chunks and stored object. Roles: `admin`, "
        "`member`. Audited as `document.deleted`."
    ),
)
async def delete_document(scope: Writers, document_id: uuid.UUID) -> Response:
    async with scope.transaction() as tx:
        await service.delete_document(tx, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{document_id}/restore",
    response_model=DocumentOut,
    responses={200: _example(DOCUMENT_EXAMPLE), **error_responses(401, 403, 404, 409, 422, 503)},
    openapi_extra=BEARER,
    summary="Restore a deleted document",
    description=(
        "Brings back a document deleted within `PHIVAULT_RETENTION_DAYS`; one not yet processed is queued "
        "again. 409 `retention_expired` once the retention has passed, 409 `duplicate_content` when a live "
        "document holds the same content. Roles: `admin`, `member`. Audited as `document.restored`."
    ),
)
async def restore_document(scope: Writers, document_id: uuid.UUID) -> DocumentOut:
    retention = timedelta(days=scope.state.settings.retention_days)
    document = await service.restore_document(scope.transaction, scope.state.enqueue, document_id, retention=retention)
    return DocumentOut.model_validate(document)
