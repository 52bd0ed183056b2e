"""What `/openapi.json` promises about errors and authentication (api/openapi.py); the fuzzer holds the app to it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from api.app import create_app
from api.openapi import BEARER_SCHEME, METRICS_SCHEME
from core.settings import Settings
from tests.harness import Tokens

ERROR_REF = "#/components/schemas/ErrorResponse"
UNAUTHENTICATED = {"GET /healthz", "GET /readyz"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(Settings(env="development")).openapi()


def operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }


def test_the_schema_is_valid_openapi_3_1(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.1")
    validate(schema)


def test_fastapis_validation_error_shape_is_not_published(schema: dict[str, Any]) -> None:
    """The API never sends `{"detail": [...]}`: api/errors.py rewrites every validation error."""
    assert {"HTTPValidationError", "ValidationError"}.isdisjoint(schema["components"]["schemas"])


def test_every_error_status_is_documented_in_the_error_shape(schema: dict[str, Any]) -> None:
    for label, operation in operations(schema).items():
        for status, response in operation["responses"].items():
            if int(status) < 400 or label == "GET /readyz":  # readiness reports its checks, not an error
                continue
            media = response["content"]["application/json"]["schema"]
            assert media == {"$ref": ERROR_REF}, f"{label} {status}"


def test_every_operation_with_input_documents_422(schema: dict[str, Any]) -> None:
    for label, operation in operations(schema).items():
        if operation.get("parameters") or operation.get("requestBody"):
            assert "422" in operation["responses"], label


def test_protected_operations_declare_the_bearer_scheme(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes[BEARER_SCHEME] == {**schemes[BEARER_SCHEME], "type": "http", "scheme": "bearer"}
    assert schemes[METRICS_SCHEME]["scheme"] == "bearer"
    for label, operation in operations(schema).items():
        if label in UNAUTHENTICATED:
            assert "security" not in operation, label
        elif label == "GET /metrics":
            assert operation["security"] == [{METRICS_SCHEME: []}, {}]  # the token is optional in development
        else:
            assert operation["security"] == [{BEARER_SCHEME: []}], label
            assert {"401", "403"} <= set(operation["responses"]), label


async def test_real_errors_match_the_published_shape(
    client: httpx.AsyncClient, tokens: Tokens, schema: dict[str, Any]
) -> None:
    """A 401, a 403, a 404 and a 422 from the running app, validated against the published component."""
    error_schema = {**schema["components"]["schemas"]["ErrorResponse"], "$defs": schema["components"]["schemas"]}
    error_schema = _local_refs(error_schema)
    missing = "/v1/tenants/00000000-0000-4000-8000-000000000000"
    answers = [
        await client.get("/v1/documents"),
        await client.post("/v1/tenants", json={"name": "Clinic"}, headers=tokens.headers("member", uuid.uuid4())),
        await client.get(missing, headers=tokens.platform()),
        await client.get("/v1/tenants/not-a-uuid", headers=tokens.platform()),
    ]
    assert [answer.status_code for answer in answers] == [401, 403, 404, 422]
    for answer in answers:
        jsonschema.validate(answer.json(), error_schema)


def _local_refs(value: Any) -> Any:
    """`#/components/schemas/X` as `#/$defs/X`, so the component validates on its own."""
    if isinstance(value, dict):
        return {key: _local_refs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_local_refs(item) for item in value]
    if isinstance(value, str) and value.startswith("#/components/schemas/"):
        return "#/$defs/" + value.removeprefix("#/components/schemas/")
    return value
