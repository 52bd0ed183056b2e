"""`phivault tenant create`, `phivault token` and `phivault ingest` as subprocesses against the test stack."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt
import pytest

from core.runtime import Services
from core.settings import Settings
from tests.harness import Worker, phivault, worker_env


@pytest.fixture
def env(settings: Settings, services: Services) -> dict[str, str]:
    return worker_env(settings, services)


def test_token_is_a_development_tool(env: dict[str, str], settings: Settings) -> None:
    tenant = str(uuid.uuid4())
    minted = phivault(env, "token", "--role", "viewer", "--tenant", tenant, "--sub", "alice")
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), settings.jwt_secret.get_secret_value(), algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["tenant_id"]) == ("alice", "viewer", tenant)
    assert phivault(env, "token", "--role", "root").returncode != 0

    production = dict(env, PHIVAULT_ENV="production")
    refused = phivault(production, "token", "--role", "admin", "--tenant", tenant)
    assert refused.returncode == 2
    assert "refusing to start in production" in refused.stderr


def test_tenant_create_then_ingest_a_folder(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    created = phivault(env, "tenant", "create", "CLI Cardiology")
    assert created.returncode == 0, created.stderr
    tenant_id, slug = created.stdout.strip().split("\t")
    assert slug.startswith("cli-cardiology")

    folder = tmp_path / "notes"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.txt").write_text("Atrial fibrillation managed with rate control and anticoagulation.")
    (folder / "nested" / "b.md").write_text("# Heart failure\n\nReduced ejection fraction; started an ACE inhibitor.")
    (folder / "copy.txt").write_text("Atrial fibrillation managed with rate control and anticoagulation.")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))

    ingested = phivault(env, "ingest", str(folder), "--tenant", tenant_id, "--timeout", "240")
    assert "ready: 2  failed: 0  duplicate: 1  rejected: 1  still processing: 0" in ingested.stdout, ingested.stdout
    assert "image.png" in ingested.stdout
    assert ingested.returncode == 1  # something was rejected

    again = phivault(env, "ingest", str(folder / "a.txt"), "--tenant", tenant_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "duplicate: 1" in again.stdout

    found = phivault(env, "search", "irregular heart rhythm", "--tenant", tenant_id, "--k", "2")
    assert found.returncode == 0, found.stderr
    assert "2 results" in found.stdout
    assert found.stdout.index("a.txt") < found.stdout.index("b.md")

    reembedded = phivault(env, "reembed", "--tenant", tenant_id)
    assert reembedded.returncode == 0, reembedded.stderr
    assert "re-embedded 0 chunks" in reembedded.stdout


def test_ingest_refuses_an_unknown_tenant(env: dict[str, str], tmp_path: Path) -> None:
    note = tmp_path / "n.txt"
    note.write_text("A note.")
    refused = phivault(env, "ingest", str(note), "--tenant", str(uuid.uuid4()))
    assert refused.returncode == 2
    assert "this tenant does not exist" in refused.stderr
    assert "Traceback" not in refused.stderr
