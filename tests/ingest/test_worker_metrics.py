"""Worker metrics from a real `phivault worker` (prefork) with PHIVAULT_WORKER_METRICS_PORT set.

The worker and the API app used here share a broker of their own, so the document these tests
upload is processed by this worker and not by another one running in the session.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import states
from celery.signals import task_postrun, task_prerun
from prometheus_client import REGISTRY
from prometheus_client.samples import Sample

from core.runtime import Services
from core.settings import Settings
from ingest.queue import PROCESS_DOCUMENT_TASK
from ingest.worker_metrics import MULTIPROC_DIR_ENV, multiprocess_directory
from tests.harness import NOTE, Tokens, Worker, app_client, document_in, upload, worker_env
from tests.metrics_helpers import UUID_PATTERN, free_port, label_values, own_broker, samples, value
from tests.waiting import eventually

METRICS_TOKEN = "worker-metrics-token-for-tests-" + "z" * 8
CHUNKS = "phivault_worker_chunks_embedded_total"
TASKS = "phivault_worker_tasks_total"
DOCUMENTS = "phivault_worker_documents_processed_total"
DURATIONS = "phivault_worker_task_duration_seconds_count"


@dataclass(frozen=True)
class MetricsWorker:
    worker: Worker
    services: Services
    url: str

    def multiproc_directory(self) -> Path:
        """The directory the worker logged when it began serving its metrics."""
        for line in self.worker.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"serving worker metrics"' in line:
                return Path(json.loads(line)["directory"])
        raise AssertionError("the worker did not log its metrics directory")


def start_metrics_worker(settings: Settings, services: Services, log_path: Path) -> MetricsWorker:
    port = free_port()
    env = worker_env(settings, services)
    env.update(PHIVAULT_WORKER_METRICS_PORT=str(port), PHIVAULT_METRICS_TOKEN=METRICS_TOKEN)
    env.pop(MULTIPROC_DIR_ENV, None)
    worker = Worker(env, log_path)
    worker.start()
    return MetricsWorker(worker=worker, services=services, url=f"http://127.0.0.1:{port}/metrics")


@pytest.fixture(scope="module")
def broker(services: Services) -> Iterator[Services]:
    with own_broker(services) as isolated:
        yield isolated


@pytest.fixture(scope="module")
def metrics_worker(settings: Settings, broker: Services) -> Iterator[MetricsWorker]:
    running = start_metrics_worker(settings, broker, settings.data_dir / "metrics-worker.log")
    yield running
    running.worker.stop()


@pytest.fixture(scope="module")
async def api(settings: Settings, broker: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP app, sending work to the metrics worker's broker."""
    async with app_client(settings, broker) as http:
        yield http


AUTHORIZED = {"Authorization": f"Bearer {METRICS_TOKEN}"}


async def scrape(url: str) -> list[Sample]:
    async with httpx.AsyncClient() as http:
        response = await http.get(url, headers=AUTHORIZED)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


async def test_worker_metrics_need_the_token(metrics_worker: MetricsWorker) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.get(metrics_worker.url)
        wrong = await http.get(metrics_worker.url, headers={"Authorization": "Bearer " + "w" * len(METRICS_TOKEN)})
        elsewhere = await http.get(metrics_worker.url.removesuffix("/metrics") + "/other", headers=AUTHORIZED)
        accepted = await http.get(metrics_worker.url, headers=AUTHORIZED)
    for response, status, code in (
        (missing, 401, "missing_token"),
        (wrong, 401, "invalid_token"),
        (elsewhere, 404, "not_found"),
    ):
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert set(error) == {"code", "message", "request_id"}
    assert accepted.status_code == 200
    assert f'{TASKS}{{outcome="ready",task="{PROCESS_DOCUMENT_TASK}"}}' in accepted.text


async def test_a_processed_document_shows_in_the_worker_metrics(
    metrics_worker: MetricsWorker, api: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    before = await scrape(metrics_worker.url)
    headers = tokens.headers("member", tenant_id)
    created = await upload(api, headers, NOTE + uuid.uuid4().bytes.hex().encode(), "discharge.txt")
    assert created.status_code == 202, created.text
    document_id = created.json()["id"]

    document = await document_in(api, headers, document_id)
    assert document["status"] == "ready", document
    chunk_count = document["chunk_count"]
    assert isinstance(chunk_count, int)
    assert chunk_count >= 1

    ready = {"task": PROCESS_DOCUMENT_TASK, "outcome": "ready"}

    def grew(after: list[Sample]) -> bool:
        return (
            value(after, CHUNKS) >= value(before, CHUNKS) + chunk_count
            and value(after, TASKS, **ready) >= value(before, TASKS, **ready) + 1
            and value(after, DOCUMENTS, status="ready") >= value(before, DOCUMENTS, status="ready") + 1
        )

    async def grown() -> list[Sample] | None:
        after = await scrape(metrics_worker.url)
        return after if grew(after) else None

    # The task's outcome is recorded just after its commit: poll until the scrape shows it.
    after = await eventually(grown, "the worker's metrics showing the processed document")
    assert value(after, DURATIONS, task=PROCESS_DOCUMENT_TASK) >= 1
    assert not [v for v in label_values(after) if UUID_PATTERN.search(v)]
    assert "discharge.txt" not in str(after)


async def test_stopping_the_worker_removes_its_metrics_directory(settings: Settings, broker: Services) -> None:
    running = start_metrics_worker(settings, broker, settings.data_dir / "metrics-worker-stop.log")
    try:
        directory = running.multiproc_directory()
        assert directory.is_dir()
        assert value(await scrape(running.url), TASKS, task=PROCESS_DOCUMENT_TASK, outcome="ready") == 0
    finally:
        running.worker.stop()
    assert not directory.exists()
    with pytest.raises(httpx.ConnectError):
        await scrape(running.url)


def test_multiprocess_directory_is_fresh_and_removed() -> None:
    outer = os.environ.get(MULTIPROC_DIR_ENV)
    with multiprocess_directory() as first:
        assert os.environ[MULTIPROC_DIR_ENV] == first
        assert list(Path(first).iterdir()) == []
        (Path(first) / "counter_1.db").write_bytes(b"")
    assert not Path(first).exists()
    assert os.environ.get(MULTIPROC_DIR_ENV) == outer
    with multiprocess_directory() as second:
        assert second != first
        assert list(Path(second).iterdir()) == []


def test_the_server_refuses_in_memory_values(settings: Settings) -> None:
    """In this process prometheus_client was imported without the variable: serving would show nothing."""
    from ingest.metrics import start_metrics_server

    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        start_metrics_server(settings, free_port())


@dataclass(frozen=True)
class FakeTask:
    """What the handlers read of a task (Celery's signals need a hashable sender)."""

    name: str


@pytest.mark.parametrize(
    ("task", "state", "retval", "outcome"),
    [
        (PROCESS_DOCUMENT_TASK, states.SUCCESS, "ready", "ready"),
        (PROCESS_DOCUMENT_TASK, states.SUCCESS, "skipped", "skipped"),
        (PROCESS_DOCUMENT_TASK, states.RETRY, None, "retried"),
        (PROCESS_DOCUMENT_TASK, states.FAILURE, None, "error"),
        ("ingest.reconcile", states.SUCCESS, 3, "success"),
        ("ingest.purge_deleted", states.FAILURE, None, "error"),
    ],
)
def test_task_signals_record_duration_and_outcome(task: str, state: str, retval: object, outcome: str) -> None:
    """The handlers ingest.metrics connects to Celery's task signals (here in memory, in this process)."""
    import ingest.metrics  # noqa: F401 - connects the handlers

    def current(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    sender = FakeTask(name=task)
    before = (current(TASKS, task=task, outcome=outcome), current(DURATIONS, task=task))
    processed = current(DOCUMENTS, status=outcome)
    task_id = str(uuid.uuid4())
    task_prerun.send(sender=sender, task_id=task_id, task=sender, args=(), kwargs={})
    task_postrun.send(sender=sender, task_id=task_id, task=sender, args=(), kwargs={}, retval=retval, state=state)
    assert (current(TASKS, task=task, outcome=outcome), current(DURATIONS, task=task)) == (before[0] + 1, before[1] + 1)
    counted = task == PROCESS_DOCUMENT_TASK and outcome in ("ready", "failed")
    assert current(DOCUMENTS, status=outcome) == processed + (1 if counted else 0)
