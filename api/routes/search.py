"""Semantic search over the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.context import TenantScope, tenant_scope
from api.openapi import BEARER, error_responses
from api.rate_limits import rate_limited
from search.schemas import SearchRequest, SearchResponse
from search.service import search

router = APIRouter(prefix="/v1/search", tags=["search"])

Searchers = Annotated[TenantScope, Depends(rate_limited("search", tenant_scope("admin", "member", "viewer")))]


@router.post(
    "",
    response_model=SearchResponse,
    responses=error_responses(400, 401, 403, 422, 429, 503),
    openapi_extra=BEARER,
    summary="Search the tenant's documents",
    description=(
        "The `k` chunks of the caller's ready documents closest in meaning to `query` (`mode=vector`), or also "
        "matching its words (`mode=hybrid`), best first. Narrow them with `document_ids`, `filters` (equality "
        "on upload metadata keys) and `min_score`. Each result names its document, page and chunk. Roles: "
        "`admin`, `member`, `viewer`; rate-limited per user and per tenant (429 with `Retry-After`). Audited as "
        "`search.query` with an HMAC of the query under a key of the tenant's (`query_hmac`), never its text."
    ),
)
async def search_documents(scope: Searchers, body: SearchRequest) -> SearchResponse:
    embedder = await scope.state.embedder  # loaded and warmed once, at start-up
    state = scope.state
    return await search(
        scope.transaction, embedder, body, state.settings, query_keys=state.query_keys, metrics=state.metrics.search
    )
