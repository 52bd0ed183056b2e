"""The console as the API serves it (api/console.py), its policy (api/middleware.py), and development sign-in
(api/routes/dev.py); the browser drives it in test_console_browser.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.console import CONSOLE_FILES
from core.db import SYSTEM_TENANT_ID
from core.runtime import Services
from core.security import TokenVerifier
from core.settings import Settings

CONSOLE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


async def test_the_console_is_served_same_origin_under_its_strict_policy(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/console")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "/console/"
    page = await client.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONSOLE_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    script = await client.get("/console/console.js")
    assert script.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert script.headers["content-security-policy"] == CONSOLE_POLICY
    missing = await client.get("/console/no-such-file.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert missing.headers["content-security-policy"] == CONSOLE_POLICY
    api = await client.get("/healthz")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    lookalike = await client.get("/consoles")  # only the console's own path gets its policy
    assert lookalike.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def _console_files(suffix: str) -> dict[str, str]:
    files = {path.name: path.read_text() for path in CONSOLE_FILES.glob(f"*{suffix}")}
    assert files, suffix
    return files


def test_the_console_has_no_inline_code_no_html_sinks_and_nothing_from_outside() -> None:
    """What the policy would refuse is not there to refuse, and data from the API can only become text."""
    (page,) = _console_files(".html").values()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script type="module" src="console.js">']
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", page, re.IGNORECASE)
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|localStorage")
    for name, code in (_console_files(".js") | _console_files(".css") | {"index.html": page}).items():
        assert not re.search(r"https?://", code), name
        assert not sinks.search(code), name
        assert "@import" not in code, name


async def test_development_sign_in_mints_a_token_the_api_accepts(
    client: httpx.AsyncClient, settings: Settings, tenant_id: uuid.UUID
) -> None:
    answer = await client.post("/v1/dev/token", json={"role": "admin", "tenant_id": str(tenant_id)})
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    principal = TokenVerifier(settings).verify(token)
    assert (principal.role, principal.tenant_id, principal.subject) == ("admin", tenant_id, "console-user")
    documents = await client.get("/v1/documents", headers={"Authorization": f"Bearer {token}"})
    assert documents.status_code == 200
    platform = await client.post("/v1/dev/token", json={"role": "platform_admin"})
    assert TokenVerifier(settings).verify(platform.json()["token"]).is_platform_admin


@pytest.mark.parametrize(
    "body",
    [
        {"role": "platform_admin", "tenant_id": str(uuid.uuid4())},
        {"role": "member"},
        {"role": "viewer", "tenant_id": str(SYSTEM_TENANT_ID)},
        {"role": "owner", "tenant_id": str(uuid.uuid4())},
        {"role": "admin", "tenant_id": str(uuid.uuid4()), "sub": "has spaces"},
        {"role": "admin", "tenant_id": str(uuid.uuid4()), "exp": 1},
    ],
)
async def test_development_sign_in_refuses_claims_the_api_would_refuse(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    answer = await client.post("/v1/dev/token", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_error"
    assert "token" not in answer.json()


async def test_development_sign_in_does_not_exist_in_production(settings: Settings, services: Services) -> None:
    production = create_app(settings.model_copy(update={"env": "production"}), services)
    assert "/v1/dev/token" not in {getattr(route, "path", None) for route in production.routes}
    transport = httpx.ASGITransport(app=production)  # no lifespan: an unmatched path needs no database
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.post("/v1/dev/token", json={"role": "platform_admin"})
        console = await http.get("/console/")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert console.status_code == 200  # the console itself is served everywhere; it asks for a pasted token


def test_development_sign_in_is_not_part_of_the_published_contract(settings: Settings) -> None:
    paths = create_app(settings).openapi()["paths"]
    assert not [path for path in paths if path.startswith(("/v1/dev", "/console"))]
