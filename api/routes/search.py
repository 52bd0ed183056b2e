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
    "", response_model=SearchResponse, responses=error_responses(400, 401, 403, 422, 429, 503), openapi_extra=BEARER
)
async def search_documents(scope: Searchers, body: SearchRequest) -> SearchResponse:
    embedder = await scope.state.embedder  # loaded and warmed once, at start-up
    return await search(scope.transaction, embedder, body, scope.state.settings, metrics=scope.state.metrics.search)
