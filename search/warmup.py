"""Start-up rehearsal of the search path, so the first search after `/readyz` costs what the hundredth does.

Loading and warming the model (`warm_embedder`) is most of a cold start, not all of it: the pool
opens its connections on demand, asyncpg prepares each statement once per connection, and SQLAlchemy
compiles each statement shape once per process. The rehearsal runs every statement a search runs, on
as many connections as the pool keeps, in the system tenant (which holds no documents), and rolls
each transaction back: nothing is read and nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from core.db import SYSTEM_TENANT_ID, Database
from core.settings import Settings
from embeddings.base import Embedder
from embeddings.model_thread import on_model_thread
from embeddings.sentence_transformer import WARM_UP_TEXT, warm_embedder
from models.audit import SYSTEM_ACTOR, write_audit_event
from search.repository import Scope, text_search
from search.service import HYBRID_CANDIDATES, run_vector_query
from tenants import repository as tenants

log = logging.getLogger(__name__)

REHEARSAL_SUBJECT = "phivault:rehearsal"
"""Looked up, never found: no user of the system tenant has it."""


class _Rehearsed(Exception):
    """Raised at the end of a rehearsal so its transaction rolls back."""


async def _rehearse(db: Database, embedder: Embedder, settings: Settings, query_vector: list[float]) -> None:
    scope = Scope(tenant_id=SYSTEM_TENANT_ID, model_id=embedder.model_id, dims=embedder.native_dim)
    try:
        async with db.tenant_session(SYSTEM_TENANT_ID) as session:
            await tenants.get_tenant(session, SYSTEM_TENANT_ID)
            await tenants.get_live_user_access(session, SYSTEM_TENANT_ID, REHEARSAL_SUBJECT, datetime.now(UTC))
            await run_vector_query(session, scope, query_vector, 10, settings)
            await run_vector_query(session, scope, query_vector, 10, settings, plan="hnsw")
            await text_search(session, scope, WARM_UP_TEXT, query_vector, 10 * HYBRID_CANDIDATES)
            await write_audit_event(session, SYSTEM_ACTOR.event(SYSTEM_TENANT_ID, "search.rehearsed"))
            raise _Rehearsed
    except _Rehearsed:
        pass


async def warm_search(db: Database, settings: Settings) -> Embedder:
    """The embedder, loaded and warmed, once the search statements have run on `db_pool_size` connections.

    A database that cannot be reached at start-up does not hold the model back: the rehearsal is
    skipped (and logged), and `/readyz` reports the database on its own."""
    embedder = await on_model_thread(warm_embedder, settings)
    query_vector = await on_model_thread(embedder.embed_query, WARM_UP_TEXT)
    try:
        await asyncio.gather(
            *(_rehearse(db, embedder, settings, query_vector) for _ in range(settings.db_pool_size))
        )
    except Exception as exc:  # the API serves without the rehearsal; only its first searches are slower
        log.warning("search rehearsal skipped", extra={"error_type": type(exc).__name__})
    return embedder
