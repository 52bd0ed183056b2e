"""Documents: upload, list, read, download, delete and restore."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import JsonValue, TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from api.context import TenantScope, not_found, tenant_scope
from api.errors import APIError
from api.openapi import BEARER, error_responses, link
from api.rate_limits import rate_limited
from api.schemas import DocumentOut, DocumentPage, UploadOut
from core.storage import ObjectStore
from core.validation import PG_TEXT, PgJSONObject, PgText, check_pg_datetime
from ingest.detect import RejectedUpload, UploadLimits, sanitize_filename
from ingest.processing import CLAIMABLE
from ingest.repository import find_live_by_sha256, get_document, get_live_document, list_documents
from ingest.upload import detect_type, open_plaintext, spooled, store_upload, tenant_key_ref

router = APIRouter(prefix="/v1/documents", tags=["documents"])

Readers = Annotated[TenantScope, Depends(tenant_scope("admin", "member", "viewer"))]
Writers = Annotated[TenantScope, Depends(tenant_scope("admin", "member"))]
Uploaders = Annotated[TenantScope, Depends(rate_limited("upload", tenant_scope("admin", "member")))]
DocumentStatus = Literal["queued", "processing", "ready", "failed"]

MAX_METADATA_BYTES = 16 * 1024
METADATA_TEXT = TypeAdapter(PgText)
METADATA = TypeAdapter(PgJSONObject)


def _parse_metadata(raw: object) -> dict[str, JsonValue]:
    """The upload's `metadata` form field: a JSON object jsonb can store (`core.validation`), or 422.

    Reasons only: keys are chosen by the client and could be PHI, so no location inside the object is named.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return {}
    if not isinstance(raw, str):
        raise APIError(422, "invalid_metadata", "metadata: must be a form field holding a JSON object")
    try:
        # Its own text first: a multipart charset such as `unicode_escape` can put NUL or a lone surrogate in it.
        text = METADATA_TEXT.validate_python(raw)
        if len(text.encode()) > MAX_METADATA_BYTES:
            raise APIError(422, "invalid_metadata", f"metadata: must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return METADATA.validate_json(text)
    except ValidationError as exc:
        reasons = dict.fromkeys(str(error["msg"]) for error in exc.errors())
        raise APIError(422, "invalid_metadata", "metadata: " + "; ".join(reasons)) from None


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
                        "metadata": {"type": "string", "description": "a JSON object stored with the document"},
                    },
                }
            }
        },
    }
}

UPLOADED_LINKS = {
    "read": link("get", "/v1/documents/{document_id}", document_id="$response.body#/id"),
    "download": link("get", "/v1/documents/{document_id}/content", document_id="$response.body#/id"),
    "delete": link("delete", "/v1/documents/{document_id}", document_id="$response.body#/id"),
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadOut,
    responses={
        200: {"model": UploadOut, "description": "the same content was already uploaded", "links": UPLOADED_LINKS},
        202: {"links": UPLOADED_LINKS},
        **error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    },
    openapi_extra={**UPLOAD_BODY, **BEARER},
)
async def upload_document(request: Request, scope: Uploaders) -> Response:
    """The body is read only after the token and role are checked (hence no File/Form parameters)."""
    state = scope.state
    settings = state.settings
    async with request.form(max_files=1, max_fields=1) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise APIError(422, "validation_error", "file: a multipart file field named 'file' is required")
        parsed_metadata = _parse_metadata(form.get("metadata"))
        filename = sanitize_filename(file.filename)
        try:
            async with spooled(file.file, settings.data_dir / "spool", settings.max_upload_bytes) as upload:
                content_type = await detect_type(upload, UploadLimits.from_settings(settings))
                outcome = await store_upload(
                    scope.transaction,
                    state.store,
                    state.enqueue,
                    upload,
                    filename=filename,
                    content_type=content_type,
                    metadata=parsed_metadata,
                )
        except RejectedUpload as exc:
            raise APIError(exc.status_code, exc.code, exc.message) from exc
    body = UploadOut.model_validate(outcome.document).model_copy(update={"duplicate": outcome.duplicate})
    return JSONResponse(
        status_code=status.HTTP_200_OK if outcome.duplicate else status.HTTP_202_ACCEPTED,
        content=body.model_dump(mode="json"),
        headers={"Location": f"/v1/documents/{outcome.document.id}"},
    )


def _encode_cursor(created_at: datetime, document_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{document_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, _, document_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        # A cursor is client-supplied too: its date must be in the window every date-time is (a ValueError if not).
        return check_pg_datetime(datetime.fromisoformat(created_at)), uuid.UUID(document_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise APIError(422, "invalid_cursor", "the cursor is not one this API returned") from exc


@router.get("", response_model=DocumentPage, responses=error_responses(401, 403, 422, 503), openapi_extra=BEARER)
async def list_tenant_documents(
    scope: Readers,
    status_filter: Annotated[DocumentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200), PG_TEXT] = None,
) -> DocumentPage:
    after = _decode_cursor(cursor) if cursor else None
    async with scope.transaction() as tx:
        rows = await list_documents(tx.session, tx.tenant.id, status=status_filter, limit=limit + 1, after=after)
        page, more = rows[:limit], len(rows) > limit
        await tx.audit(
            "document.listed",
            resource_type="document",
            metadata={"count": len(page), "status": status_filter, "document_ids": [str(d.id) for d in page]},
        )
    next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    return DocumentPage(items=[DocumentOut.model_validate(d) for d in page], next_cursor=next_cursor)


@router.get(
    "/{document_id}",
    response_model=DocumentOut,
    responses=error_responses(401, 403, 404, 422, 503),
    openapi_extra=BEARER,
)
async def get_tenant_document(scope: Readers, document_id: uuid.UUID) -> DocumentOut:
    async with scope.transaction() as tx:
        document = await get_live_document(tx.session, tx.tenant.id, document_id)
        if document is None:
            raise not_found("document", document_id)
        await tx.audit("document.viewed", resource_type="document", resource_id=document_id)
    return DocumentOut.model_validate(document)


def _content_disposition(filename: str) -> str:
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


@router.get(
    "/{document_id}/content",
    response_class=StreamingResponse,
    responses=error_responses(401, 403, 404, 422, 503),
    openapi_extra=BEARER,
)
async def download_document(scope: Writers, document_id: uuid.UUID) -> StreamingResponse:
    store: ObjectStore = scope.state.store
    async with scope.transaction() as tx:
        document = await get_live_document(tx.session, tx.tenant.id, document_id)
        if document is None:
            raise not_found("document", document_id)
        # Decrypt the first piece before committing the audit event, so a failure is an error, not a download.
        first, chunks = await open_plaintext(store, tenant_key_ref(tx.tenant), document_id)
        await tx.audit(
            "document.downloaded",
            resource_type="document",
            resource_id=document_id,
            metadata={"sha256": document.sha256},
        )

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return StreamingResponse(
        body(),
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
)
async def delete_document(scope: Writers, document_id: uuid.UUID) -> Response:
    async with scope.transaction() as tx:
        document = await get_live_document(tx.session, tx.tenant.id, document_id, for_update=True)
        if document is None:
            raise not_found("document", document_id)
        document.deleted_at = datetime.now(UTC)
        await tx.audit("document.deleted", resource_type="document", resource_id=document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{document_id}/restore",
    response_model=DocumentOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    openapi_extra=BEARER,
)
async def restore_document(scope: Writers, document_id: uuid.UUID) -> DocumentOut:
    retention = timedelta(days=scope.state.settings.retention_days)
    async with scope.transaction() as tx:
        document = await get_document(tx.session, tx.tenant.id, document_id, for_update=True)
        if document is None or document.deleted_at is None:
            raise not_found("deleted document", document_id)
        if document.deleted_at < datetime.now(UTC) - retention:
            raise APIError(409, "retention_expired", "this document was deleted too long ago to be restored")
        if await find_live_by_sha256(tx.session, tx.tenant.id, document.sha256) is not None:
            raise APIError(409, "duplicate_content", "a live document with the same content exists")
        document.deleted_at = None
        await tx.session.flush()
        await tx.audit("document.restored", resource_type="document", resource_id=document_id)
        await tx.session.refresh(document)
    if document.status in CLAIMABLE:  # the worker skips deleted documents: send unfinished work again
        await scope.state.enqueue(scope.tenant_id, document_id)
    return DocumentOut.model_validate(document)
