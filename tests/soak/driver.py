"""Isolation under load: many tenants at once, every answer checked against the tenant that asked.

The engine behind `make soak` (`python -m tests.soak`) and the short run in `make test`
(`tests/soak/test_soak.py`): it takes an `httpx.AsyncClient` for the API and a token minter, and
runs a `SoakPlan`.

Everything a tenant sends carries its marker (`corpus.MARKER`): its documents' every sentence, their
filenames and metadata, its users' subjects and its request ids. So every row of every answer can
be attributed: a search hit, list item, read, download or audit event returned to tenant A must name
A's marker and no other, and any document or tenant id in it must be A's. Ids that cannot be
attributed yet (a list may show an upload whose 202 is still on its way) are checked at the end.

Phases: tenants are created; the scheduled operations run concurrently (a semaphore bounds them)
until they are done or the time cap passes; the driver waits (`tests.waiting.eventually`) until
every live document is `ready` or `failed`; then each tenant is checked whole: its list against
what it uploaded, deleted and restored, a final search, its whole audit trail (every upload,
deletion, restore and outcome recorded, nothing of another tenant's), and `verify`.

Documents a tenant works on are taken one at a time (`busy`), so each request knows its answer:
a live document reads 200, a deleted one 404, another tenant's 404 always.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.security import Role, mint_token
from core.settings import Settings
from ingest.processing import WORKER_ACTOR
from tests.soak.corpus import MARKER, NO_TEXT, Kind, choose_kind, make_document, new_marker, search_query
from tests.waiting import Deadline, eventually

Minter = Callable[[Role, uuid.UUID | None, str], str]
"""`(role, tenant_id, subject) -> token`."""

UUID_TEXT = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TERMINAL = ("ready", "failed")
PLATFORM_SUBJECT = "soak-platform"
MAX_LISTED_FAILURES = 60

WEIGHTS = {
    "search": 36,
    "list": 12,
    "read": 14,
    "download": 8,
    "delete": 5,
    "restore": 4,
    "audit read": 8,
    "verify": 2,
    "probe": 8,
}
"""How often each operation is scheduled, besides the uploads (every document is uploaded once)."""


def settings_minter(settings: Settings, ttl_seconds: int) -> Minter:
    """Development tokens signed with `settings`' secret (`core.security.mint_token`)."""

    def mint(role: Role, tenant_id: uuid.UUID | None, subject: str) -> str:
        return mint_token(settings, subject=subject, role=role, tenant_id=tenant_id, ttl_seconds=ttl_seconds)

    return mint


@dataclass(frozen=True)
class SoakPlan:
    """What to run. `duration_seconds` caps the load (operations not started by then are skipped and
    counted); `settle_seconds` caps the wait for processing to finish afterwards."""

    tenants: int = 20
    documents_per_tenant: int = 20
    requests: int = 3000
    duration_seconds: float = 600.0
    settle_seconds: float = 600.0
    concurrency: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tenants < 2:
            raise ValueError("a soak needs at least two tenants to look for leaks between")
        if self.documents_per_tenant < 1 or self.concurrency < 1:
            raise ValueError("documents_per_tenant and concurrency must be at least 1")
        if self.requests < self.uploads:
            raise ValueError(f"requests must cover the {self.uploads} uploads")
        if self.duration_seconds <= 0 or self.settle_seconds <= 0:
            raise ValueError("duration_seconds and settle_seconds must be positive")

    @property
    def uploads(self) -> int:
        return self.tenants * self.documents_per_tenant

    @property
    def token_ttl_seconds(self) -> int:
        """Long enough for the whole run, final checks included."""
        return int(self.duration_seconds + 3 * self.settle_seconds) + 600


@dataclass
class Doc:
    id: str
    filename: str
    kind: Kind
    sha256: str
    size_bytes: int
    content: bytes
    status: str = "queued"
    error_code: str | None = None
    deleted: bool = False
    deleted_once: bool = False
    restored: bool = False
    busy: bool = False

    @property
    def expect_failure(self) -> bool:
        return self.kind == "blank-pdf"


@dataclass
class TenantRun:
    index: int
    marker: str
    id: str = ""
    admin: dict[str, str] = field(default_factory=dict)
    member: dict[str, str] = field(default_factory=dict)
    documents: dict[str, Doc] = field(default_factory=dict)
    uploaded: int = 0
    probed: set[str] = field(default_factory=set)
    """Other tenants' document ids this tenant asked for: its own denials may name them."""
    seen_documents: set[str] = field(default_factory=set)
    """Document ids answered to this tenant as its own: all must be its uploads (checked at the end)."""
    seen_ids: set[str] = field(default_factory=set)
    seen_in_denials: set[str] = field(default_factory=set)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def subjects(self) -> tuple[str, str]:
        return (f"{self.marker}-admin", f"{self.marker}-member")

    @property
    def request_prefix(self) -> str:
        return f"soak.{self.marker}."

    def request_id(self) -> str:
        return f"{self.request_prefix}{next(self.counter)}"

    def settled_deleted(self) -> set[str]:
        """Documents whose deletion has been answered and that no restore is touching."""
        return {doc.id for doc in self.documents.values() if doc.deleted and not doc.busy}


@dataclass
class SoakReport:
    plan: SoakPlan
    tenants: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rows_checked: int = 0
    cross_tenant_rows: int = 0
    deleted_rows: int = 0
    probes_refused: int = 0
    documents: int = 0
    ready: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    deleted: int = 0
    restored: int = 0
    lost: int = 0
    chains_valid: int = 0
    skipped: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.failures
            and not self.server_errors
            and self.cross_tenant_rows == 0
            and self.lost == 0
            and self.chains_valid == self.tenants
        )

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def summary(self) -> str:
        total = sum(self.requests.values())
        by_op = ", ".join(f"{op} {count}" for op, count in sorted(self.requests.items(), key=lambda kv: -kv[1]))
        reasons = ", ".join(f"{code} {count}" for code, count in sorted(self.failed.items()))
        failed = sum(self.failed.values())
        parts = [
            f"soak: {self.tenants} tenants, {total} requests ({by_op})",
            f"{self.documents} documents ({self.ready} ready, {failed} failed"
            + (f": {reasons}" if reasons else "")
            + f"; {self.deleted} deleted, {self.restored} restored)",
            f"{self.rows_checked} rows checked",
            f"{self.cross_tenant_rows} cross-tenant rows",
            f"{self.deleted_rows} deleted rows returned",
            f"{self.probes_refused} cross-tenant probes refused",
            f"{self.lost} lost",
            f"{self.chains_valid}/{self.tenants} chains valid",
            f"{len(self.server_errors)} 5xx",
        ]
        if self.rate_limited:
            parts.append(f"{sum(self.rate_limited.values())} rate-limited (429)")
        if self.skipped:
            parts.append(f"{self.skipped} operations not started before the time cap")
        phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.phases.items())
        parts.append(f"{self.seconds:.0f} s" + (f" ({phases})" if phases else ""))
        return ", ".join(parts)

    def render(self) -> str:
        """The summary line, then every 5xx and failure (operations, statuses, codes and ids; never bodies)."""
        lines = [self.summary(), *(f"  5xx: {line}" for line in self.server_errors)]
        lines += [f"  failure: {line}" for line in self.failures[:MAX_LISTED_FAILURES]]
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {len(self.failures) - MAX_LISTED_FAILURES} more failures")
        lines.append("soak: " + ("passed" if self.ok else "FAILED"))
        return "\n".join(lines)


def _error_code(response: httpx.Response) -> str:
    """The `code` of our error shape (never the message or anything else a body holds)."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Soak:
    def __init__(self, client: httpx.AsyncClient, minter: Minter, plan: SoakPlan) -> None:
        self.client = client
        self.minter = minter
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.report = SoakReport(plan=plan)
        self.gate = asyncio.Semaphore(plan.concurrency)
        self.tenants: list[TenantRun] = []
        self.owner: dict[str, int] = {}
        """Marker, tenant id or document id -> the index of the tenant it belongs to."""
        self.platform = {"Authorization": "Bearer " + minter("platform_admin", None, PLATFORM_SUBJECT)}

    async def run(self) -> SoakReport:
        started = time.monotonic()
        self.tenants = [TenantRun(index=index, marker=new_marker()) for index in range(self.plan.tenants)]
        await asyncio.gather(*(self._create_tenant(tenant) for tenant in self.tenants))
        self.report.tenants = len([t for t in self.tenants if t.id])
        if self.report.tenants == self.plan.tenants:
            phase = time.monotonic()
            await self._load(started + self.plan.duration_seconds)
            self.report.phases["load"], phase = time.monotonic() - phase, time.monotonic()
            await self._settle()
            self.report.phases["settle"], phase = time.monotonic() - phase, time.monotonic()
            await asyncio.gather(*(self._gated(self._final_checks(tenant)) for tenant in self.tenants))
            self._check_deferred()
            self.report.phases["final checks"] = time.monotonic() - phase
        else:
            self.report.fail("not every tenant could be created; nothing else was run")
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _gated(self, work: Awaitable[None]) -> None:
        async with self.gate:
            await work

    # Requests -----------------------------------------------------------------------------------

    async def _call(
        self,
        op: str,
        method: str,
        url: str,
        headers: dict[str, str],
        request_id: str,
        expect: Collection[int],
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Send one request; count it; record a 5xx, 429 or unexpected status. None unless expected."""
        self.report.requests[op] += 1
        try:
            response = await self.client.request(method, url, headers={**headers, "X-Request-ID": request_id}, **kwargs)
        except httpx.TransportError as exc:
            self.report.fail(f"{op}: {method} {url.split('?')[0]} failed in transport ({type(exc).__name__})")
            return None
        status = response.status_code
        if status >= 500:
            self.report.server_errors.append(f"{op}: {method} answered {status} {_error_code(response)}")
            return None
        if status == 429:
            self.report.rate_limited[op] += 1
            return None
        if status not in expect:
            self.report.fail(f"{op}: {method} answered {status} {_error_code(response)}, expected {sorted(expect)}")
            return None
        return response

    async def _create_tenant(self, tenant: TenantRun) -> None:
        async with self.gate:
            response = await self._call(
                "tenant create",
                "POST",
                "/v1/tenants",
                self.platform,
                tenant.request_id(),
                {201},
                json={"name": f"Soak clinic {tenant.marker}"},
            )
        if response is None:
            return
        tenant.id = str(response.json()["id"])
        tenant_id = uuid.UUID(tenant.id)
        admin, member = tenant.subjects
        tenant.admin = {"Authorization": "Bearer " + self.minter("admin", tenant_id, admin)}
        tenant.member = {"Authorization": "Bearer " + self.minter("member", tenant_id, member)}
        self.owner[tenant.marker] = tenant.index
        self.owner[tenant.id] = tenant.index

    # Checks -------------------------------------------------------------------------------------

    def _row(self, tenant: TenantRun, op: str, problems: list[str], *, deleted: bool = False) -> None:
        """Count one checked row; a row with a problem is a cross-tenant row."""
        self.report.rows_checked += 1
        if problems:
            self.report.cross_tenant_rows += 1
            self.report.fail(f"{op} (tenant {tenant.index}): " + "; ".join(problems))
        if deleted:
            self.report.deleted_rows += 1
            self.report.fail(f"{op} (tenant {tenant.index}): returned a deleted document")

    def _foreign_markers(self, tenant: TenantRun, text: str) -> bool:
        return any(marker != tenant.marker for marker in MARKER.findall(text))

    def _document_id(self, tenant: TenantRun, document_id: str, problems: list[str]) -> None:
        """An id answered as this tenant's document: another tenant's is a leak; unknown is checked later."""
        owner = self.owner.get(document_id)
        if owner is not None and owner != tenant.index:
            problems.append("another tenant's document id")
        tenant.seen_documents.add(document_id)

    def _check_document(self, tenant: TenantRun, op: str, item: dict[str, Any], deleted: set[str]) -> None:
        """A document as list, read, upload and restore return it."""
        problems: list[str] = []
        text = json.dumps(item)
        tenant.seen_ids.update(UUID_TEXT.findall(text))
        if self._foreign_markers(tenant, text):
            problems.append("another tenant's marker")
        if tenant.marker not in str(item.get("filename")):
            problems.append("a filename without the tenant's marker")
        if (item.get("metadata") or {}).get("soak_tenant") != tenant.marker:
            problems.append("metadata without the tenant's marker")
        document_id = str(item.get("id"))
        self._document_id(tenant, document_id, problems)
        doc = tenant.documents.get(document_id)
        if doc is not None and (item.get("sha256") != doc.sha256 or item.get("size_bytes") != doc.size_bytes):
            problems.append("content hash or size differs from what was uploaded")
        if doc is not None and item.get("status") in TERMINAL:
            doc.status, doc.error_code = str(item["status"]), item.get("error_code")
        self._row(tenant, op, problems, deleted=document_id in deleted)

    def _check_hit(self, tenant: TenantRun, op: str, hit: dict[str, Any], deleted: set[str]) -> None:
        problems: list[str] = []
        text = json.dumps(hit)
        tenant.seen_ids.update(UUID_TEXT.findall(text))
        if self._foreign_markers(tenant, text):
            problems.append("another tenant's marker")
        if tenant.marker not in str(hit.get("text")):
            problems.append("chunk text without the tenant's marker")
        if tenant.marker not in str(hit.get("filename")):
            problems.append("a filename without the tenant's marker")
        document_id = str(hit.get("document_id"))
        self._document_id(tenant, document_id, problems)
        self._row(tenant, op, problems, deleted=document_id in deleted)

    def _check_event(self, tenant: TenantRun, op: str, event: dict[str, Any]) -> None:
        """An audit event returned to this tenant's admin: its actor, request, resource and ids are the tenant's."""
        problems: list[str] = []
        text = json.dumps(event)
        denied = event.get("outcome") == "denied"
        (tenant.seen_in_denials if denied else tenant.seen_ids).update(UUID_TEXT.findall(text))
        if self._foreign_markers(tenant, text):
            problems.append("another tenant's marker")
        actor_type, actor_id = event.get("actor_type"), event.get("actor_id")
        actors: dict[str, set[str | None]] = {
            "user": set(tenant.subjects),
            "platform": {PLATFORM_SUBJECT},
            "system": {WORKER_ACTOR.actor_id},
        }
        expected_actor = actors.get(str(actor_type), set())
        if actor_id not in expected_actor:
            problems.append(f"an actor of type {actor_type} that is not the tenant's")
        request_id = event.get("request_id")
        if request_id is not None and not str(request_id).startswith(tenant.request_prefix):
            problems.append("another tenant's request id")
        resource_type, resource_id = event.get("resource_type"), event.get("resource_id")
        if resource_type == "tenant" and resource_id != tenant.id:
            problems.append("another tenant's id as the resource")
        probed = denied and resource_id in tenant.probed
        if resource_type in ("document", "deleted document") and resource_id is not None and not probed:
            self._document_id(tenant, str(resource_id), problems)
        self._row(tenant, op, problems)

    # Load ---------------------------------------------------------------------------------------

    def _schedule(self) -> list[tuple[str, int]]:
        uploads = [("upload", t) for t in range(self.plan.tenants) for _ in range(self.plan.documents_per_tenant)]
        others = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=self.plan.requests - len(uploads))
        ops = uploads + [(op, self.rng.randrange(self.plan.tenants)) for op in others]
        self.rng.shuffle(ops)
        return ops

    async def _load(self, deadline: float) -> None:
        operations = {
            "upload": self._upload,
            "search": self._search,
            "list": self._list,
            "read": self._read,
            "download": self._download,
            "delete": self._delete,
            "restore": self._restore,
            "audit read": self._audit_read,
            "verify": self._verify,
            "probe": self._probe,
        }

        async def one(op: str, index: int) -> None:
            async with self.gate:
                if time.monotonic() >= deadline:
                    self.report.skipped += 1
                    return
                await operations[op](self.tenants[index])

        async with asyncio.TaskGroup() as group:
            for op, index in self._schedule():
                group.create_task(one(op, index))

    def _headers(self, tenant: TenantRun) -> dict[str, str]:
        return self.rng.choice((tenant.admin, tenant.member))

    @contextmanager
    def _taken(
        self, tenant: TenantRun, wanted: Callable[[Doc], bool], may: Callable[[TenantRun], bool] = lambda _: True
    ) -> Iterator[tuple[TenantRun, Doc] | None]:
        """A free document `wanted` of `tenant`, else of another tenant (so rare operations still happen),
        held (busy) for the block; None when there is none."""
        others = [t for t in self.tenants if t is not tenant]
        self.rng.shuffle(others)
        for owner in (tenant, *others):
            candidates = [doc for doc in owner.documents.values() if not doc.busy and wanted(doc)] if may(owner) else []
            if candidates:
                doc = self.rng.choice(candidates)
                doc.busy = True
                try:
                    yield owner, doc
                finally:
                    doc.busy = False
                return
        yield None

    def _kind(self, tenant: TenantRun) -> Kind:
        """One blank PDF (bound to fail: no text) as the last document of every fourth tenant."""
        last = tenant.uploaded == self.plan.documents_per_tenant - 1
        if last and self.plan.documents_per_tenant > 1 and tenant.index % 4 == 0:
            return "blank-pdf"
        return choose_kind(self.rng)

    async def _upload(self, tenant: TenantRun) -> None:
        number = tenant.uploaded
        tenant.uploaded += 1
        document = make_document(self.rng, tenant.marker, number, self._kind(tenant))
        metadata = json.dumps({"soak_tenant": tenant.marker, "number": number})
        response = await self._call(
            "upload",
            "POST",
            "/v1/documents",
            self._headers(tenant),
            tenant.request_id(),
            {202},
            files={"file": (document.filename, document.content, "application/octet-stream")},
            data={"metadata": metadata},
        )
        if response is None:
            return
        body = response.json()
        doc = Doc(
            id=str(body["id"]),
            filename=document.filename,
            kind=document.kind,
            sha256=_sha256(document.content),
            size_bytes=len(document.content),
            content=document.content,
        )
        self.owner.setdefault(doc.id, tenant.index)
        tenant.documents[doc.id] = doc
        if body.get("duplicate") or body.get("status") != "queued":
            self.report.fail(f"upload (tenant {tenant.index}): a new document answered as duplicate or not queued")
        self._check_document(tenant, "upload", body, set())

    async def _search(self, tenant: TenantRun, *, final: bool = False) -> None:
        mode = self.rng.choice(("vector", "hybrid"))
        body: dict[str, Any] = {
            "query": search_query(self.rng, tenant.marker, mode),
            "k": 100 if final else self.rng.choice((5, 10, 20)),
            "mode": mode,
        }
        if self.rng.random() < 0.25:
            body["filters"] = {"soak_tenant": tenant.marker}
        before = tenant.settled_deleted()
        response = await self._call(
            f"search {mode}", "POST", "/v1/search", self._headers(tenant), tenant.request_id(), {200}, json=body
        )
        if response is None:
            return
        deleted = before & tenant.settled_deleted()
        for hit in response.json()["results"]:
            self._check_hit(tenant, f"search {mode}", hit, deleted)

    async def _list_page(
        self, tenant: TenantRun, *, status: str | None, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        before = tenant.settled_deleted()
        response = await self._call(
            "list", "GET", "/v1/documents", self._headers(tenant), tenant.request_id(), {200}, params=params
        )
        if response is None:
            return None
        page = response.json()
        deleted = before & tenant.settled_deleted()
        items: list[dict[str, Any]] = page["items"]
        for item in items:
            self._check_document(tenant, "list", item, deleted)
            if status is not None and item.get("status") != status:
                self.report.fail(f"list (tenant {tenant.index}): an item outside the status filter")
        return items, page["next_cursor"]

    async def _list_all(self, tenant: TenantRun, status: str | None = None) -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self._list_page(tenant, status=status, limit=100, cursor=cursor)
            if page is None:
                return None
            items += page[0]
            cursor = page[1]
            if cursor is None:
                return items

    async def _list(self, tenant: TenantRun) -> None:
        status = self.rng.choice((None, None, "queued", "processing", "ready", "failed"))
        page = await self._list_page(tenant, status=status, limit=self.rng.choice((10, 50, 100)))
        if page is not None and page[1] is not None:
            await self._list_page(tenant, status=status, limit=10, cursor=page[1])

    async def _read(self, tenant: TenantRun) -> None:
        with self._taken(tenant, lambda _: True) as found:
            if found is None:
                await self._list(tenant)
                return
            tenant, doc = found
            response = await self._call(
                "read",
                "GET",
                f"/v1/documents/{doc.id}",
                self._headers(tenant),
                tenant.request_id(),
                {404} if doc.deleted else {200},
            )
            if response is not None and not doc.deleted:
                body = response.json()
                if body.get("id") != doc.id:
                    self._row(tenant, "read", ["a different document than the one asked for"])
                else:
                    self._check_document(tenant, "read", body, set())

    async def _download(self, tenant: TenantRun) -> None:
        with self._taken(tenant, lambda _: True) as found:
            if found is None:
                await self._list(tenant)
                return
            tenant, doc = found
            response = await self._call(
                "download",
                "GET",
                f"/v1/documents/{doc.id}/content",
                self._headers(tenant),
                tenant.request_id(),
                {404} if doc.deleted else {200},
            )
            if response is not None and not doc.deleted:
                problems = [] if response.content == doc.content else ["bytes differ from what the tenant uploaded"]
                if self._foreign_markers(tenant, response.content.decode("latin-1")):
                    problems.append("another tenant's marker")
                self._row(tenant, "download", problems)

    async def _delete(self, tenant: TenantRun) -> None:
        allowed = max(1, self.plan.documents_per_tenant // 4)
        with self._taken(
            tenant,
            lambda d: not d.deleted and not d.deleted_once,
            lambda t: sum(doc.deleted_once for doc in t.documents.values()) < allowed,
        ) as found:
            if found is None:
                await self._search(tenant)
                return
            tenant, doc = found
            response = await self._call(
                "delete", "DELETE", f"/v1/documents/{doc.id}", self._headers(tenant), tenant.request_id(), {204}
            )
            if response is not None:
                doc.deleted = doc.deleted_once = True

    async def _restore(self, tenant: TenantRun) -> None:
        with self._taken(tenant, lambda d: d.deleted and not d.restored) as found:
            if found is None:
                await self._list(tenant)
                return
            tenant, doc = found
            response = await self._call(
                "restore",
                "POST",
                f"/v1/documents/{doc.id}/restore",
                self._headers(tenant),
                tenant.request_id(),
                {200},
            )
            if response is not None:
                doc.deleted, doc.restored = False, True
                self._check_document(tenant, "restore", response.json(), set())

    async def _audit_page(
        self, tenant: TenantRun, params: dict[str, str | int]
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        response = await self._call(
            "audit read", "GET", "/v1/audit-logs", tenant.admin, tenant.request_id(), {200}, params=params
        )
        if response is None:
            return None
        page = response.json()
        items: list[dict[str, Any]] = page["items"]
        for event in items:
            self._check_event(tenant, "audit read", event)
            for name in ("action", "actor_id", "resource_id"):
                if name in params and event.get(name) != params[name]:
                    self.report.fail(f"audit read (tenant {tenant.index}): an event outside the {name} filter")
        return items, page["next_cursor"]

    async def _audit_read(self, tenant: TenantRun) -> None:
        params: dict[str, str | int] = {"limit": self.rng.choice((20, 100, 500))}
        choice = self.rng.randrange(4)
        if choice == 1:
            params["action"] = "document.uploaded"
        elif choice == 2:
            params["actor_id"] = tenant.subjects[1]
        elif choice == 3 and tenant.documents:
            params["resource_id"] = self.rng.choice(list(tenant.documents))
        await self._audit_page(tenant, params)

    async def _verify(self, tenant: TenantRun) -> bool:
        response = await self._call("verify", "GET", "/v1/audit-logs/verify", tenant.admin, tenant.request_id(), {200})
        if response is None:
            return False
        if response.json().get("valid") is not True:
            self.report.fail(f"verify (tenant {tenant.index}): the chain was reported broken")
            return False
        return True

    async def _probe(self, tenant: TenantRun) -> None:
        """Ask for another tenant's document in one of five ways: always a 404, or no results."""
        others = [t for t in self.tenants if t is not tenant and t.documents]
        if not others:
            await self._search(tenant)
            return
        victim = self.rng.choice(others)
        target = self.rng.choice(list(victim.documents))
        tenant.probed.add(target)  # before the request: a concurrent audit read may see the denial first
        way = self.rng.choice(("read", "download", "delete", "restore", "search"))
        headers = self._headers(tenant)
        if way == "search":
            body = {"query": victim.marker, "k": 20, "mode": "hybrid", "document_ids": [target]}
            if self.rng.random() < 0.5:
                body = {"query": victim.marker, "k": 20, "mode": "hybrid", "filters": {"soak_tenant": victim.marker}}
            response = await self._call("probe", "POST", "/v1/search", headers, tenant.request_id(), {200}, json=body)
            if response is not None:
                results = response.json()["results"]
                for _ in results:
                    self._row(tenant, "probe", ["another tenant's document searched by id or metadata"])
                if not results:
                    self.report.probes_refused += 1
            return
        method, path = {
            "read": ("GET", f"/v1/documents/{target}"),
            "download": ("GET", f"/v1/documents/{target}/content"),
            "delete": ("DELETE", f"/v1/documents/{target}"),
            "restore": ("POST", f"/v1/documents/{target}/restore"),
        }[way]
        if await self._call("probe", method, path, headers, tenant.request_id(), {404}) is not None:
            self.report.probes_refused += 1

    # Settle and final checks --------------------------------------------------------------------

    async def _unfinished(self, tenant: TenantRun) -> bool:
        """Whether the tenant's list still shows work queued or processing (also checked row by row)."""
        for status in ("queued", "processing"):
            items = await self._list_all(tenant, status)
            if items is None or items:
                return True
        return False

    async def _settle(self) -> None:
        """Wait, tenant by tenant within one deadline, until no live document is queued or processing."""
        deadline = Deadline(self.plan.settle_seconds)
        for tenant in self.tenants:

            async def done(tenant: TenantRun = tenant) -> bool:
                return not await self._unfinished(tenant)

            try:
                await eventually(done, f"tenant {tenant.index}'s documents processed", seconds=deadline.remaining())
            except AssertionError:
                return  # what is still unfinished is counted as lost by the final checks

    async def _final_checks(self, tenant: TenantRun) -> None:
        listed = await self._list_all(tenant)
        if listed is None:
            self.report.fail(f"final list (tenant {tenant.index}): could not be read")
            return
        by_id = {str(item["id"]): item for item in listed}
        for document_id in by_id.keys() - tenant.documents.keys():
            self._row(tenant, "final list", ["a document the tenant never uploaded"])
            self.report.fail(f"final list (tenant {tenant.index}): unknown document {document_id}")
        for doc in tenant.documents.values():
            self._final_document(tenant, doc, by_id.get(doc.id))
        for doc in [d for d in tenant.documents.values() if d.deleted]:
            await self._call("read", "GET", f"/v1/documents/{doc.id}", tenant.member, tenant.request_id(), {404})
        await self._search(tenant, final=True)
        await self._final_audit(tenant)
        if await self._verify(tenant):
            self.report.chains_valid += 1

    def _final_document(self, tenant: TenantRun, doc: Doc, item: dict[str, Any] | None) -> None:
        self.report.documents += 1
        self.report.restored += doc.restored
        where = f"document {doc.id} (tenant {tenant.index}, {doc.kind})"
        if doc.deleted:
            self.report.deleted += 1
            if item is not None:
                self.report.fail(f"final list: deleted {where} is listed")
            return
        if item is None:
            self.report.lost += 1
            self.report.fail(f"final list: {where} is missing" + (" after its restore" if doc.restored else ""))
            return
        status, code = item.get("status"), item.get("error_code")
        if status == "ready":
            self.report.ready += 1
        elif status == "failed" and code and item.get("error_message"):
            self.report.failed[str(code)] += 1
        else:
            self.report.lost += 1
            self.report.fail(
                f"final list: {where} is {status}"
                + (" after its restore" if doc.restored else "")
                + ("" if status != "failed" else " without a reason")
            )
            return
        if doc.expect_failure and (status, code) != ("failed", NO_TEXT):
            self.report.fail(f"final list: {where} should have failed with {NO_TEXT}, is {status} {code}")
        if not doc.expect_failure and status != "ready":
            self.report.fail(f"final list: {where} failed with {code}")

    async def _final_audit(self, tenant: TenantRun) -> None:
        """The whole trail: nothing of another tenant's, and every upload, deletion, restore and outcome in it."""
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self._audit_page(tenant, params)
            if page is None:
                self.report.fail(f"final audit (tenant {tenant.index}): could not be read")
                return
            events += page[0]
            cursor = page[1]
            if cursor is None:
                break
        recorded: dict[str, set[str]] = {}
        for event in events:
            if event.get("outcome") != "denied" and event.get("resource_id") is not None:
                recorded.setdefault(str(event["action"]), set()).add(str(event["resource_id"]))
        expected: list[tuple[str, Iterable[Doc]]] = [
            ("document.uploaded", tenant.documents.values()),
            ("document.deleted", [d for d in tenant.documents.values() if d.deleted_once]),
            ("document.restored", [d for d in tenant.documents.values() if d.restored]),
            ("document.processed", [d for d in tenant.documents.values() if d.status == "ready"]),
            ("document.failed", [d for d in tenant.documents.values() if d.status == "failed"]),
        ]
        for action, docs in expected:
            missing = [doc.id for doc in docs if doc.id not in recorded.get(action, set())]
            if missing:
                self.report.fail(f"final audit (tenant {tenant.index}): {len(missing)} {action} events missing")

    def _check_deferred(self) -> None:
        """Ids that could not be attributed when they were answered: every one must be the tenant's own."""
        for tenant in self.tenants:
            for document_id in tenant.seen_documents - tenant.documents.keys():
                self._row(tenant, "answers", [f"document {document_id} answered as the tenant's is not one of its own"])
            answered = tenant.seen_ids | (tenant.seen_in_denials - tenant.probed)
            foreign = {i for i in answered if self.owner.get(i, tenant.index) != tenant.index}
            for identifier in foreign:
                self._row(tenant, "answers", [f"another tenant's id {identifier} in an answer"])


async def run_soak(client: httpx.AsyncClient, minter: Minter, plan: SoakPlan) -> SoakReport:
    """Run `plan` against the API behind `client`; the report says what was tried and what was found."""
    return await Soak(client, minter, plan).run()
