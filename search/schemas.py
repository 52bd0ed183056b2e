"""Search request and response shapes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.validation import PG_TEXT, PgJSONScalar

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_DOCUMENT_IDS = 1000
MAX_FILTERS = 20

FilterKey = Annotated[str, Field(min_length=1, max_length=100), PG_TEXT]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS), PG_TEXT]
    k: int = Field(default=10, ge=1, le=MAX_K)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0, allow_inf_nan=False)
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_DOCUMENT_IDS)
    # Values follow the upload metadata's rules (`core.validation`), so a filter can match any stored value.
    filters: dict[FilterKey, PgJSONScalar] | None = Field(default=None, max_length=MAX_FILTERS)
    mode: Literal["vector", "hybrid"] = "vector"

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text, not only whitespace")
        return value.strip()


class SearchResult(BaseModel):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    chunk_index: int
    page: int | None
    text: str
    score: float
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[SearchResult]
    took_ms: float
