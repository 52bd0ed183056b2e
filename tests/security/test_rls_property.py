"""Property: across many tenants and random interleaved operations, no row ever crosses tenants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.db import Database, create_engine
from core.runtime import Services
from core.settings import Settings
from models.audit import Actor
from tenants.service import create_tenant
from tests.conftest import run_in_fresh_loop

TENANTS = 5

Operation = tuple[str, int]
operations = st.lists(
    st.tuples(st.sampled_from(["insert", "rename_all", "delete_one", "read"]), st.integers(0, TENANTS - 1)),
    min_size=1,
    max_size=25,
)


@dataclass
class Model:
    """What each tenant should see: its own document ids, and how each was last named."""

    documents: dict[int, dict[uuid.UUID, str]] = field(default_factory=lambda: {i: {} for i in range(TENANTS)})


async def _run(db: Database, tenant_ids: list[uuid.UUID], ops: list[Operation]) -> None:
    model = Model()
    for step, (kind, who) in enumerate(ops):
        tenant_id = tenant_ids[who]
        mine = model.documents[who]
        async with db.tenant_session(tenant_id) as session:
            if kind == "insert":
                doc_id = await session.scalar(
                    text(
                        "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key) "
                        "VALUES (:t, :f, 'text/plain', 1, :h, 'k') RETURNING id"
                    ),
                    {"t": tenant_id, "f": f"t{who}-s{step}", "h": uuid.uuid4().hex},
                )
                assert isinstance(doc_id, uuid.UUID)
                mine[doc_id] = f"t{who}-s{step}"
            elif kind == "rename_all":
                # No WHERE clause at all: RLS alone must confine the update.
                result = await session.execute(text("UPDATE documents SET filename = :f"), {"f": f"t{who}-r{step}"})
                assert getattr(result, "rowcount", None) == len(mine)
                for doc_id in mine:
                    mine[doc_id] = f"t{who}-r{step}"
            elif kind == "delete_one":
                # Try to delete any document at all, newest first: only an own one may go.
                deleted = await session.scalar(
                    text(
                        "DELETE FROM documents WHERE id = (SELECT id FROM documents ORDER BY created_at DESC, id "
                        "LIMIT 1) RETURNING id"
                    )
                )
                assert (deleted is None) == (not mine)
                if deleted is not None:
                    assert deleted in mine
                    del mine[deleted]
            rows = (await session.execute(text("SELECT id, tenant_id, filename FROM documents"))).all()
        assert {row.id: row.filename for row in rows} == mine
        assert all(row.tenant_id == tenant_id for row in rows)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_no_row_crosses_tenants(services: Services, settings: Settings, ops: list[Operation]) -> None:
    async def scenario() -> None:
        engine = create_engine(services.app_url, settings)
        db = Database(engine)
        try:
            actor = Actor(actor_id="property-test", actor_type="platform")
            tenant_ids = [(await create_tenant(db, f"Prop {i}", actor)).id for i in range(TENANTS)]
            await _run(db, tenant_ids, ops)
        finally:
            await engine.dispose()

    run_in_fresh_loop(scenario)
