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
ENUM_FIELDS = {"status", "mode", "role", "outcome", "actor_type", "format"}
"""Properties and parameters that take one of a fixed set of values: each must be published as an enum."""
KNOWN_ENUMS = {
    "TenantOut.status",
    "TenantUpdate.status",
    "DocumentOut.status",
    "SearchRequest.mode",
    "AuditEventOut.outcome",
    "AuditEventOut.actor_type",
    "Readiness.status",
    "GET /v1/tenants ?status",
    "GET /v1/documents ?status",
    "GET /v1/audit-logs/export ?format",
}


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


def test_every_operation_has_a_summary_and_a_description_for_integrators(schema: dict[str, Any]) -> None:
    summaries = []
    for label, operation in operations(schema).items():
        summary, description = operation.get("summary", ""), operation.get("description", "")
        assert 2 <= len(summary.split()) <= 8, f"{label}: summary {summary!r}"
        assert len(description) >= 60, f"{label}: description {description!r}"
        summaries.append(summary)
        if operation.get("security") == [{BEARER_SCHEME: []}]:
            assert "Role" in description, f"{label}: the description names no role"
    assert len(summaries) == len(set(summaries))


def _resolve(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in value:
        value = schema["components"]["schemas"][value["$ref"].removeprefix("#/components/schemas/")]
    return value


def _enum_values(value: dict[str, Any], schema: dict[str, Any]) -> list[Any] | None:
    """The values of an enum, or of the non-null branch of an optional one (`anyOf` [enum, null])."""
    value = _resolve(value, schema)
    if "enum" in value or "const" in value:
        return list(value["enum"]) if "enum" in value else [value["const"]]
    branches = [branch for branch in value.get("anyOf", []) if branch.get("type") != "null"]
    return _enum_values(branches[0], schema) if len(branches) == 1 else None


def test_statuses_roles_and_modes_are_enums(schema: dict[str, Any]) -> None:
    found: dict[str, list[Any] | None] = {}
    for name, component in schema["components"]["schemas"].items():
        for field, value in component.get("properties", {}).items():
            if field in ENUM_FIELDS:
                found[f"{name}.{field}"] = _enum_values(value, schema)
    for label, operation in operations(schema).items():
        for parameter in operation.get("parameters", []):
            if parameter["name"] in ENUM_FIELDS:
                found[f"{label} ?{parameter['name']}"] = _enum_values(parameter["schema"], schema)
    assert set(found) >= KNOWN_ENUMS, sorted(KNOWN_ENUMS - set(found))
    assert not [field for field, values in found.items() if not values], found
    assert found["TenantOut.status"] == ["active", "suspended"]
    assert found["DocumentOut.status"] == ["queued", "processing", "ready", "failed"]
    assert found["SearchRequest.mode"] == ["vector", "hybrid"]


def _closed(value: Any) -> Any:
    """The schema with every object closed to undeclared properties, so an example with a stale field fails."""
    if isinstance(value, list):
        return [_closed(item) for item in value]
    if not isinstance(value, dict):
        return value
    closed = {key: _closed(item) for key, item in value.items()}
    if "properties" in closed and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    return closed


def _examples(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) of every example in the document: in components (schema-level and property-level)
    and in the media types of request bodies and responses."""
    found = []
    for name, component in schema["components"]["schemas"].items():
        found += [(name, component, example) for example in component.get("examples", [])]
        for field, value in component.get("properties", {}).items():
            found += [(f"{name}.{field}", value, example) for example in value.get("examples", [])]
    for label, operation in operations(schema).items():
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, response) for status, response in operation["responses"].items()]
        for where, body in bodies:
            for media_type, media in body.get("content", {}).items():
                examples = [media["example"]] if "example" in media else []
                examples += [named["value"] for named in media.get("examples", {}).values()]
                examples += [
                    example
                    for value in media.get("schema", {}).get("properties", {}).values()
                    for example in value.get("examples", [])
                ]
                if media_type == "application/json":
                    found += [(f"{label} {where}", media["schema"], example) for example in examples]
                else:
                    assert all(isinstance(example, str) for example in examples), f"{label} {where} {media_type}"
    return found


def test_examples_match_their_schemas(schema: dict[str, Any]) -> None:
    definitions = _closed(_local_refs(schema["components"]["schemas"]))
    examples = _examples(schema)
    for where, value, example in examples:
        validator = jsonschema.Draft202012Validator(
            {**_closed(_local_refs(value)), "$defs": definitions}, format_checker=jsonschema.FormatChecker()
        )
        errors = [error.message for error in validator.iter_errors(example)]
        assert not errors, f"{where}: {errors}"
    described = {where.split(" ")[0] for where, _, _ in examples}
    assert {"TenantCreate", "TenantPage", "SearchRequest", "SearchResponse", "AuditPage", "ErrorResponse"} <= described


def test_every_json_body_has_an_example(schema: dict[str, Any]) -> None:
    """Each JSON request body and response carries an example, on its media type or its component."""
    for label, operation in operations(schema).items():
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(status, response) for status, response in operation["responses"].items()]
        for where, body in bodies:
            media = body.get("content", {}).get("application/json")
            if media is None:
                continue
            examples = "example" in media or "examples" in _resolve(media["schema"], schema)
            assert examples, f"{label} {where}"
