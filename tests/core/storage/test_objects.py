"""What every store shares: the object key."""

from __future__ import annotations

import uuid

import pytest

from core.storage import object_key


def test_object_key() -> None:
    tenant_id, document_id = uuid.uuid4(), uuid.uuid4()
    assert object_key(tenant_id, document_id) == f"tenants/{tenant_id}/documents/{document_id}"
    with pytest.raises(TypeError):
        object_key("../../etc", document_id)  # type: ignore[arg-type]
