"""How the HTTP edge answers each kind of refusal a service raises (`api.errors.status_of`)."""

from __future__ import annotations

import pytest

from api.errors import status_of
from core.errors import Conflict, DomainError, InvalidInput, NotFound
from ingest.detect import RejectedUpload
from ingest.formats import ContentError
from tenants.service import TenantNameError, TenantUnavailable


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RejectedUpload("too_large", "m"), 413),
        (RejectedUpload("unsupported_content", "m"), 415),
        (RejectedUpload("zip_bomb", "m"), 422),
        (NotFound("document", "x"), 404),
        (Conflict("retention_expired", "m"), 409),
        (TenantUnavailable("tenant_suspended", "m"), 403),
        (InvalidInput("invalid_cursor", "m"), 422),
        (TenantNameError("m"), 422),
        (ContentError("no_text", "m"), 400),
        (DomainError("other", "m"), 400),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_status_of(error: DomainError, status: int) -> None:
    assert status_of(error) == status
