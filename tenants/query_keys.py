"""The per-tenant key of the search audit's query HMAC, and the HMAC itself.

`search.query` events record `query_hmac = HMAC-SHA256(tenant query key, normalised query)`: equal queries
of one tenant match, an investigator holding the tenant's key can compute what to look for (`phivault audit
query-hash`), and a short query cannot be guessed from the trail (a plain SHA-256 could be, by hashing
guesses). The key is 32 random bytes stored on the tenants row wrapped by the tenant key
(`core.keys: wrap_secret`), so destroying the tenant key (offboarding) makes it unrecoverable too.

New tenants get their key at creation (`tenants.service: key_provisioner`); a tenant that predates it gets
one at its first need, in a short transaction of its own (`repository.set_query_key_once`: one key even when
first searches race). Unwrapped keys are cached in process, bounded, keyed by the tenant's key material and
the wrapped query key, so once warm a search costs no KMS call, no thread hop and no statement: the tenant
row is the one `acting_session` already read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import unicodedata
from collections import OrderedDict

from core.db import Database
from core.keys import KEY_BYTES, KeyProvider, TenantKeyRef
from models.tenant import Tenant
from tenants import repository
from tenants.service import QUERY_KEY_PURPOSE, tenant_key_ref

QUERY_KEY_CACHE_SIZE = 4096
"""Tenants whose unwrapped query key a process keeps (32 bytes each, plus the key of the entry)."""


def normalise_query(query: str) -> str:
    """NFKC, case-folded, whitespace collapsed: `Chest  Pain` and `chest pain` are one query to an investigator."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def query_hmac(key: bytes, query: str) -> str:
    return hmac.new(key, normalise_query(query).encode(), hashlib.sha256).hexdigest()


class QueryKeys:
    """The tenants' query keys, unwrapped once per process and kept in a bounded LRU cache.

    The cache is a small `OrderedDict` rather than `functools.lru_cache`, so a hit is looked up on the event
    loop (no thread hop, which could queue behind the embedder's threads) and only a miss goes to a thread
    for the blocking unwrap (a KMS `Decrypt`)."""

    def __init__(self, db: Database, keys: KeyProvider, *, cache_size: int = QUERY_KEY_CACHE_SIZE) -> None:
        self._db = db
        self._keys = keys
        self._cache: OrderedDict[tuple[TenantKeyRef, bytes], bytes] = OrderedDict()
        self._cache_size = cache_size

    async def digest(self, tenant: Tenant, query: str) -> str:
        """The HMAC of `query` under `tenant`'s query key."""
        return query_hmac(await self.key(tenant), query)

    async def key(self, tenant: Tenant) -> bytes:
        ref = tenant_key_ref(tenant)
        wrapped = tenant.query_key_wrapped or await self._create(ref)
        entry = (ref, wrapped)
        key = self._cache.get(entry)
        if key is not None:
            self._cache.move_to_end(entry)
            return key
        key = await asyncio.to_thread(self._keys.unwrap_secret, ref, wrapped, QUERY_KEY_PURPOSE)
        self._cache[entry] = key
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key

    async def _create(self, ref: TenantKeyRef) -> bytes:
        """A key for a tenant that predates query keys, committed in a transaction of its own."""
        fresh = await asyncio.to_thread(self._keys.wrap_secret, ref, secrets.token_bytes(KEY_BYTES), QUERY_KEY_PURPOSE)
        async with self._db.tenant_session(ref.tenant_id) as session:
            return await repository.set_query_key_once(session, ref.tenant_id, fresh)
