"""Every client-supplied string, date-time and number, at every depth, through the real app: what PostgreSQL
cannot store is a 422 in the error shape that names the field, never a 500, never quoting the value, and
leaving nothing stored.

The operations and their inputs are read from the app's OpenAPI schema, so a new route (or a new parameter)
is probed without being listed here; an input of a kind this file has no probes for fails the test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.settings import Settings
from core.validation import MAX_DATETIME, MAX_JSON_DEPTH, MIN_DATETIME
from tests.conftest import owner_rows, owner_scalar
from tests.core.test_validation import DATETIMES
from tests.harness import NOTE, Tokens
from tests.security.bad_input import assert_nothing_stored, multipart, request_id, stored
from tests.security.error_shape import assert_error

SECRET = "Zq7secret"
"""In every refused string, so that a message quoting the value would be caught."""

DATETIME_EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31T23:59:59.999999"]
HUGE_INTEGERS = [str(2**63), str(-(2**63) - 1), "1" + "0" * 400]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400"]
Role = Literal["platform", "admin", "none"]


@dataclass(frozen=True)
class Probe:
    """One request carrying one bad value, and what its refusal must say."""

    operation: str
    """`METHOD /path/{template}`, as in the schema."""
    label: str
    method: str
    path: str
    role: Role
    location: str
    """What the message must name (`query.action`, `filters`, `metadata`...)."""
    echo: str
    """What the message must not contain: the bad value, or its marker."""
    query: str = ""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    code: str = "validation_error"


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s, and take the one non-null member of an optional value."""
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in schema and len(members := [m for m in schema["anyOf"] if m.get("type") != "null"]) == 1:
            schema = members[0]
        else:
            return schema


def _kinds(schema: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a value's schema (a union has several), each resolved."""
    schema = _resolve(schema, components)
    if "anyOf" in schema:
        return [_resolve(member, components) for member in schema["anyOf"] if member.get("type") != "null"]
    return [schema]


def _valid(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A small valid value for a schema: the baseline a probe changes one part of."""
    schema = _kinds(schema, components)[0]
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {name: _valid(schema["properties"][name], components) for name in schema.get("required", [])}
    if kind == "string":
        return str(uuid.uuid4()) if schema.get("format") == "uuid" else "probe"
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    raise AssertionError(f"no valid value for {schema}")


def _json_values(schema: dict[str, Any], components: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(probe name, raw JSON text, what must not be echoed) of bad values for a JSON schema, at every depth."""
    for kind in _kinds(schema, components):
        match kind.get("type"):
            case "string":
                yield "nul", json.dumps(f"{SECRET}\x00"), SECRET
                yield "surrogate", json.dumps(SECRET + chr(0xD800)), SECRET
            case "integer":
                for number in HUGE_INTEGERS if "maximum" in kind else HUGE_INTEGERS[2:]:
                    # Without a declared maximum, an integer is a JSON value: beyond a double's range is refused.
                    yield f"integer {number[:6]}", number, number[:12]
            case "number":
                for number in [*NON_FINITE, HUGE_INTEGERS[2]]:
                    yield f"number {number[:6]}", number, number[:12]
            case "boolean":
                pass  # nothing PostgreSQL could refuse
            case "array":
                for name, text, echo in _json_values(kind["items"], components):
                    yield f"item {name}", f"[{text}]", echo
            case "object":
                valid_value = json.dumps(_valid(kind["additionalProperties"], components))
                for name, key in (("nul", f"{SECRET}\x00"), ("surrogate", SECRET + chr(0xD800))):
                    yield f"key {name}", f"{{{json.dumps(key)}: {valid_value}}}", SECRET
                for name, text, echo in _json_values(kind["additionalProperties"], components):
                    yield f"value {name}", f'{{"k": {text}}}', echo
            case other:
                raise AssertionError(f"no probes for JSON values of type {other!r}: add them")


def _parameter_values(schema: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(probe name, percent-encoded value, what must not be echoed) of bad values for a query or path parameter."""
    match schema.get("type"), schema.get("format"):
        case "string", "date-time":
            for moment in DATETIME_EDGES:
                yield f"date-time {moment}", quote(moment, safe=""), moment
        case "string", _:
            yield "nul", quote(SECRET) + "%00", SECRET
        case "integer", _:
            for number in HUGE_INTEGERS:
                yield f"integer {number[:6]}", number, number[:12]
        case "boolean", _:
            return  # nothing PostgreSQL could refuse
        case other:
            raise AssertionError(f"no probes for parameters of type {other!r}: add them")


PLATFORM_PATHS = ("/v1/tenants", "/v1/embeddings")


def _role(path: str) -> Role:
    return "platform" if path.startswith(PLATFORM_PATHS) else "admin"


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    schema: dict[str, Any]
    components: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def role(self) -> Role:
        return _role(self.template) if self.schema.get("security") else "none"

    def path(self, **values: str) -> str:
        """The path with `values` for some parameters and a fresh (valid) uuid for the others."""
        path = self.template
        for parameter in self.schema.get("parameters", []):
            if parameter["in"] == "path":
                name = parameter["name"]
                path = path.replace(f"{{{name}}}", values.get(name) or str(_valid(parameter["schema"], {})))
        return path

    def probe(self, label: str, **fields: Any) -> Probe:
        fields.setdefault("path", self.path())
        return Probe(operation=self.name, label=f"{self.name} {label}", method=self.method, role=self.role, **fields)


def _parameter_probes(operation: Operation) -> Iterator[Probe]:
    for parameter in operation.schema.get("parameters", []):
        where, key = parameter["in"], parameter["name"]
        if where not in ("query", "path"):
            raise AssertionError(f"{operation.name}: no probes for {where} parameters: add them")
        for label, value, echo in _parameter_values(_resolve(parameter["schema"], operation.components)):
            if where == "path":
                yield operation.probe(
                    f"path.{key} {label}", path=operation.path(**{key: value}), location=f"path.{key}", echo=echo
                )
            else:
                yield operation.probe(
                    f"query.{key} {label}", query=f"{key}={value}", location=f"query.{key}", echo=echo
                )


def _json_body_probes(operation: Operation, schema: dict[str, Any]) -> Iterator[Probe]:
    body_schema = _resolve(schema, operation.components)
    baseline = _valid(body_schema, operation.components)
    for prop, prop_schema in body_schema["properties"].items():
        for label, text, echo in _json_values(prop_schema, operation.components):
            body = json.dumps({**baseline, prop: "__probe__"}).replace('"__probe__"', text)
            yield operation.probe(
                f"body.{prop} {label}",
                location=prop,
                echo=echo,
                body=body.encode(),
                headers={"Content-Type": "application/json"},
            )


def _form_probes(operation: Operation, schema: dict[str, Any]) -> Iterator[Probe]:
    for prop, prop_schema in _resolve(schema, operation.components)["properties"].items():
        if prop_schema.get("format") == "binary":
            continue  # the file: its bytes are the document, and its name is sanitised (tested below)
        if prop_schema.get("type") != "string":
            raise AssertionError(f"{operation.name}: no probes for form fields of type {prop_schema.get('type')!r}")
        body, headers = multipart(("file", "note.txt", NOTE), (prop, None, f'{{"{SECRET}": "a\x00b"}}'.encode()))
        code = FORM_FIELD_CODES.get(prop, "validation_error")
        yield operation.probe(f"form.{prop} nul", location=prop, echo=SECRET, body=body, headers=headers, code=code)


def probes(openapi: dict[str, Any]) -> Iterator[Probe]:
    """Bad values for every input of every operation of the schema."""
    components = openapi.get("components", {}).get("schemas", {})
    for template, item in openapi["paths"].items():
        for method, schema in item.items():
            operation = Operation(method.upper(), template, schema, components)
            yield from _parameter_probes(operation)
            content = schema.get("requestBody", {}).get("content", {})
            if unknown := set(content) - {"application/json", "multipart/form-data"}:
                raise AssertionError(f"{operation.name}: no probes for {sorted(unknown)} bodies: add them")
            if "application/json" in content:
                yield from _json_body_probes(operation, content["application/json"]["schema"])
            if "multipart/form-data" in content:
                yield from _form_probes(operation, content["multipart/form-data"]["schema"])


FORM_FIELD_CODES = {"metadata": "invalid_metadata"}
"""Form fields whose refusal has a code of its own (documented in docs/API.md)."""


def operation_has_input(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody"))


@pytest.fixture(scope="module")
def openapi(settings: Settings) -> dict[str, Any]:
    schema = create_app(settings).openapi()
    assert isinstance(schema, dict)
    return schema


def _headers(tokens: Tokens, role: Role, tenant_id: uuid.UUID) -> dict[str, str]:
    if role == "platform":
        return tokens.platform()
    if role == "admin":
        return tokens.headers("admin", tenant_id)
    return {}


async def _rows_for(owner_engine: AsyncEngine, rid: str) -> int:
    count = await owner_scalar(owner_engine, "SELECT count(*) FROM audit_logs WHERE request_id = :r", r=rid)
    assert isinstance(count, int)
    return count


async def _recorded(owner_engine: AsyncEngine, rid: str) -> list[str]:
    """`action outcome reason` of each audit row the request wrote."""
    rows = await owner_rows(
        owner_engine,
        "SELECT action, outcome, coalesce(metadata->>'reason', '') FROM audit_logs WHERE request_id = :r ORDER BY id",
        r=rid,
    )
    return [" ".join(str(part) for part in row).strip() for row in rows]


def _refusal_record(operation: str, code: str) -> list[str]:
    """What a refusal leaves in the trail: nothing was done, and only a refused upload is recorded (issue 15:
    `document.rejected` with its reason code, never the content)."""
    return [f"document.rejected denied {code}"] if operation == "POST /v1/documents" else []


def _names(message: str, location: str) -> bool:
    return any(part.startswith(f"{location}:") or part.startswith(f"{location}.") for part in message.split("; "))


async def test_every_operation_refuses_what_postgresql_cannot_store(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    openapi: dict[str, Any],
) -> None:
    all_probes = list(probes(openapi))
    probed = {probe.operation for probe in all_probes}
    with_input = {
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if operation_has_input(operation)
    }
    assert with_input <= probed, sorted(with_input - probed)
    # The routes known to take client values are all among them (the schema is not silently empty).
    assert {
        "GET /v1/audit-logs",
        "GET /v1/audit-logs/export",
        "POST /v1/search",
        "POST /v1/documents",
        "GET /v1/documents",
        "POST /v1/tenants",
        "PATCH /v1/tenants/{tenant_id}",
        "DELETE /v1/documents/{document_id}",
    } <= probed

    before = await stored(owner_engine, settings, tenant_id)
    tenants_before = await owner_scalar(owner_engine, "SELECT count(*) FROM tenants")
    failures = []
    for probe in all_probes:
        rid = request_id("probe")
        url = probe.path + (f"?{probe.query}" if probe.query else "")
        headers = _headers(tokens, probe.role, tenant_id) | probe.headers | {"X-Request-ID": rid}
        # A response cut off after its 200 started would raise here (the ASGI transport insists on a complete one).
        response = await client.request(probe.method, url, content=probe.body, headers=headers)
        try:
            error = assert_error(response, 422, probe.code)
            assert _names(error["message"], probe.location), error["message"]
            assert probe.echo not in error["message"], error["message"]
            assert await _recorded(owner_engine, rid) == _refusal_record(probe.operation, probe.code)
        except AssertionError as exc:
            failures.append(f"{probe.label}: {exc}")
    assert not failures, "\n".join(failures)
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM tenants") == tenants_before


async def test_the_export_refuses_a_bad_filter_before_it_starts(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """A refusal, not a 200 whose stream breaks: the response is complete, JSON, and nothing was exported."""
    admin = tokens.headers("admin", tenant_id)
    for query in ["action=%00", "since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00"]:
        for export_format in ("jsonl", "csv"):
            rid = request_id("export")
            async with client.stream(
                "GET", f"/v1/audit-logs/export?format={export_format}&{query}", headers=admin | {"X-Request-ID": rid}
            ) as response:
                assert response.status_code == 422
                await response.aread()
            assert_error(response, 422, "validation_error")
            assert await _rows_for(owner_engine, rid) == 0
    # The control: a good filter exports (and records the export).
    rid = request_id("export-control")
    response = await client.get("/v1/audit-logs/export?since=2000-01-01", headers=admin | {"X-Request-ID": rid})
    assert response.status_code == 200
    assert response.text
    exported = await owner_scalar(
        owner_engine, "SELECT count(*) FROM audit_logs WHERE request_id = :r AND action = 'audit.exported'", r=rid
    )
    assert exported == 1


# --------------------------------------------------------------------------------------------------------------
# Upload metadata and filename


def _nested(leaf: str, depth: int) -> str:
    """A metadata object with `leaf` `depth` levels down, alternating arrays and objects."""
    text = leaf
    for level in range(depth - 1):
        text = f'{{"k{level}": {text}}}' if level % 2 else f"[{text}]"
    return f'{{"ward": "3B", "deep": {text}}}'


METADATA_LEAVES = {
    "nul-value": f'"{SECRET}\\u0000"',
    "nul-key": f'{{"{SECRET}\\u0000": 1}}',
    "surrogate-value": f'"{SECRET}\\ud800"',
    "trailing-surrogate-value": f'"{SECRET}\\udfff"',
    "surrogate-key": f'{{"{SECRET}\\ud800": 1}}',
    "nan": "NaN",
    "infinity": "Infinity",
    "minus-infinity": "-Infinity",
    "float-overflow": "1e400",
    "int-overflow": "1" + "0" * 400,
}


@pytest.mark.parametrize("depth", [1, 2, 5, MAX_JSON_DEPTH - 2])
@pytest.mark.parametrize("leaf", list(METADATA_LEAVES.values()), ids=list(METADATA_LEAVES))
async def test_metadata_refused_at_every_depth(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    leaf: str,
    depth: int,
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    rid = request_id("metadata")
    body, headers = multipart(("file", "note.txt", NOTE), ("metadata", None, _nested(leaf, depth).encode()))
    response = await client.post(
        "/v1/documents", content=body, headers=tokens.headers("member", tenant_id) | headers | {"X-Request-ID": rid}
    )
    error = assert_error(response, 422, "invalid_metadata")
    assert error["message"].startswith("metadata: "), error["message"]
    assert SECRET not in error["message"]
    assert "0000000000" not in error["message"]
    assert await _recorded(owner_engine, rid) == _refusal_record("POST /v1/documents", "invalid_metadata")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (rf'{{"{SECRET}": "\ud800"}}', "must not contain unpaired surrogates"),
        (rf'{{"{SECRET}": "a\x00b"}}', "must not contain NUL characters"),
    ],
    ids=["surrogate", "nul"],
)
async def test_metadata_decoded_by_a_client_chosen_charset_is_checked_too(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    raw: str,
    reason: str,
) -> None:
    """`charset=unicode_escape` makes the multipart parser turn `\\ud800` in the field's bytes into a real lone
    surrogate: not JSON's escape, the field text itself (it once reached `str.encode` and answered 500)."""
    before = await stored(owner_engine, settings, tenant_id)
    body, headers = multipart(("file", "note.txt", NOTE), ("metadata", None, raw.encode()))
    headers["Content-Type"] += "; charset=unicode_escape"
    response = await client.post("/v1/documents", content=body, headers=tokens.headers("member", tenant_id) | headers)
    error = assert_error(response, 422, "invalid_metadata")
    assert error["message"] == f"metadata: {reason}"
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)


async def test_metadata_postgresql_can_store_is_kept_exactly(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The control: a surrogate pair (an emoji, escaped), U+FFFD, integers past bigint but within a double's range,
    and the deepest nesting allowed are all stored and read back as sent. (A float near a double's limit is
    stored too, but jsonb writes numbers without an exponent, so it reads back as the equal integer.)"""
    metadata = {
        "emoji": "😀",
        "replacement": "\ufffd",
        "bigint+1": 2**63,
        "big": 10**300,
        "temperature": 98.6,
        "deep": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)),
    }
    member = tokens.headers("member", tenant_id)
    body, headers = multipart(("file", "note.txt", NOTE), ("metadata", None, json.dumps(metadata).encode()))
    response = await client.post("/v1/documents", content=body, headers=member | headers)
    assert response.status_code == 202, response.text
    assert response.json()["metadata"] == metadata
    got = await owner_scalar(owner_engine, "SELECT metadata FROM documents WHERE id = :id", id=response.json()["id"])
    assert got == metadata


async def test_a_filename_postgresql_cannot_store_is_sanitised(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The filename is not refused but sanitised (docs/API.md, Filenames): NUL and lone surrogates, here put in by
    a client-chosen multipart charset, are dropped before it is stored."""
    body, headers = multipart(("file", r"not\ud800e\x00s.txt", NOTE + b"charset"))
    headers["Content-Type"] += "; charset=unicode_escape"
    response = await client.post("/v1/documents", content=body, headers=tokens.headers("member", tenant_id) | headers)
    assert response.status_code == 202, response.text
    assert response.json()["filename"] == "notes.txt"
    got = await owner_scalar(owner_engine, "SELECT filename FROM documents WHERE id = :id", id=response.json()["id"])
    assert got == "notes.txt"


# --------------------------------------------------------------------------------------------------------------
# Values that are accepted by design


async def test_query_strings_are_utf8_and_invalid_sequences_become_replacement_characters(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, openapi: dict[str, Any]
) -> None:
    """A percent-encoded surrogate (`%ED%A0%80`) is not UTF-8: the query string parser turns it into U+FFFD,
    which PostgreSQL stores. Every string query parameter either accepts it so, or refuses it with 422."""
    admin = tokens.headers("admin", tenant_id)
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = _resolve(parameter["schema"], openapi["components"]["schemas"])
                if parameter["in"] != "query" or schema.get("type") != "string" or "{" in path:
                    continue
                assert method == "get", f"{method} {path}: send it with its body"
                headers = _headers(tokens, _role(path), tenant_id)
                response = await client.get(f"{path}?{parameter['name']}=%ED%A0%80", headers=headers)
                if response.status_code != 200:
                    assert_error(response, 422)
    rid = request_id("replacement")
    response = await client.get("/v1/audit-logs?action=a%ED%A0%80", headers=admin | {"X-Request-ID": rid})
    assert response.status_code == 200, response.text
    recorded = await owner_scalar(
        owner_engine, "SELECT metadata -> 'filters' ->> 'action' FROM audit_logs WHERE request_id = :r", r=rid
    )
    assert isinstance(recorded, str)
    assert recorded.startswith("a\ufffd")


async def test_search_filters_follow_the_metadata_number_rule(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    """A filter can match any stored metadata value, so 2**63 (past bigint, within a double) is a valid filter."""
    response = await client.post(
        "/v1/search",
        content=f'{{"query": "probe", "filters": {{"big": {2**63}, "emoji": "\\ud83d\\ude00"}}}}'.encode(),
        headers=tokens.headers("viewer", tenant_id) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize("role", ["admin", "platform", "none"])
async def test_a_user_agent_the_audit_trail_cannot_store_is_422(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, role: Role
) -> None:
    """The User-Agent is written to the audit trail (denials included): a NUL in it is refused, first, for
    every caller, not a 500 from the driver."""
    path = f"/v1/tenants/{tenant_id}" if role == "platform" else "/v1/documents"
    rid = request_id("user-agent")
    headers = _headers(tokens, role, tenant_id) | {"User-Agent": f"{SECRET}\x00", "X-Request-ID": rid}
    error = assert_error(await client.get(path, headers=headers), 422, "validation_error")
    assert error["message"] == "header.user-agent: must not contain NUL characters"
    assert await _rows_for(owner_engine, rid) == 0


async def test_a_latin1_user_agent_is_recorded(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The control: header bytes are Latin-1, so any byte but NUL is text PostgreSQL stores."""
    rid = request_id("user-agent-ok")
    headers = tokens.headers("admin", tenant_id) | {"X-Request-ID": rid}
    raw = [(name.encode(), value.encode()) for name, value in headers.items()] + [(b"User-Agent", b"caf\xe9/1.0 \x01")]
    response = await client.get("/v1/documents", headers=raw)
    assert response.status_code == 200, response.text
    recorded = await owner_scalar(
        owner_engine, "SELECT user_agent FROM audit_logs WHERE request_id = :r AND action = 'document.listed'", r=rid
    )
    assert recorded == "caf\xe9/1.0 \x01"


# --------------------------------------------------------------------------------------------------------------
# Properties: any string is accepted or refused with 422, never a 5xx


UNSTORABLE = ["\x00", *map(chr, (0xD800, 0xDBFF, 0xDC00, 0xDFFF))]
TEXT = st.text(st.characters(exclude_categories=()))
MARKED = st.tuples(st.sampled_from(["", SECRET]), TEXT, st.sampled_from(["", *UNSTORABLE]), TEXT).map("".join)
"""Any text (surrogates included), most often with a NUL or a lone surrogate in it, and half the time marked,
so that a refusal quoting it would be caught."""


def _unstorable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return "\x00" in text


def _check(response: httpx.Response) -> None:
    assert response.status_code in (200, 422), (response.status_code, response.text)
    if response.status_code == 422:
        assert SECRET not in assert_error(response, 422, "validation_error")["message"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=MARKED, value=MARKED)
async def test_any_search_filter_is_accepted_or_refused_with_422(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, key: str, value: str
) -> None:
    body = json.dumps({"query": "probe", "filters": {key: value}})  # ASCII: lone surrogates become \\ud800 escapes
    response = await client.post(
        "/v1/search",
        content=body.encode(),
        headers=tokens.headers("viewer", tenant_id) | {"Content-Type": "application/json"},
    )
    _check(response)
    if _unstorable(key) or _unstorable(value):
        assert response.status_code == 422


def _query(**values: str) -> str:
    """Percent-encoded as UTF-8, lone surrogates too (`%ED%A0%80`), as a client that does not check would send."""
    return "&".join(
        f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}" for name, value in values.items()
    )


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["action", "actor_id", "resource_id", "since", "until"]), value=MARKED, export=st.booleans()
)
async def test_any_audit_filter_is_accepted_or_refused_with_422(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, name: str, value: str, export: bool
) -> None:
    """One filter at a time, so that a refused one never hides another that would have failed."""
    path = "/v1/audit-logs/export" if export else "/v1/audit-logs"
    response = await client.get(f"{path}?{_query(**{name: value})}", headers=tokens.headers("admin", tenant_id))
    _check(response)
    if "\x00" in value:
        assert response.status_code == 422


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moment=DATETIMES)
async def test_any_datetime_is_accepted_exactly_when_its_utc_form_is_in_the_window(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, moment: datetime
) -> None:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        in_window = MIN_DATETIME <= aware.astimezone(UTC) <= MAX_DATETIME
    except OverflowError:
        in_window = False
    response = await client.get(
        f"/v1/audit-logs?{_query(until=moment.isoformat())}", headers=tokens.headers("admin", tenant_id)
    )
    assert response.status_code == (200 if in_window else 422), (moment.isoformat(), response.text)
