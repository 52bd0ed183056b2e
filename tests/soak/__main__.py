"""`make soak`: the long isolation soak against a real `phivault api` and `phivault worker` on 127.0.0.1.

Starts its own throwaway PostgreSQL and Redis (`core.runtime.throwaway_services`), the API on a free
port of 127.0.0.1 and one worker, runs the plan, prints what it tried and found, stops everything it
started (by pid) and exits 1 on any failure. Options: `python -m tests.soak --help`; each one can
also be set in the environment (`PHIVAULT_SOAK_TENANTS`, `PHIVAULT_SOAK_DOCUMENTS`, ...), and
`make soak SOAK_ARGS="--documents 10"` passes options through.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path

import httpx

from core.runtime import Services, throwaway_services
from core.settings import Settings
from tests.conftest import development_settings
from tests.harness import Worker, worker_env
from tests.soak.driver import SoakPlan, SoakReport, run_soak, settings_minter
from tests.waiting import patience, wait_until

HOST = "127.0.0.1"
OPTIONS = {
    "tenants": ("PHIVAULT_SOAK_TENANTS", int, "tenants, each with its own admin and member"),
    "documents_per_tenant": ("PHIVAULT_SOAK_DOCUMENTS", int, "documents each tenant uploads"),
    "requests": ("PHIVAULT_SOAK_REQUESTS", int, "operations scheduled, uploads included"),
    "duration_seconds": ("PHIVAULT_SOAK_DURATION", float, "cap on the load, in seconds"),
    "settle_seconds": ("PHIVAULT_SOAK_SETTLE", float, "cap on the wait for processing afterwards, in seconds"),
    "concurrency": ("PHIVAULT_SOAK_CONCURRENCY", int, "operations in flight at once"),
    "seed": ("PHIVAULT_SOAK_SEED", int, "seed of the schedule and the documents"),
}


def parse_plan(argv: list[str]) -> SoakPlan:
    defaults = SoakPlan()
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    for spec in fields(SoakPlan):
        variable, kind, text = OPTIONS[spec.name]
        default = kind(os.environ.get(variable, getattr(defaults, spec.name)))
        flag = "--documents" if spec.name == "documents_per_tenant" else "--" + spec.name.removesuffix("_seconds")
        parser.add_argument(
            flag, dest=spec.name, metavar="N", type=kind, default=default, help=f"{text} (${variable}, {default})"
        )
    try:
        return SoakPlan(**vars(parser.parse_args(argv)))
    except ValueError as exc:
        parser.error(str(exc))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _api(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`phivault api` on a free port of 127.0.0.1, until it answers /readyz; stopped by its pid."""
    port = _free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "api", "--host", HOST, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://{HOST}:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _ready(base_url), "the API to answer /readyz")
        if process.poll() is not None:
            raise RuntimeError("the API exited:\n" + log_path.read_text(errors="replace")[-4000:])
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=patience(0.2))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _services(settings: Settings) -> Iterator[Services]:
    services = throwaway_services(settings)
    try:
        yield services
    finally:
        if services.embedded_redis is not None:
            services.embedded_redis.stop()
        if services.embedded_postgres is not None:
            services.embedded_postgres.server.cleanup()


def _error_lines(log_path: Path, limit: int = 20) -> list[str]:
    """The last error lines the services logged (ids and error types; the soak's documents are synthetic)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if "ERROR" in line][-limit:]


async def _drive(base_url: str, settings: Settings, plan: SoakPlan) -> SoakReport:
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(120)) as client:
        return await run_soak(client, settings_minter(settings, plan.token_ttl_seconds), plan)


def main(argv: list[str]) -> int:
    plan = parse_plan(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="phivault-soak-"))
    settings = development_settings(data_dir)
    print(f"soak: plan {plan}", flush=True)
    try:
        with ExitStack() as stack:
            services = stack.enter_context(_services(settings))
            env = worker_env(settings, services)
            env.update(PHIVAULT_ENV="development", PHIVAULT_RATE_LIMITS_ENABLED="false", PHIVAULT_LOG_JSON="true")
            worker = Worker(env, data_dir / "worker.log")
            stack.callback(worker.stop)
            worker.start()
            base_url = stack.enter_context(_api(env, data_dir / "api.log"))
            print(f"soak: API at {base_url}, worker pid {worker.process.pid if worker.process else '-'}", flush=True)
            report = asyncio.run(_drive(base_url, settings, plan))
            print(report.render(), flush=True)
            if not report.ok:
                for name in ("api.log", "worker.log"):
                    for line in _error_lines(data_dir / name):
                        print(f"  {name}: {line}", flush=True)
            return 0 if report.ok else 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
