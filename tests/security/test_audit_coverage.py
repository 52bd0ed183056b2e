"""Every HTTP route leaves an audit trail: its success, and each way it can be refused.

The route list comes from the real app's OpenAPI document. Each (method, path) must have a
recipe in RECIPES or be in EXEMPT (health probes: no tenant data, no caller identity); a new
route without a recipe fails `test_every_route_has_a_recipe`, so an unaudited endpoint cannot
slip in unnoticed.

A recipe names a success call (role, path parameters created for the purpose in a fresh
tenant, body) with the exact audit actions it must write, and the refusals it must audit:

* no token and a forged token: 401, one `auth.denied` row in the system tenant;
* a role that may not call the route: 403, one `access.denied` row in the caller's tenant
  (the system tenant for platform administrators, who have none);
* another tenant's resource id: 404, one `access.denied` row in the caller's tenant;
* an unknown tenant id (platform routes): 404, one `access.denied` row in the system tenant;
* a suspended tenant (routes every tenant role may call): 403, in that tenant.

Each call carries its own `X-Request-ID`. After the call, every audit row written since the
call began (in any tenant, background-worker rows aside) must be exactly the expected ones,
carry that request id, and sit in the expected tenant.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.db import SYSTEM_TENANT_ID
from core.runtime import Services
from core.security import Role
from core.settings import Settings
from tests.harness import Tokens, upload
from tests.security.bad_input import SMALL_LIMIT, multipart

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# Routes that need no audit trail: they carry no tenant data and no caller identity.
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe: a constant answer, no tenant data, no authentication",
    ("GET", "/readyz"): "readiness probe: database and broker reachability only, no tenant data",
    ("GET", "/metrics"): "process metrics (when configured): aggregate counters, no tenant data",
}


@dataclass
class Env:
    client: httpx.AsyncClient
    tokens: Tokens
    owner: AsyncEngine

    def headers(self, role: Role, tenant_id: uuid.UUID) -> dict[str, str]:
        """A token for `role`: in `tenant_id`, or (platform administrators) in no tenant."""
        if role == "platform_admin":
            return self.tokens.platform()
        return self.tokens.headers(role, tenant_id)

    async def new_tenant(self) -> uuid.UUID:
        response = await self.client.post(
            "/v1/tenants", json={"name": f"Audit Coverage {uuid.uuid4().hex[:8]}"}, headers=self.tokens.platform()
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    async def document(self, tenant_id: uuid.UUID, *, deleted: bool = False) -> str:
        headers = self.tokens.headers("member", tenant_id)
        content = f"Audit coverage note {uuid.uuid4()}: follow-up in two weeks.".encode()
        response = await upload(self.client, headers, content, "note.txt")
        assert response.status_code == 202, response.text
        document_id: str = response.json()["id"]
        if deleted:
            gone = await self.client.delete(f"/v1/documents/{document_id}", headers=headers)
            assert gone.status_code == 204, gone.text
        return document_id

    async def suspend(self, tenant_id: uuid.UUID) -> None:
        response = await self.client.patch(
            f"/v1/tenants/{tenant_id}", json={"status": "suspended"}, headers=self.tokens.platform()
        )
        assert response.status_code == 200, response.text

    async def user(self, tenant_id: uuid.UUID) -> str:
        """The id of a new viewer of the tenant, provisioned by a request of its own."""
        subject = f"coverage-viewer-{uuid.uuid4().hex[:8]}"
        response = await self.client.get("/v1/documents", headers=self.tokens.headers("viewer", tenant_id, sub=subject))
        assert response.status_code == 200, response.text
        async with self.owner.connect() as conn:
            user_id = await conn.scalar(
                text("SELECT id FROM users WHERE tenant_id = :t AND subject = :s"), {"t": tenant_id, "s": subject}
            )
        return str(user_id)

    async def is_provisioned(self, tenant_id: uuid.UUID, subject: str) -> bool:
        async with self.owner.connect() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM users WHERE tenant_id = :t AND subject = :s AND deleted_at IS NULL"),
                {"t": tenant_id, "s": subject},
            )
        return found is not None


Prepare = Callable[[Env, uuid.UUID], Awaitable[dict[str, str]]]
RequestArgs = Callable[[dict[str, str]], dict[str, Any]]
"""The request's body and files, given the prepared parameters (a body may name a prepared id)."""


async def no_params(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    return {}


async def a_document(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    return {"document_id": await env.document(tenant_id)}


async def a_deleted_document(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    return {"document_id": await env.document(tenant_id, deleted=True)}


async def the_tenant(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    return {"tenant_id": str(tenant_id)}


async def an_offboarding_tenant(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    response = await env.client.delete(f"/v1/tenants/{tenant_id}", headers=env.tokens.platform())
    assert response.status_code == 202, response.text
    return {"tenant_id": str(tenant_id)}


async def a_user(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    return {"user_id": await env.user(tenant_id)}


async def a_grant(env: Env, tenant_id: uuid.UUID) -> dict[str, str]:
    body = grant_body({"user_id": await env.user(tenant_id)})
    response = await env.client.post("/v1/access-grants", headers=env.tokens.headers("admin", tenant_id), **body)
    assert response.status_code == 201, response.text
    return {"grant_id": response.json()["id"]}


BODY_PARAMS = {"user_id"}
"""Prepared ids a request body names, where the path names none (`POST /v1/access-grants`)."""


def no_body(params: dict[str, str]) -> dict[str, Any]:
    return {}


def upload_body(params: dict[str, str]) -> dict[str, Any]:
    content = f"Upload for audit coverage {uuid.uuid4()}.".encode()
    return {"files": {"file": ("coverage.txt", content, "text/plain")}, "data": {"metadata": '{"kind": "note"}'}}


def report_params(params: dict[str, str]) -> dict[str, Any]:
    return {"params": {"actor_id": "member-user"}}


def search_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"query": "follow-up appointment", "k": 3, "mode": "hybrid"}}


def embed_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"query": "follow-up appointment"}}


def new_tenant_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"name": f"Coverage Created {uuid.uuid4().hex[:8]}"}}


def suspend_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"status": "suspended"}}


def promote_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"role": "member"}}


def revoke_body(params: dict[str, str]) -> dict[str, Any]:
    return {"json": {"jti": str(uuid.uuid4()), "expires_at": "2099-01-01T00:00:00Z"}}


def grant_body(params: dict[str, str]) -> dict[str, Any]:
    reason = "Audit coverage: the on-call administrator is away."
    return {"json": {"user_id": params["user_id"], "role": "admin", "reason": reason, "expires_in_minutes": 30}}


@dataclass(frozen=True)
class Denial:
    """A refused call and the `access.denied` row it must leave.

    `ids`: "own" path ids (the caller's tenant), "foreign" (another tenant's), "unknown" (random).
    `suspended`: the caller's tenant is suspended. The row lands in the caller's tenant, or the
    system tenant for platform administrators.
    """

    role: Role
    status: int
    code: str
    reason: str
    ids: Literal["own", "foreign", "unknown"] = "own"
    suspended: bool = False


def wrong_role(role: Role) -> Denial:
    return Denial(role, 403, "forbidden", "role_not_allowed")


def foreign_id(role: Role) -> Denial:
    return Denial(role, 404, "not_found", "not_found", ids="foreign")


def unknown_id(role: Role) -> Denial:
    return Denial(role, 404, "not_found", "not_found", ids="unknown")


def suspended_tenant(role: Role) -> Denial:
    return Denial(role, 403, "tenant_suspended", "tenant_suspended", suspended=True)


@dataclass(frozen=True)
class Recipe:
    role: Role
    status: int
    actions: tuple[str, ...]
    denials: tuple[Denial, ...]
    prepare: Prepare = no_params
    request: RequestArgs = no_body
    # Where the success is audited: the fresh tenant the call concerns, the tenant it creates, or the system tenant.
    audited_in: Literal["tenant", "created", "system"] = "tenant"


RECIPES: dict[tuple[str, str], Recipe] = {
    ("POST", "/v1/tenants"): Recipe(
        "platform_admin",
        201,
        ("tenant.created",),
        (wrong_role("admin"), wrong_role("viewer")),
        request=new_tenant_body,
        audited_in="created",
    ),
    ("GET", "/v1/tenants"): Recipe(
        "platform_admin",
        200,
        ("tenant.listed",),
        (wrong_role("admin"), wrong_role("member")),
        audited_in="system",
    ),
    ("GET", "/v1/tenants/{tenant_id}"): Recipe(
        "platform_admin",
        200,
        ("tenant.viewed",),
        (wrong_role("admin"), unknown_id("platform_admin")),
        prepare=the_tenant,
    ),
    ("PATCH", "/v1/tenants/{tenant_id}"): Recipe(
        "platform_admin",
        200,
        ("tenant.updated",),
        (wrong_role("admin"), unknown_id("platform_admin")),
        prepare=the_tenant,
        request=suspend_body,
    ),
    ("DELETE", "/v1/tenants/{tenant_id}"): Recipe(
        "platform_admin",
        202,
        ("tenant.offboarding_scheduled",),
        (wrong_role("admin"), unknown_id("platform_admin")),
        prepare=the_tenant,
    ),
    ("DELETE", "/v1/tenants/{tenant_id}/offboarding"): Recipe(
        "platform_admin",
        200,
        ("tenant.offboarding_cancelled",),
        (wrong_role("admin"), unknown_id("platform_admin")),
        prepare=an_offboarding_tenant,
    ),
    ("POST", "/v1/documents"): Recipe(
        "member",
        202,
        ("document.uploaded",),
        (wrong_role("viewer"), wrong_role("platform_admin"), suspended_tenant("member")),
        request=upload_body,
    ),
    ("GET", "/v1/documents"): Recipe(
        "viewer",
        200,
        ("document.listed",),
        (wrong_role("platform_admin"), suspended_tenant("viewer")),
    ),
    ("GET", "/v1/documents/{document_id}"): Recipe(
        "viewer",
        200,
        ("document.viewed",),
        (foreign_id("viewer"), wrong_role("platform_admin"), suspended_tenant("viewer")),
        prepare=a_document,
    ),
    ("DELETE", "/v1/documents/{document_id}"): Recipe(
        "member",
        204,
        ("document.deleted",),
        (wrong_role("viewer"), foreign_id("member"), foreign_id("admin")),
        prepare=a_document,
    ),
    ("GET", "/v1/documents/{document_id}/content"): Recipe(
        "member",
        200,
        ("document.downloaded",),
        (wrong_role("viewer"), foreign_id("member")),
        prepare=a_document,
    ),
    ("POST", "/v1/documents/{document_id}/restore"): Recipe(
        "member",
        200,
        ("document.restored",),
        (wrong_role("viewer"), foreign_id("member")),
        prepare=a_deleted_document,
    ),
    ("POST", "/v1/search"): Recipe(
        "viewer",
        200,
        ("search.query",),
        (wrong_role("platform_admin"), suspended_tenant("viewer")),
        request=search_body,
    ),
    ("POST", "/v1/embeddings/query"): Recipe(
        "platform_admin",
        200,
        ("embedding.computed",),
        (wrong_role("admin"), wrong_role("viewer")),
        request=embed_body,
        audited_in="system",
    ),
    ("GET", "/v1/audit-logs"): Recipe(
        "admin",
        200,
        ("audit.read",),
        (wrong_role("member"), wrong_role("viewer"), wrong_role("platform_admin")),
    ),
    ("GET", "/v1/audit-logs/export"): Recipe(
        "admin",
        200,
        ("audit.exported",),
        (wrong_role("member"), wrong_role("viewer")),
    ),
    ("GET", "/v1/audit-logs/report"): Recipe(
        "admin",
        200,
        ("audit.report",),
        (wrong_role("member"), wrong_role("viewer")),
        request=report_params,
    ),
    ("GET", "/v1/audit-logs/verify"): Recipe(
        "admin",
        200,
        ("audit.verified",),
        (wrong_role("member"), wrong_role("viewer")),
    ),
    ("GET", "/v1/users"): Recipe(
        "admin",
        200,
        ("user.listed",),
        (wrong_role("member"), wrong_role("viewer"), wrong_role("platform_admin")),
    ),
    ("PATCH", "/v1/users/{user_id}"): Recipe(
        "admin",
        200,
        ("user.updated",),
        (wrong_role("member"), foreign_id("admin"), unknown_id("admin")),
        prepare=a_user,
        request=promote_body,
    ),
    ("POST", "/v1/tokens/revoke"): Recipe(
        "admin",
        200,
        ("token.revoked",),
        (wrong_role("member"), wrong_role("viewer")),
        request=revoke_body,
    ),
    ("POST", "/v1/access-grants"): Recipe(
        "admin",
        201,
        ("access.granted",),
        (wrong_role("member"), wrong_role("viewer"), foreign_id("admin")),
        prepare=a_user,
        request=grant_body,
    ),
    ("GET", "/v1/access-grants"): Recipe(
        "admin",
        200,
        ("access_grant.listed",),
        (wrong_role("member"), wrong_role("viewer")),
    ),
    ("DELETE", "/v1/access-grants/{grant_id}"): Recipe(
        "admin",
        204,
        ("access.grant_revoked",),
        (wrong_role("member"), foreign_id("admin"), unknown_id("admin")),
        prepare=a_grant,
    ),
}

ROUTE_IDS = [f"{method} {path}" for method, path in RECIPES]


def openapi_routes(settings: Settings, services: Services) -> set[tuple[str, str]]:
    """Every (METHOD, path template) the real app publishes."""
    schema = create_app(settings, services).openapi()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


@dataclass(frozen=True)
class AuditRow:
    tenant_id: uuid.UUID
    action: str
    outcome: str
    actor_type: str
    resource_id: str | None
    request_id: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


async def high_water(owner: AsyncEngine) -> int:
    async with owner.connect() as conn:
        value = await conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_logs"))
    assert isinstance(value, int)
    return value


async def rows_since(owner: AsyncEngine, after: int) -> list[AuditRow]:
    """Audit rows written after `after`, in every tenant, background-worker rows aside.

    A Celery worker (when one runs in this session) processes uploads on its own schedule and
    audits them as actor_type 'system'; no HTTP request ever writes that actor type.
    """
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tenant_id, action, outcome, actor_type, resource_id, request_id, metadata "
                "FROM audit_logs WHERE id > :after AND actor_type <> 'system' ORDER BY id"
            ),
            {"after": after},
        )
        return [
            AuditRow(
                tenant_id=row.tenant_id,
                action=row.action,
                outcome=row.outcome,
                actor_type=row.actor_type,
                resource_id=row.resource_id,
                request_id=row.request_id,
                metadata=dict(row.metadata),
            )
            for row in rows
        ]


async def audited_call(
    env: Env,
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    request: RequestArgs,
) -> tuple[httpx.Response, list[AuditRow], str]:
    """Make one call; return the response, every audit row written meanwhile, and the call's request id."""
    request_id = f"audit-coverage-{uuid.uuid4().hex}"
    url = path.format(**params)
    before = await high_water(env.owner)
    response = await env.client.request(method, url, headers={**headers, "X-Request-ID": request_id}, **request(params))
    return response, await rows_since(env.owner, before), request_id


def assert_exactly(
    rows: list[AuditRow], request_id: str, tenant_id: uuid.UUID, actions: list[str], outcome: str, what: str
) -> None:
    """The call wrote `actions` (in order) in `tenant_id`, all with its request id, and nothing else anywhere."""
    summary = [(str(r.tenant_id), r.action, r.outcome, r.request_id) for r in rows]
    assert rows, f"{what}: no audit event was written"
    assert all(r.request_id == request_id for r in rows), f"{what}: unrelated audit rows appeared: {summary}"
    assert all(r.tenant_id == tenant_id for r in rows), f"{what}: audited in the wrong tenant: {summary}"
    assert [r.action for r in rows] == actions, f"{what}: {summary}"
    assert all(r.outcome == outcome for r in rows), f"{what}: {summary}"


def check_path_params(path: str, params: dict[str, str]) -> None:
    expected = {part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")}
    assert expected <= set(params) <= expected | BODY_PARAMS, (path, params)


@pytest.fixture
def env(client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine) -> Env:
    return Env(client, tokens, owner_engine)


def test_every_route_has_a_recipe(settings: Settings, services: Services) -> None:
    routes = openapi_routes(settings, services)
    missing = sorted(routes - set(RECIPES) - set(EXEMPT))
    assert not missing, f"routes with no audit recipe (add one to RECIPES, or justify an EXEMPT entry): {missing}"
    stale = sorted(set(RECIPES) - routes)
    assert not stale, f"recipes for routes the app no longer has: {stale}"
    assert not set(RECIPES) & set(EXEMPT)
    # Only probes may be exempt; anything under /v1 carries tenant data.
    assert all(not path.startswith("/v1") for _, path in EXEMPT)


@pytest.mark.parametrize("route", list(RECIPES), ids=ROUTE_IDS)
async def test_success_is_audited(env: Env, route: tuple[str, str]) -> None:
    method, path = route
    recipe = RECIPES[route]
    tenant_id = await env.new_tenant()
    params = await recipe.prepare(env, tenant_id)
    check_path_params(path, params)
    expected = list(recipe.actions)
    if recipe.role != "platform_admin" and not await env.is_provisioned(tenant_id, f"{recipe.role}-user"):
        expected.insert(0, "user.provisioned")  # first sight of this user in the tenant, same transaction

    response, rows, request_id = await audited_call(
        env, method, path, params, env.headers(recipe.role, tenant_id), recipe.request
    )

    assert response.status_code == recipe.status, response.text
    audited_in = tenant_id
    if recipe.audited_in != "tenant":
        audited_in = SYSTEM_TENANT_ID if recipe.audited_in == "system" else uuid.UUID(response.json()["id"])
    assert_exactly(rows, request_id, audited_in, expected, "success", f"{method} {path}")
    actor = {"platform_admin": "platform"}.get(recipe.role, "user")
    assert {r.actor_type for r in rows} == {actor}


@pytest.mark.parametrize("route", list(RECIPES), ids=ROUTE_IDS)
async def test_unauthenticated_calls_are_audited(env: Env, settings: Settings, route: tuple[str, str]) -> None:
    method, path = route
    recipe = RECIPES[route]
    tenant_id = await env.new_tenant()
    params = await recipe.prepare(env, tenant_id)
    forged = jwt.encode(
        {"sub": "intruder", "tenant_id": str(tenant_id), "role": "admin", "exp": 4_102_444_800},
        "not-the-signing-secret-" + "x" * 32,
        algorithm="HS256",
    )
    attempts: list[tuple[str, dict[str, str], str]] = [
        ("no token", {}, "missing_token"),
        ("forged token", {"Authorization": f"Bearer {forged}"}, "invalid_token"),
    ]
    for label, headers, reason in attempts:
        response, rows, request_id = await audited_call(env, method, path, params, headers, recipe.request)
        what = f"{method} {path} with {label}"
        assert response.status_code == 401, (what, response.text)
        assert response.json()["error"]["code"] == reason, what
        assert_exactly(rows, request_id, SYSTEM_TENANT_ID, ["auth.denied"], "denied", what)
        assert rows[0].actor_type == "anonymous", what
        assert rows[0].metadata == {"reason": reason, "route": f"{method} {path}"}, what


@pytest.mark.parametrize("route", list(RECIPES), ids=ROUTE_IDS)
async def test_refusals_are_audited(env: Env, route: tuple[str, str]) -> None:
    method, path = route
    recipe = RECIPES[route]
    assert recipe.denials, f"{method} {path}: a recipe must name at least one refusal besides a missing token"
    tenant_id = await env.new_tenant()
    own = await recipe.prepare(env, tenant_id)
    for denial in recipe.denials:
        caller_tenant = tenant_id
        params = own
        if denial.suspended:
            caller_tenant = await env.new_tenant()
            params = await recipe.prepare(env, caller_tenant)
            await env.suspend(caller_tenant)
        if denial.ids == "foreign":
            params = await recipe.prepare(env, await env.new_tenant())
        elif denial.ids == "unknown":
            params = {name: str(uuid.uuid4()) for name in own}
        assert denial.ids == "own" or params, f"{method} {path}: {denial.ids} ids need a path parameter"

        response, rows, request_id = await audited_call(
            env, method, path, params, env.headers(denial.role, caller_tenant), recipe.request
        )

        what = f"{method} {path} refused for {denial}"
        assert response.status_code == denial.status, (what, response.text)
        assert response.json()["error"]["code"] == denial.code, what
        audited_in = SYSTEM_TENANT_ID if denial.role == "platform_admin" else caller_tenant
        assert_exactly(rows, request_id, audited_in, ["access.denied"], "denied", what)
        row = rows[0]
        assert row.metadata["reason"] == denial.reason, what
        assert row.metadata["route"] == f"{method} {path}", what
        if denial.ids != "own":
            assert row.resource_id in params.values(), what


def test_recipes_refuse_in_the_ways_that_matter() -> None:
    """Routes every tenant role may call still prove a cross-tenant id (when they take one) is refused and audited."""
    for (method, path), recipe in RECIPES.items():
        if any(f"{{{name}}}" in path for name in ("document_id", "user_id", "grant_id")):
            assert any(d.ids == "foreign" for d in recipe.denials), f"{method} {path}"
        if "{tenant_id}" in path:
            assert any(d.ids == "unknown" for d in recipe.denials), f"{method} {path}"


REJECTED_FILENAME = "Rejected-Jane-Doe-1957.txt"


def rejected(content: bytes | None, metadata: str | None = None) -> RequestArgs:
    """An upload of `content` (no file part when None) named REJECTED_FILENAME, with `metadata` if given."""
    files = {} if content is None else {"files": {"file": (REJECTED_FILENAME, content, "text/plain")}}
    data = {"data": {"metadata": metadata}} if metadata is not None else {}
    return lambda params: files | data


REJECTIONS: dict[str, tuple[int, RequestArgs]] = {
    "too_large": (413, rejected(b"Jane Doe " * (SMALL_LIMIT // 8))),
    "unsupported_content": (415, rejected(b"\x89PNG\r\n\x1a\n\x00\x00Jane Doe")),
    "corrupt_file": (422, rejected(b"%PDF-1.7\nJane Doe, not really a PDF")),
    "empty_file": (422, rejected(b"")),
    "invalid_metadata": (422, rejected(b"Jane Doe, follow-up note.", metadata='["Jane Doe"]')),
    "validation_error": (422, rejected(None, metadata='{"patient": "Jane Doe"}')),
}


@pytest.mark.parametrize("code", list(REJECTIONS))
async def test_every_rejected_upload_is_audited_once(
    small_client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, code: str
) -> None:
    """Each refusal for size, type, content, metadata or form leaves exactly one `document.rejected` by the
    caller, with the error's code as the reason and nothing of the file (the whole row's text is searched)."""
    env = Env(small_client, tokens, owner_engine)
    tenant_id = await env.new_tenant()
    status, request = REJECTIONS[code]
    headers = env.headers("member", tenant_id)
    await env.client.get("/v1/documents", headers=headers)  # provision the user first: only the refusal is left
    response, rows, request_id = await audited_call(env, "POST", "/v1/documents", {}, headers, request)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert_exactly(rows, request_id, tenant_id, ["document.rejected"], "denied", code)
    assert rows[0].actor_type == "user"
    assert rows[0].metadata == {"reason": code, "route": "POST /v1/documents"}
    async with owner_engine.connect() as conn:
        whole_row = await conn.scalar(
            text("SELECT to_jsonb(a)::text FROM audit_logs a WHERE request_id = :r"), {"r": request_id}
        )
    assert "Jane" not in str(whole_row)
    assert "Rejected" not in str(whole_row)


async def test_an_upload_declared_too_large_is_audited_under_its_caller_an_anonymous_one_stays_auth_denied(
    small_client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    env = Env(small_client, tokens, owner_engine)
    tenant_id = await env.new_tenant()
    body, headers = multipart(("file", REJECTED_FILENAME, b"x" * (SMALL_LIMIT + 400 * 1024)))
    member = env.headers("member", tenant_id)
    await env.client.get("/v1/documents", headers=member)
    for caller, status, tenant, action in (
        (member, 413, tenant_id, "document.rejected"),
        ({}, 401, SYSTEM_TENANT_ID, "auth.denied"),
    ):
        response, rows, request_id = await audited_call(
            env, "POST", "/v1/documents", {}, caller | headers, lambda params: {"content": body}
        )
        assert response.status_code == status, response.text
        assert_exactly(rows, request_id, tenant, [action], "denied", action)
