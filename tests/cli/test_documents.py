"""`phivault tenant create`, `phivault token` and `phivault ingest` as subprocesses against the test stack."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import jwt
import pytest

from core.runtime import Services
from core.settings import Settings
from tests.harness import Worker, phivault, worker_env
from tests.sample_files import make_blank_pdf

UPLOADED = re.compile(r"^uploaded ([0-9a-f-]{36})  (\S+)$", re.MULTILINE)


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

    for role in ("admin", "member", "viewer"):
        refused = phivault(env, "token", "--role", role)
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr.splitlines() == [
            f"phivault: a {role} token acts in one tenant: add --tenant ID (the id `phivault tenant create` printed)"
        ]
    misplaced = phivault(env, "token", "--role", "platform_admin", "--tenant", tenant)
    assert misplaced.returncode == 2
    assert misplaced.stderr == "phivault: a platform_admin token acts in no tenant: drop --tenant\n"

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
    (folder / "scan.pdf").write_bytes(make_blank_pdf())

    ingested = phivault(env, "ingest", str(folder), "--tenant", tenant_id, "--timeout", "240")
    assert "ready: 2  failed: 1  duplicate: 1  rejected: 1  still processing: 0" in ingested.stdout, ingested.stdout
    assert f"  rejected {folder / 'image.png'}: " in ingested.stdout
    assert f"  failed {folder / 'scan.pdf'}: No text could be extracted." in ingested.stdout
    assert "(no_text)" in ingested.stdout
    uploaded = dict((path, document_id) for document_id, path in UPLOADED.findall(ingested.stdout))
    assert set(uploaded) == {str(folder / name) for name in ("a.txt", "nested/b.md", "scan.pdf")}, ingested.stdout
    assert f"  duplicate {folder / 'copy.txt'}: same content as {uploaded[str(folder / 'a.txt')]}" in ingested.stdout
    assert ingested.returncode == 1  # something was rejected or failed

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


def test_ingest_without_waiting_prints_the_ids_to_poll(env: dict[str, str], tmp_path: Path) -> None:
    tenant_id = phivault(env, "tenant", "create", "CLI No Wait").stdout.strip().split("\t")[0]
    note = tmp_path / "later.txt"
    note.write_text("Follow-up visit in two weeks; repeat the blood count.")
    ingested = phivault(env, "ingest", str(note), "--tenant", tenant_id, "--no-wait")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    [(document_id, path)] = UPLOADED.findall(ingested.stdout)
    assert path == str(note)
    uuid.UUID(document_id)
    assert "still processing: 1" in ingested.stdout
    assert "poll each uploaded id until its status is ready or failed: GET /v1/documents/{id}" in ingested.stdout


def test_ingest_refuses_an_unknown_tenant(env: dict[str, str], tmp_path: Path) -> None:
    note = tmp_path / "n.txt"
    note.write_text("A note.")
    refused = phivault(env, "ingest", str(note), "--tenant", str(uuid.uuid4()))
    assert refused.returncode == 2
    assert "this tenant does not exist" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_model_not_on_this_machine_is_one_line_naming_the_setting(env: dict[str, str]) -> None:
    offline = dict(env, PHIVAULT_EMBEDDING_MODEL="no-such/model", HF_HUB_OFFLINE="1")
    refused = phivault(offline, "search", "chest pain", "--tenant", str(uuid.uuid4()))
    assert refused.returncode == 2, refused.stderr
    [line] = refused.stderr.splitlines()  # one line, no traceback
    assert line.startswith("phivault: PHIVAULT_EMBEDDING_MODEL=no-such/model is not available on this machine")
    assert "--build-arg PHIVAULT_EMBEDDING_MODEL=no-such/model" in refused.stderr
