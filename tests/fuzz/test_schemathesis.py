"""The app against its own OpenAPI schema: every operation, generated inputs, every role, the real stack.

Each response must not be a 5xx, must have a documented status, content type and headers, and its body
must match the documented schema (the error shape included). Requests carry a valid token of one role
(a tenant's admin, member or viewer, a platform admin, an admin of a suspended tenant) or none at all,
and only a role the contract admits may get a 2xx.
The stateful test follows the schema's links: an upload's id is read, downloaded, deleted and restored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import initialize
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import CustomFailure, Failure, FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from core.runtime import Services
from core.settings import Settings
from tests.fuzz.conftest import AUTHORIZATION_LABEL, FAILURE_LABELS, FUZZ_SETTINGS, REPORT, STATEFUL_SETTINGS
from tests.harness import Tokens, process_database_kept
from tests.waiting import wait_until

Case = schemathesis.Case[Any]

CHECKS = (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
)
assert {check.__name__ for check in CHECKS} == set(FAILURE_LABELS)

ROLES = ("admin", "member", "viewer", "platform_admin", "suspended_admin", "anonymous")
READERS, WRITERS, ADMINS, PLATFORM = ("admin", "member", "viewer"), ("admin", "member"), ("admin",), ("platform_admin",)
ADMITTED: dict[str, tuple[str, ...]] = {
    "GET /healthz": ROLES,
    "GET /readyz": ROLES,
    "GET /metrics": ROLES,
    "POST /v1/tenants": PLATFORM,
    "GET /v1/tenants": PLATFORM,
    "GET /v1/tenants/{tenant_id}": PLATFORM,
    "PATCH /v1/tenants/{tenant_id}": PLATFORM,
    "DELETE /v1/tenants/{tenant_id}": PLATFORM,
    "DELETE /v1/tenants/{tenant_id}/offboarding": PLATFORM,
    "POST /v1/documents": WRITERS,
    "GET /v1/documents": READERS,
    "GET /v1/documents/{document_id}": READERS,
    "GET /v1/documents/{document_id}/content": WRITERS,
    "DELETE /v1/documents/{document_id}": WRITERS,
    "POST /v1/documents/{document_id}/restore": WRITERS,
    "POST /v1/search": READERS,
    "POST /v1/embeddings/query": PLATFORM,
    "GET /v1/audit-logs": ADMINS,
    "GET /v1/audit-logs/export": ADMINS,
    "GET /v1/audit-logs/verify": ADMINS,
    "GET /v1/audit-logs/report": ADMINS,
    "GET /v1/users": ADMINS,
    "PATCH /v1/users/{user_id}": ADMINS,
    "POST /v1/tokens/revoke": ("admin", "platform_admin"),
    "POST /v1/access-grants": ADMINS,
    "GET /v1/access-grants": ADMINS,
    "DELETE /v1/access-grants/{grant_id}": ADMINS,
}
"""Who may call each operation (the contract's table): any other role must never get a 2xx. Half of the
examples of an operation go to an admitted role, so that the inputs reach the operation's own logic."""


Callers = dict[str, dict[str, str]]
"""Headers for each role: tokens of one real active tenant, of one suspended tenant, or no token."""


@pytest.fixture(scope="module")
async def callers(client: httpx.AsyncClient, tokens: Tokens) -> Callers:
    async def new_tenant() -> uuid.UUID:
        response = await client.post(
            "/v1/tenants", json={"name": f"Fuzz {uuid.uuid4().hex[:8]}"}, headers=tokens.platform()
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    active, suspended = await new_tenant(), await new_tenant()
    response = await client.patch(f"/v1/tenants/{suspended}", json={"status": "suspended"}, headers=tokens.platform())
    assert response.status_code == 200, response.text
    return {
        "admin": tokens.headers("admin", active, sub="fuzz-admin"),
        "member": tokens.headers("member", active, sub="fuzz-member"),
        "viewer": tokens.headers("viewer", active, sub="fuzz-viewer"),
        "platform_admin": tokens.headers("platform_admin", sub="fuzz-platform"),
        "suspended_admin": tokens.headers("admin", suspended, sub="fuzz-suspended"),
        "anonymous": {},
    }


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings, services: Services) -> Iterator[FastAPI]:
    """A fresh app on the session's PostgreSQL and Redis, run by schemathesis on its own event loop, with
    the rate limits on as in production (at their production values: a long run meets them, and its 429s
    are checked like every other answer).

    Its lifespan installs its database as the process database: the session's is put back afterwards.
    """
    with process_database_kept():
        try:
            yield create_app(settings.model_copy(update={"rate_limits_enabled": True}), services)
        finally:
            asgi.shutdown_lifespans()


SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(env="development")).openapi())
"""The app's schema, read when the module is collected so that each operation is a test of its own.

(`schemathesis.pytest.from_fixture` would load it from the running app instead, but with pytest 9.2 it fails
on a removed pytest attribute; `test_the_served_schema_is_the_one_fuzzed` proves the two are the same.)"""


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> schemathesis.BaseSchema:
    """The schema as the running app serves it, bound to the app."""
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture
def ready_app(fuzz_app: FastAPI) -> FastAPI:
    """The app, its lifespan started and its embedding model loaded, so that any 503 is a finding.

    Schemathesis ends an ASGI app's lifespan after each test (its pytest plugin does), so this is per test;
    the model itself is cached by the process and loads once."""
    # FastAPI types its ASGI arguments as MutableMapping, schemathesis as dict: the same call at run time.
    with asgi.get_client(fuzz_app) as http:  # type: ignore[arg-type]
        wait_until(lambda: http.get("/readyz").status_code == 200, "the fuzzed app is ready")
    return fuzz_app


def test_the_served_schema_is_the_one_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    assert api_schema.raw_schema == SCHEMA.raw_schema


def send(case: Case, app: FastAPI, headers: dict[str, str]) -> schemathesis.Response:
    response = case.call(app=app, headers=headers)
    REPORT.response(case.operation.label, response.status_code)
    return response


def check(case: Case, response: schemathesis.Response, role: str, headers: dict[str, str]) -> None:
    """Run every check on `response`, count the failures by check, and raise them together."""
    failures: list[Failure] = []
    messages: list[str] = []
    for each in CHECKS:
        try:
            case.validate_response(response, checks=[each], headers=headers)
        except FailureGroup as group:
            REPORT.failures[FAILURE_LABELS[each.__name__]] += 1
            failures.extend(group.exceptions)
            messages.append(group.message)
    label = case.operation.label
    if response.status_code < 300 and role not in ADMITTED[label]:
        REPORT.failures[AUTHORIZATION_LABEL] += 1
        message = f"{label} answered {response.status_code} to role {role!r}, which the contract does not admit"
        failures.append(
            CustomFailure(operation=label, title="Role not admitted", message=message, exception=PermissionError())
        )
        messages.append(message)
    if failures:
        raise FailureGroup(failures, "\n".join(messages))


def test_every_operation_says_who_may_call_it() -> None:
    paths = SCHEMA.raw_schema["paths"]
    assert set(ADMITTED) == {f"{method.upper()} {path}" for path, methods in paths.items() for method in methods}


@SCHEMA.parametrize()
@SCHEMA.given(data=st.data())
@settings(
    FUZZ_SETTINGS,
    # The explicit phase (the schema's examples, schemathesis' coverage cases) is
    # `test_the_schemas_examples_keep_the_contract`: schemathesis refuses schema examples with a strategy of
    # our own (the role).
    phases=[phase for phase in FUZZ_SETTINGS.phases if phase != Phase.explicit],
    # `ready_app` is per test on purpose: it is the same running app for every example of the test.
    suppress_health_check=[*FUZZ_SETTINGS.suppress_health_check, HealthCheck.function_scoped_fixture],
)
def test_every_operation_keeps_its_contract(
    case: Case, data: st.DataObject, callers: Callers, ready_app: FastAPI
) -> None:
    role = data.draw(st.sampled_from(ADMITTED[case.operation.label]) | st.sampled_from(ROLES), label="role")
    headers = callers[role]
    check(case, send(case, ready_app, headers), role, headers)


@SCHEMA.parametrize()
@settings(
    FUZZ_SETTINGS,
    phases=[Phase.explicit],
    suppress_health_check=[*FUZZ_SETTINGS.suppress_health_check, HealthCheck.function_scoped_fixture],
)
def test_the_schemas_examples_keep_the_contract(case: Case, callers: Callers, ready_app: FastAPI) -> None:
    """The explicit phase: each example the schema publishes for an operation's input, and schemathesis' coverage
    cases (edge values, missing parameters, other methods), each sent by every role (only admitted ones may get a
    2xx)."""
    for role in ROLES:
        check(case, send(case, ready_app, callers[role]), role, callers[role])


def test_linked_sequences_keep_the_contract(
    api_schema: schemathesis.BaseSchema, callers: Callers, ready_app: FastAPI
) -> None:
    """Sequences along the schema's links (upload -> read, download, delete -> restore; tenant create ->
    read, update; list or search -> read), one role per scenario."""

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        role = "anonymous"  # replaced per scenario by `as_role`

        @initialize(role=st.sampled_from(("admin", "member", "viewer", "platform_admin")))
        def as_role(self, role: str) -> None:
            self.role = role

        def call(self, case: Case, **kwargs: Any) -> schemathesis.Response:
            return send(case, ready_app, callers[self.role])

        def validate_response(self, response: schemathesis.Response, case: Case, **kwargs: Any) -> None:
            check(case, response, self.role, callers[self.role])

    failures = sum(REPORT.failures.values())
    try:
        Workflow.run(settings=STATEFUL_SETTINGS)
    except Flaky:
        # Hypothesis found a scenario taking another path than before: the server's state had moved on
        # (schemathesis' own runner treats it so too). Only a failed check fails the test.
        if sum(REPORT.failures.values()) > failures:
            raise
