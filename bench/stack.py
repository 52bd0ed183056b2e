"""A throwaway embedded stack for benchmarks: PostgreSQL, Redis, the API (uvicorn) and one worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.runtime import Services, throwaway_services
from core.settings import Settings

APP_PASSWORD = "phivault-bench"
SHARED_BUFFERS = "2GB"
"""The benchmarks' PostgreSQL keeps its indexes and tables (the peers' included) in shared buffers, as a
production server sized for its data would (docs/SEARCH.md); PostgreSQL's default is 128MB."""


@dataclass
class Stack:
    settings: Settings
    services: Services
    base_url: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(check: object, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def running_stack(worker_concurrency: int = 1) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="phivault-bench-"))
    settings = Settings(
        data_dir=data_dir,
        database_url=None,
        redis_url=None,
        app_db_password=APP_PASSWORD,
        embedded_shared_buffers=SHARED_BUFFERS,
    )
    services = throwaway_services(settings)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=services.owner_url.render_as_string(hide_password=False),
        REDIS_URL=services.redis_url,
        PHIVAULT_DATA_DIR=str(data_dir),
        PHIVAULT_APP_DB_PASSWORD=APP_PASSWORD,
        HF_HUB_OFFLINE="1",
    )
    port = _free_port()
    log = (data_dir / "stack.log").open("ab")
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--concurrency", str(worker_concurrency)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _ready(base_url), "the API")
        _wait_until(lambda: b"ready." in (data_dir / "stack.log").read_bytes(), "the worker")
        yield Stack(settings=settings, services=services, base_url=base_url, env=env)
    finally:
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
