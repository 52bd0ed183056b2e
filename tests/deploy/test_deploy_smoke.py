"""The deployment, run for real: the image's packages, the template's variables and commands, in production mode.

Nothing here is Railway's or Docker's: the wheel is installed into a fresh virtualenv exactly as the
Dockerfile installs it (tests/deploy/image.py), `template.json` is resolved with its secrets generated
and its references pointed at servers on 127.0.0.1 (PostgreSQL with pgvector over TCP with scram
passwords, Redis over TCP, S3 from moto's server mode), and the pre-deploy and start commands are the
template's own, run as an unprivileged user. Twice: with a superuser owner (Railway's pgvector image)
and with a non-superuser CREATEROLE owner (RDS, Azure, Supabase, Neon).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import jwt
import pytest

from tests.deploy.image import install_image, make_interpreter_reachable_by_others
from tests.deploy.servers import moto_s3, tcp_postgres, tcp_redis
from tests.deploy.template import APP_SERVICES, load_template, pre_deploy_command, resolve_variables, start_command
from tests.waiting import patience, wait_until

pytestmark = pytest.mark.timeout(patience(5))  # an install, a build and a deploy

SERVICE_USER = "phivault-smoke"
STOP_SECONDS = patience(0.5)
NOTE = (
    b"Discharge summary. The patient was treated for community acquired pneumonia with amoxicillin "
    b"and recovered fully; follow-up chest radiograph in six weeks."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_user() -> str | None:
    """The unprivileged user the services run as (created when the suite runs as root, as CI does)."""
    if os.geteuid() != 0:
        return None  # already unprivileged
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


@pytest.fixture(scope="module")
def image_bin() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="phivault-image-"))
    make_interpreter_reachable_by_others()
    try:
        yield install_image(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Deployment:
    """The three application services of one resolved template, each a process with its own log."""

    def __init__(self, root: Path, bin_dir: Path, variables: dict[str, dict[str, str]], user: str | None) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.user = user
        self.template = load_template()
        self.api_port = free_port()
        self.worker_metrics_port = free_port()
        self.envs = {name: self._env(name, variables[name]) for name in APP_SERVICES}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Drop root entirely: the user's own group and no supplementary groups (root's would remain otherwise).
        self.identity: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}

    def _env(self, service: str, variables: dict[str, str]) -> dict[str, str]:
        home = self.root / service
        home.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(home, self.user)
        env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(home),
            "PHIVAULT_DATA_DIR": str(home),
            "LANG": "C.UTF-8",
            **variables,
            # The deviations from the template: tests listen on loopback only, never 0.0.0.0, and
            # moto on 127.0.0.1 has no DNS names for virtual-hosted buckets.
            "PHIVAULT_API_HOST": "127.0.0.1",
            "PHIVAULT_S3_ADDRESSING_STYLE": "path",
        }
        if service == "api":
            env["PORT"] = str(self.api_port)  # what Railway injects
        if "PHIVAULT_WORKER_METRICS_PORT" in env:
            env["PHIVAULT_WORKER_METRICS_PORT"] = str(self.worker_metrics_port)
        return env

    def log(self, service: str) -> Path:
        return self.root / f"{service}.log"

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + self.log(name).read_text(errors="replace")[-3000:]
            for name in APP_SERVICES
            if self.log(name).exists()
        )

    def pre_deploy(self) -> None:
        command = pre_deploy_command(self.template, "api")
        assert command == ["phivault", "migrate"]
        done = subprocess.run(
            command,
            env=self.envs["api"],
            capture_output=True,
            text=True,
            timeout=patience(),
            cwd=self.root,
            **self.identity,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        for name in APP_SERVICES:
            with self.log(name).open("wb") as log:
                self.processes[name] = subprocess.Popen(
                    start_command(self.template, name),
                    env=self.envs[name],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                    **self.identity,
                )

    def stop(self, name: str) -> int:
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=STOP_SECONDS)

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_ready(http: httpx.Client, deployment: Deployment) -> None:
    def ready() -> bool:
        for name, process in deployment.processes.items():
            assert process.poll() is None, f"{name} exited early\n{deployment.logs()}"
        with contextlib.suppress(httpx.TransportError):
            return http.get("/readyz").status_code == 200
        return False

    try:
        wait_until(ready, "/readyz green")
    except AssertionError as late:
        raise AssertionError(f"{late}\n{deployment.logs()}") from None


def token(secret: str, role: str, tenant_id: str | None = None) -> dict[str, str]:
    """A token as the deployment's identity provider would sign it (production refuses `phivault token`)."""
    claims: dict[str, Any] = {"sub": f"smoke-{role}", "role": role, "exp": int(time.time()) + 900}
    if tenant_id is not None:
        claims["tenant_id"] = tenant_id
    return {"Authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def processing_documents(owner_url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(owner_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM documents WHERE status IN ('queued', 'processing')"))
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.parametrize("owner", ["superuser", "createrole"])
def test_the_template_deploys_and_serves_in_production(
    owner: Literal["superuser", "createrole"], image_bin: Path
) -> None:
    root = Path(tempfile.mkdtemp(prefix="phivault-deploy-"))
    os.chmod(root, 0o755)  # noqa: S103 - the service user must reach its own directories below
    deployment: Deployment | None = None
    try:
        with tcp_postgres(root / "pg", owner) as owner_url, tcp_redis(root / "redis") as redis_url, moto_s3() as s3:
            references = {
                "postgres": {"DATABASE_URL": owner_url},
                "redis": {"REDIS_URL": redis_url},
                "bucket": {
                    "ENDPOINT": s3.endpoint_url,
                    "BUCKET": s3.bucket,
                    "ACCESS_KEY_ID": s3.access_key_id,
                    "SECRET_ACCESS_KEY": s3.secret_access_key,
                    "REGION": s3.region,
                },
            }
            variables = resolve_variables(load_template(), references)
            assert {v["PHIVAULT_ENV"] for v in variables.values()} == {"production"}
            deployment = Deployment(root, image_bin, variables, service_user())
            deployment.pre_deploy()
            deployment.start()
            secret = variables["api"]["PHIVAULT_JWT_SECRET"]
            metrics_token = variables["api"]["PHIVAULT_METRICS_TOKEN"]
            with httpx.Client(base_url=f"http://127.0.0.1:{deployment.api_port}", timeout=60) as http:
                wait_ready(http, deployment)

                platform = token(secret, "platform_admin")
                created = http.post("/v1/tenants", json={"name": "Smoke Clinic"}, headers=platform)
                assert created.status_code == 201, created.text
                tenant_id = created.json()["id"]
                member = token(secret, "member", tenant_id)
                accepted = http.post(
                    "/v1/documents", files={"file": ("discharge.txt", NOTE, "text/plain")}, headers=member
                )
                assert accepted.status_code == 202, accepted.text
                document_id = accepted.json()["id"]

                def settled() -> str | None:
                    status = http.get(f"/v1/documents/{document_id}", headers=member).json()["status"]
                    return None if status in ("queued", "processing") else str(status)

                assert wait_until(settled, "the document processed") == "ready", deployment.logs()

                found = http.post("/v1/search", json={"query": "pneumonia treated with antibiotics"}, headers=member)
                assert found.status_code == 200, found.text
                assert found.json()["results"][0]["document_id"] == document_id
                assert http.get(f"/v1/documents/{document_id}/content", headers=member).content == NOTE

                verified = http.get("/v1/audit-logs/verify", headers=token(secret, "admin", tenant_id))
                assert verified.status_code == 200, verified.text
                assert verified.json()["valid"] is True

                assert http.get("/metrics").status_code == 401
                assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
                scraped = http.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
                assert scraped.status_code == 200
                assert "phivault" in scraped.text
                assert document_id not in scraped.text
                assert tenant_id not in scraped.text
            worker_metrics = httpx.get(
                f"http://127.0.0.1:{deployment.worker_metrics_port}/metrics",
                headers={"Authorization": f"Bearer {metrics_token}"},
                timeout=30,
            )
            assert worker_metrics.status_code == 200

            objects = s3.objects()
            assert len(objects) == 1
            (stored,) = objects.values()
            assert NOTE not in stored
            assert b"pneumonia" not in stored

            for name in ("api", "beat", "worker"):
                code = deployment.stop(name)
                # uvicorn re-raises the SIGTERM it handled once it has shut down, so -15 is its clean exit.
                clean = (0, -signal.SIGTERM) if name == "api" else (0,)
                assert code in clean, f"{name} exited with {code}\n{deployment.logs()}"
            assert "Application shutdown complete" in deployment.log("api").read_text()
            assert processing_documents(owner_url) == 0
            assert "Traceback" not in deployment.logs()
    except AssertionError as failure:
        if deployment is None:
            raise
        raise AssertionError(f"{failure}\n{deployment.logs()}") from failure  # what each service said
    finally:
        if deployment is not None:
            deployment.kill_all()
        shutil.rmtree(root, ignore_errors=True)
