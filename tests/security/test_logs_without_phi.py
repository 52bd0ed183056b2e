"""No PHI in any log line: the API process's and the Celery worker's (invariant 5).

Distinctive PHI-like strings go everywhere a client can put them (filename, document text,
metadata, search queries, query parameters of refused and unknown requests) through the real
app and the real worker. Every log record the API process emits at DEBUG, the same records
formatted by the project's JSON formatter, and what the worker subprocess wrote to its log
during the test are searched for them. Request ids are logged by design and carry no PHI here.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.logging import configure_logging
from core.settings import Settings
from tests.harness import Tokens, Worker
from tests.sample_files import make_blank_pdf, make_encrypted_pdf, make_pdf
from tests.waiting import eventually, wait_until

PATIENT = "Zebulon Quartermaine-PHI"
MRN = "MRN-99887766"
DIAGNOSIS = "Xanthoplastic Myelodysgenesis"
PHI = (PATIENT, MRN, DIAGNOSIS)
# The full strings and their distinctive parts, so a sanitised, split or URL-encoded copy is caught too.
NEEDLES = (*PHI, "Zebulon", "Quartermaine", "99887766", "Xanthoplastic", "Myelodysgenesis")

NOTE = (
    f"Discharge summary for {PATIENT}, {MRN}.\n\n"
    f"The patient was admitted with fever and anaemia; bone marrow biopsy confirmed {DIAGNOSIS}. "
    "Transfusion support was given and the patient was discharged home with haematology follow-up.\n"
)
METADATA = json.dumps({"patient": PATIENT, "mrn": MRN, "diagnosis": DIAGNOSIS})
REQUEST_LOG_FIELDS = {"request_id", "route", "status", "duration_ms"}


def project_json_formatter() -> logging.Formatter:
    """The formatter `core.logging.configure_logging` installs, taken from it without keeping its side effects."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        configure_logging()
        formatter = root.handlers[0].formatter
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
    assert formatter is not None
    return formatter


def from_test_client(record: logging.LogRecord) -> bool:
    """httpx logs each request the *test client* sends, full URL included; that line is the test's, not the app's.

    The app itself sends no request data over httpx; any other httpx record is still searched.
    """
    args = record.args
    return (
        record.name == "httpx"
        and str(record.msg).startswith("HTTP Request:")
        and isinstance(args, tuple)
        and len(args) > 1
        and str(args[1]).startswith("http://127.0.0.1/")
    )


class JsonLines(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.addFilter(lambda record: not from_test_client(record))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines(project_json_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def debug_everywhere(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """DEBUG on the root logger and on every logger that set its own level (restored by caplog).

    SQLAlchemy's loggers stay at the WARNING level the library gives them: below it they are
    `echo=True`, which prints every statement's bound parameters by design and is never on here.
    """
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET and not name.startswith("sqlalchemy"):
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def record_text(record: logging.LogRecord) -> str:
    """Everything a record carries: message, arguments, extra fields, exception and stack."""
    parts = [record.getMessage(), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


def leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if any(needle.lower() in text.lower() for needle in NEEDLES)]


@dataclass
class Flow:
    client: httpx.AsyncClient
    calls: dict[str, int] = field(default_factory=dict)  # request id -> status

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        request_id = f"phi-log-{len(self.calls)}-{uuid.uuid4().hex[:8]}"
        headers = {**kwargs.pop("headers"), "X-Request-ID": request_id}
        response = await self.client.request(method, url, headers=headers, **kwargs)
        self.calls[request_id] = response.status_code
        return response

    async def upload(self, headers: dict[str, str], content: bytes, filename: str) -> httpx.Response:
        return await self.send(
            "POST",
            "/v1/documents",
            headers=headers,
            files={"file": (filename, content, "application/octet-stream")},
            data={"metadata": METADATA},
        )

    async def settle(self, headers: dict[str, str], ids: list[str]) -> dict[str, str]:
        async def settled() -> dict[str, str] | None:
            states = {i: (await self.send("GET", f"/v1/documents/{i}", headers=headers)).json()["status"] for i in ids}
            return states if all(state in ("ready", "failed") for state in states.values()) else None

        return await eventually(settled, "every document ready or failed")


def assert_no_phi_echo(response: httpx.Response) -> None:
    assert not leaks([response.text]), response.text


def read_from(path: Path, offset: int) -> str:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", errors="replace")


def wait_for_worker_log(path: Path, offset: int, finished: int) -> str:
    """The worker's log since `offset`, once it shows `finished` completed tasks (logged after the commit)."""

    def shown() -> str | None:
        written = read_from(path, offset)
        done = sum("ingest.process_document" in line and "succeeded" in line for line in written.splitlines())
        return written if done >= finished else None

    return wait_until(shown, f"{finished} finished tasks in the worker's log")


async def test_no_phi_in_api_or_worker_logs(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    worker: Worker,
    settings: Settings,
    debug_everywhere: pytest.LogCaptureFixture,
    json_lines: JsonLines,
) -> None:
    assert worker.log_path == settings.data_dir / "worker.log"
    worker_offset = worker.log_path.stat().st_size
    caplog = debug_everywhere
    flow = Flow(client)
    member = tokens.headers("member", tenant_id)
    admin = tokens.headers("admin", tenant_id)
    viewer = tokens.headers("viewer", tenant_id)

    # Uploads: PHI in filename, text and metadata; one is processed, one fails in the worker.
    note = await flow.upload(member, NOTE.encode(), f"{PATIENT} {MRN} {DIAGNOSIS}.txt")
    assert note.status_code == 202, note.text
    pdf = await flow.upload(member, make_pdf([NOTE.replace("\n", " ")]), f"{PATIENT} biopsy.pdf")
    assert pdf.status_code == 202, pdf.text
    blank = await flow.upload(member, make_blank_pdf(), f"{PATIENT} scan {MRN}.pdf")
    assert blank.status_code == 202, blank.text
    duplicate = await flow.upload(admin, NOTE.encode(), f"copy of {PATIENT}.txt")
    assert duplicate.status_code == 200, duplicate.text
    ids = [note.json()["id"], pdf.json()["id"], blank.json()["id"]]
    states = await flow.settle(member, ids)
    assert states == {ids[0]: "ready", ids[1]: "ready", ids[2]: "failed"}, states

    # Failing uploads, refused at the door: an encrypted PDF and metadata that is not an object.
    encrypted = await flow.upload(member, make_encrypted_pdf(), f"{PATIENT} {MRN} locked.pdf")
    assert encrypted.status_code == 422, encrypted.text
    bad_metadata = await flow.send(
        "POST",
        "/v1/documents",
        headers=member,
        files={"file": (f"{PATIENT}.txt", NOTE.encode(), "text/plain")},
        data={"metadata": json.dumps([PATIENT, MRN])},
    )
    assert bad_metadata.status_code == 422, bad_metadata.text

    # Reads: one document, its content, the list.
    for document_id in ids:
        assert (await flow.send("GET", f"/v1/documents/{document_id}", headers=viewer)).status_code == 200
    content = await flow.send("GET", f"/v1/documents/{ids[0]}/content", headers=member)
    assert content.status_code == 200
    assert content.content == NOTE.encode()
    listed = await flow.send("GET", "/v1/documents", headers=viewer, params={"limit": 10})
    assert len(listed.json()["items"]) == 3

    # Searches with PHI in the query and the filters, in both modes.
    for mode in ("vector", "hybrid"):
        for query in (f"{PATIENT} {DIAGNOSIS}", f"bone marrow biopsy {MRN}"):
            found = await flow.send("POST", "/v1/search", headers=viewer, json={"query": query, "k": 5, "mode": mode})
            assert found.status_code == 200, found.text
            assert ids[0] in {hit["document_id"] for hit in found.json()["results"]}, (mode, query)
    filtered = await flow.send(
        "POST", "/v1/search", headers=member, json={"query": DIAGNOSIS, "filters": {"mrn": MRN}, "mode": "hybrid"}
    )
    assert filtered.status_code == 200, filtered.text
    assert filtered.json()["results"]

    # Refusals and errors with PHI in the query string, the path and the body.
    refused = [
        await flow.send("GET", f"/v1/documents/{uuid.uuid4()}", headers=viewer, params={"patient": PATIENT}),
        await flow.send("GET", f"/v1/patients/{PATIENT}", headers=viewer, params={"mrn": MRN}),
        await flow.send("GET", "/v1/audit-logs", headers=member, params={"action": PATIENT}),
        await flow.send("GET", "/v1/documents", headers={}, params={"q": f"{PATIENT} {MRN}"}),
        await flow.send("POST", "/v1/search", headers=viewer, json={"query": f"{PATIENT} {MRN}", "k": 0}),
        await flow.send("POST", "/v1/search", headers=viewer, json={"query": DIAGNOSIS, "k": PATIENT}),
        await flow.send("GET", "/v1/documents", headers=viewer, params={"status": PATIENT}),
    ]
    assert [r.status_code for r in refused] == [404, 404, 403, 401, 422, 422, 422]
    for response in refused:
        assert_no_phi_echo(response)
    # An unknown body field named with PHI: logged nowhere (checked below). The 422 message does name the
    # field back to its sender ("<field>: Extra inputs are not permitted"), so its body is not checked here.
    unknown_field = await flow.send("POST", "/v1/search", headers=viewer, json={"query": PATIENT, PATIENT: MRN})
    assert unknown_field.status_code == 422
    audited = await flow.send("GET", "/v1/audit-logs", headers=admin, params={"action": PATIENT})
    assert audited.status_code == 200
    assert audited.json()["items"] == []

    # Delete and restore the document whose name is PHI.
    assert (await flow.send("DELETE", f"/v1/documents/{ids[0]}", headers=member)).status_code == 204
    assert (await flow.send("POST", f"/v1/documents/{ids[0]}/restore", headers=member)).status_code == 200

    worker_log = wait_for_worker_log(worker.log_path, worker_offset, finished=len(ids))
    records = [record for record in caplog.records if not from_test_client(record)]

    # The capture works: it saw the app's request lines and the worker's processing of these documents.
    assert any(record.name == "phivault.request" for record in records)
    assert "ingest.process_document" in worker_log, worker_log[-2000:]

    assert not leaks([record_text(record) for record in records]), leaks([record_text(r) for r in records])[:5]
    formatted = [caplog.handler.format(record) for record in records]
    assert not leaks(formatted), leaks(formatted)[:5]
    assert not leaks(json_lines.lines), leaks(json_lines.lines)[:5]
    assert not leaks([worker_log]), leaks(worker_log.splitlines())[:5]

    # One JSON request line per request, with the fields operators need, and its real status.
    request_lines = [entry for entry in map(json.loads, json_lines.lines) if entry.get("logger") == "phivault.request"]
    assert request_lines
    for entry in request_lines:
        assert set(entry) >= REQUEST_LOG_FIELDS, entry
        assert entry["message"] == "request"
        assert isinstance(entry["duration_ms"], int | float)
        assert entry["duration_ms"] >= 0
    by_id = {entry["request_id"]: entry for entry in request_lines}
    assert len(by_id) == len(request_lines)
    for request_id, status in flow.calls.items():
        assert request_id in by_id, request_id
        assert by_id[request_id]["status"] == status, by_id[request_id]
    routes = {entry["route"] for entry in request_lines}
    assert {"/v1/documents", "/v1/documents/{document_id}", "/v1/search", "unmatched"} <= routes, routes
