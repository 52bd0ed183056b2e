from __future__ import annotations

import pytest

from core.db import database_urls
from core.settings import Settings, SettingsError

STRONG = "x" * 40


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
    settings = Settings(
        env="production",
        jwt_secret=STRONG,
        app_db_password=STRONG,
        master_key=STRONG,
        database_url="postgresql://owner:pw@db/phivault",
        redis_url="redis://redis:6379/0",
    )
    assert settings.is_production


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
