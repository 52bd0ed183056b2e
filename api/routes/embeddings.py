"""The running API's model, lent to `phivault search` so that one query does not load a model of its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.context import PlatformScope, platform_scope
from api.openapi import BEARER, error_responses
from search.schemas import QueryEmbedding, QueryEmbeddingRequest
from search.service import embed_query

router = APIRouter(prefix="/v1/embeddings", tags=["search"])

Platform = Annotated[PlatformScope, Depends(platform_scope)]


@router.post(
    "/query",
    response_model=QueryEmbedding,
    responses=error_responses(400, 401, 403, 422, 503),
    openapi_extra=BEARER,
    summary="Embed a search query",
    description=(
        "The vector of one search `query` (validated as in `POST /v1/search`), computed by the model the API "
        "searches with, zero-padded to 1024, with the model's name (`model`) and own dimension (`dims`). For "
        "platform tools that search on their own (`phivault search`). Role: `platform_admin`. Audited as "
        "`embedding.computed` under the system tenant, with the model and dimension, never the text."
    ),
)
async def embed(scope: Platform, body: QueryEmbeddingRequest) -> QueryEmbedding:
    embedder = await scope.state.embedder  # loaded and warmed once, at start-up
    return await embed_query(scope.state.database, embedder, body.query, scope.actor)
