from __future__ import annotations

from typing import Any

import pytest

from core.db import database_urls
from core.settings import Settings, SettingsError

STRONG = "x" * 40

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "jwt_secret": STRONG,
    "app_db_password": STRONG,
    "master_key": STRONG,
    "metrics_token": STRONG,
    "database_url": "postgresql://owner:pw@db/phivault?sslmode=require",
    "redis_url": "redis://redis:6379/0",
    "storage": "s3",
    "s3_bucket": "phivault",
}
"""A production configuration that starts: each refusal test below breaks exactly one thing."""


def test_development_defaults_start() -> None:
    settings = Settings(env="development", database_url=None, redis_url=None)
    assert settings.max_upload_bytes == 50 * 1024 * 1024


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(env="production", database_url=None, redis_url=None)
    message = str(refused.value)
    for variable in ("PHIVAULT_JWT_SECRET", "PHIVAULT_APP_DB_PASSWORD", "PHIVAULT_MASTER_KEY", "DATABASE_URL"):
        assert variable in message


def test_production_refuses_a_short_jwt_secret() -> None:
    with pytest.raises(SettingsError, match="PHIVAULT_JWT_SECRET"):
        Settings(
            env="production",
            jwt_secret="short",
            app_db_password=STRONG,
            master_key=STRONG,
            database_url="postgresql://owner:pw@db/phivault",
            redis_url="redis://redis:6379/0",
        )


def test_production_starts_with_real_secrets() -> None:
    settings = Settings(**PRODUCTION)
    assert settings.is_production
    assert settings.listen_host == "0.0.0.0"  # noqa: S104 - the container's API listens on every interface
    assert settings.effective_s3_encryption == "envelope"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"storage": "local"}, "PHIVAULT_ALLOW_LOCAL_STORAGE"),
        ({"database_url": "postgresql://owner:pw@db/phivault"}, "DATABASE_URL has no sslmode"),
        ({"database_url": "postgresql://owner:pw@db/phivault?sslmode=prefer"}, "DATABASE_URL has no sslmode"),
        ({"app_database_url": "postgresql://phivault_app:pw@db/phivault"}, "PHIVAULT_APP_DATABASE_URL has no"),
        ({"metrics_token": None}, "PHIVAULT_METRICS_TOKEN"),
        ({"metrics_token": "short"}, "PHIVAULT_METRICS_TOKEN"),
        ({"master_key": None}, "PHIVAULT_MASTER_KEY"),
        ({"jwt_secret": "phivault-development-secret-change-me"}, "PHIVAULT_JWT_SECRET"),
        ({"app_db_password": "phivault-app-development"}, "PHIVAULT_APP_DB_PASSWORD"),
        ({"redis_url": None}, "REDIS_URL"),
    ],
)
def test_production_refuses_each_unsafe_setting_by_name(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match="refusing to start in production") as refused:
        Settings(**{**PRODUCTION, **change})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    "change",
    [
        {"storage": "local", "allow_local_storage": True},
        {"database_url": "postgresql://owner:pw@db.railway.internal/railway", "db_allow_plaintext": True},
        {"database_url": "postgresql://owner:pw@db/phivault?sslmode=verify-full"},
    ],
)
def test_production_accepts_each_explicit_exception(change: dict[str, Any]) -> None:
    assert Settings(**{**PRODUCTION, **change}).is_production


def test_port_wins_over_the_api_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHIVAULT_API_PORT", "9000")
    assert Settings(database_url=None, redis_url=None).api_port == 9000
    monkeypatch.setenv("PORT", "8123")
    settings = Settings(database_url=None, redis_url=None)
    assert settings.api_port == 8123
    assert settings.listen_host == "127.0.0.1"


def test_s3_encryption_defaults_to_sse_kms_only_on_aws_with_kms_keys() -> None:
    def mode(**values: Any) -> str:
        settings = Settings(database_url=None, redis_url=None, storage="s3", s3_bucket="b", **values)
        return settings.effective_s3_encryption

    assert mode(key_provider="aws-kms") == "sse-kms"
    assert mode(key_provider="aws-kms", s3_endpoint_url="https://s3.eu-west-1.amazonaws.com") == "sse-kms"
    assert mode(key_provider="aws-kms", s3_endpoint_url="https://bucket.railway.example") == "envelope"
    assert mode(key_provider="local") == "envelope"
    assert mode(key_provider="aws-kms", s3_encryption="envelope") == "envelope"
    with pytest.raises(SettingsError, match="PHIVAULT_KEY_PROVIDER=aws-kms"):
        mode(key_provider="local", s3_encryption="sse-kms")


def test_app_url_is_derived_from_the_owner_url() -> None:
    settings = Settings(app_db_password="s3cret", database_url=None, redis_url=None)
    urls = database_urls(settings, "postgresql://owner:pw@db.internal:5432/phivault?sslmode=require")
    assert urls.owner.username == "owner"
    assert urls.app.username == "phivault_app"
    assert urls.app.password == "s3cret"
    assert urls.app.host == "db.internal"
    assert urls.app.database == "phivault"
    assert urls.app.drivername == "postgresql+asyncpg"


def test_explicit_app_url_wins() -> None:
    settings = Settings(
        app_database_url="postgresql://phivault_app:pw@pooler:6432/phivault", database_url=None, redis_url=None
    )
    assert database_urls(settings, "postgresql://owner:pw@db/phivault").app.host == "pooler"


def test_a_malformed_trusted_proxy_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="PHIVAULT_TRUSTED_PROXIES"):
        Settings(trusted_proxies=["10.0.0.0/8", "not-an-address"], database_url=None, redis_url=None)
    assert Settings(trusted_proxies=["10.0.0.0/8", "::1"], database_url=None, redis_url=None).trusted_proxies


def test_production_with_a_jwks_needs_an_audience() -> None:
    with pytest.raises(SettingsError, match="PHIVAULT_JWT_AUDIENCE"):
        Settings(
            env="production",
            jwks_url="https://idp.example/jwks.json",
            app_db_password=STRONG,
            master_key=STRONG,
            database_url="postgresql://owner:pw@db/phivault",
            redis_url="redis://redis:6379/0",
        )
