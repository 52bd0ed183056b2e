"""Search request and response shapes."""

from __future__ import annotations

import math
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_DOCUMENT_IDS = 1000
MAX_FILTERS = 20

FilterValue = str | int | float | bool


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=10, ge=1, le=MAX_K)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    document_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_DOCUMENT_IDS)
    filters: dict[str, FilterValue] | None = Field(default=None, max_length=MAX_FILTERS)
    mode: Literal["vector", "hybrid"] = "vector"

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text, not only whitespace")
        if "\x00" in value:
            raise ValueError("query must not contain NUL characters")
        return value.strip()

    @field_validator("filters")
    @classmethod
    def _keys(cls, value: dict[str, FilterValue] | None) -> dict[str, FilterValue] | None:
        if value is None:
            return value
        if any(not key or len(key) > 100 or "\x00" in key for key in value):
            raise ValueError("filter keys must be 1 to 100 characters without NUL")
        for item in value.values():
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("filter numbers must be finite")
            if isinstance(item, str) and "\x00" in item:
                raise ValueError("filter values must not contain NUL characters")
        return value


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
