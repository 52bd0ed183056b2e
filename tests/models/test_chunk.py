"""`document_chunks`: a chunk belongs to a document of its own tenant, even where row-level security lets it in."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from core.db import Database
from models import DocumentChunk
from models.chunk import EMBEDDING_DIM
from tests.conftest import TenantFactory
from tests.security.tenant_rows import seed_rows


def _chunk(tenant_id: uuid.UUID, document_id: uuid.UUID) -> DocumentChunk:
    return DocumentChunk(
        tenant_id=tenant_id,
        document_id=document_id,
        chunk_index=1,
        text="chunk",
        token_count=1,
        embedding=[0.01] * EMBEDDING_DIM,
        embedding_dims=EMBEDDING_DIM,
        embedding_model="test",
    )


async def test_a_chunk_cannot_belong_to_another_tenants_document(db: Database, make_tenant: TenantFactory) -> None:
    """The row is the tenant's own (row-level security admits it); only the composite key refuses it."""
    mine = await seed_rows(db, (await make_tenant()).id)
    theirs = await seed_rows(db, (await make_tenant()).id)

    with pytest.raises(IntegrityError, match="fk_document_chunks_tenant_id_document_id_documents"):
        async with db.tenant_session(mine.tenant_id) as session:
            session.add(_chunk(mine.tenant_id, theirs.document_id))
            await session.flush()

    async with db.tenant_session(mine.tenant_id) as session:
        session.add(_chunk(mine.tenant_id, mine.document_id))
        await session.flush()
