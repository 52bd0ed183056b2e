"""A client generated from the app's own OpenAPI document (openapi-python-client) works against the real app.

The client is generated into a temporary directory (warnings are failures: a part of the schema the generator
cannot model is a defect of the schema), imported from there, and driven over ASGI against a fresh app on the
session's stack, with a real worker processing the upload: create a tenant and find it in the tenant list,
upload a document, poll it until it is ready, search it, and read a missing document as the error shape.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from io import BytesIO
from types import ModuleType
from typing import Any

import httpx
import pytest

from api.app import create_app
from core.runtime import Services
from core.security import Role, mint_token
from core.settings import Settings
from tests.harness import process_database_kept
from tests.waiting import eventually, patience

pytestmark = pytest.mark.usefixtures("worker")

PACKAGE = "phivault_client"
GENERATOR_CONFIG = "post_hooks: []\n"  # no ruff run over the generated code: it is imported, never committed
NOTE = (
    b"Discharge summary. The patient's hypertension is controlled with lisinopril, an ACE inhibitor, and a "
    b"low-salt diet; blood pressure readings at home stay below 130/80.\n"
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[ModuleType]:
    """The generated package, importable as `phivault_client` while this module's tests run."""
    root = tmp_path_factory.mktemp("generated-client")
    (root / "openapi.json").write_text(json.dumps(create_app(settings).openapi()))
    (root / "config.yaml").write_text(GENERATOR_CONFIG)
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(root / "openapi.json")]
    command += ["--output-path", str(root / PACKAGE), "--meta", "none", "--fail-on-warning"]
    command += ["--config", str(root / "config.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=patience(0.5), cwd=root, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@dataclass
class Generated:
    """The generated package's operations and models, and clients of the running app for any role."""

    package: ModuleType
    transport: httpx.AsyncBaseTransport
    settings: Settings

    def operation(self, tag: str, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")

    def model(self, name: str) -> Any:
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)

    def client(self, role: Role, tenant_id: uuid.UUID | None = None) -> Any:
        token = mint_token(self.settings, subject=f"generated-{role}", role=role, tenant_id=tenant_id)
        return self.package.AuthenticatedClient(
            base_url="http://127.0.0.1", token=token, httpx_args={"transport": self.transport}
        )


@pytest.fixture
async def api(generated: ModuleType, settings: Settings, services: Services) -> AsyncIterator[Generated]:
    app = create_app(settings, services)
    with process_database_kept():
        async with app.router.lifespan_context(app):
            yield Generated(generated, httpx.ASGITransport(app=app, client=("127.0.0.1", 50004)), settings)


async def test_upload_then_ready_then_search_through_the_generated_client(api: Generated) -> None:
    platform = api.client("platform_admin")
    name = f"Generated Client Clinic {uuid.uuid4().hex[:6]}"
    created = await api.operation("tenants", "create_v1_tenants_post").asyncio_detailed(
        client=platform, body=api.model("TenantCreate")(name=name)
    )
    assert created.status_code == 201, created.content
    tenant = created.parsed
    assert isinstance(tenant, api.model("TenantOut"))
    assert tenant.status == api.model("TenantOutStatus").ACTIVE
    listed = await api.operation("tenants", "list_all_v1_tenants_get").asyncio(client=platform, limit=5)
    assert tenant.id in [item.id for item in listed.items]

    member = api.client("member", tenant.id)
    upload_file = importlib.import_module(f"{PACKAGE}.types").File
    body = api.model("UploadDocumentV1DocumentsPostBody")(
        file=upload_file(payload=BytesIO(NOTE), file_name="discharge.txt", mime_type="text/plain"),
        metadata=json.dumps({"department": "cardiology"}),
    )
    uploaded = await api.operation("documents", "upload_document_v1_documents_post").asyncio_detailed(
        client=member, body=body
    )
    assert uploaded.status_code == 202, uploaded.content
    document = uploaded.parsed
    assert document.status == api.model("UploadOutStatus").QUEUED

    read = api.operation("documents", "get_tenant_document_v1_documents_document_id_get")
    statuses = api.model("DocumentOutStatus")

    async def finished() -> Any:
        current = await read.asyncio(client=member, document_id=document.id)
        return current if current.status in (statuses.READY, statuses.FAILED) else None

    done = await eventually(finished, "the uploaded document is processed")
    assert done.status == statuses.READY, (done.error_code, done.error_message)
    assert done.chunk_count >= 1
    assert done.metadata.additional_properties == {"department": "cardiology"}

    query = api.model("SearchRequest")(query="blood pressure medicine", k=3, mode=api.model("SearchRequestMode").HYBRID)
    found = await api.operation("search", "search_documents_v1_search_post").asyncio(client=member, body=query)
    assert isinstance(found, api.model("SearchResponse")), found
    assert found.results[0].document_id == document.id
    assert "lisinopril" in found.results[0].text

    missing = await read.asyncio_detailed(client=member, document_id=uuid.uuid4())
    assert missing.status_code == 404
    assert missing.parsed.error.code == "not_found"
