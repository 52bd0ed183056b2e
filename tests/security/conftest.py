"""Fixtures of the security suite's bad-input files: a member's headers and an app with a small upload limit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, process_database_kept
from tests.security.bad_input import SMALL_LIMIT


@pytest.fixture
def member(tokens: Tokens, tenant_id: uuid.UUID) -> dict[str, str]:
    return tokens.headers("member", tenant_id)


@pytest.fixture(scope="module")
async def small_client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A second app whose upload limit is 64 KiB (the multipart overhead allowance stays 256 KiB)."""
    app = create_app(settings.model_copy(update={"max_upload_bytes": SMALL_LIMIT}), services)
    # Its lifespan installs its own process database and uninstalls it on exit: put back the session's.
    with process_database_kept():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50002))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                yield http
