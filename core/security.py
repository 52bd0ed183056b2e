"""Bearer tokens: verification (PyJWT) and, in development only, minting.

HS256 with `PHIVAULT_JWT_SECRET` by default; RS256 against `PHIVAULT_JWKS_URL`
when configured. The accepted algorithm comes from configuration, never from the
token, so `alg: none` and HS/RS confusion are rejected.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, cast

import jwt

from core.db import SYSTEM_TENANT_ID
from core.settings import Settings

Role = Literal["platform_admin", "admin", "member", "viewer"]
ROLES: tuple[Role, ...] = ("platform_admin", "admin", "member", "viewer")
TENANT_ROLES: tuple[Role, ...] = ("admin", "member", "viewer")

LEEWAY_SECONDS = 30


class AuthError(Exception):
    """A missing or unacceptable token. `reason` is safe to log and audit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says: subject, role and (unless platform admin) tenant."""

    subject: str
    role: Role
    tenant_id: uuid.UUID | None
    jti: str | None = None
    """The token's id when it carries one: such a token can be revoked (`POST /v1/tokens/revoke`)."""

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "platform_admin"


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._jwks: jwt.PyJWKClient | None = None
        self._secret = settings.jwt_secret.get_secret_value()
        if settings.jwks_url:
            self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)
            self._algorithms = ["RS256"]
        else:
            self._algorithms = ["HS256"]

    def verify(self, token: str) -> Principal:
        try:
            key: Any = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._secret
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "sub", "role"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("expired_token", "the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("invalid_token", "the token is not valid yet") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise AuthError("invalid_token", "the token is invalid") from exc
        return _principal(claims)


def _principal(claims: dict[str, Any]) -> Principal:
    subject, role, raw_tenant = claims.get("sub"), claims.get("role"), claims.get("tenant_id")
    if not isinstance(subject, str) or not subject or len(subject) > 255 or not subject.isprintable():
        raise AuthError("invalid_token", "the token's sub claim is invalid")
    jti = claims.get("jti")
    if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > 255 or not jti.isprintable()):
        raise AuthError("invalid_token", "the token's jti claim is invalid")
    if role not in ROLES:
        raise AuthError("invalid_token", "the token's role claim is invalid")
    if role == "platform_admin":
        if raw_tenant is not None:
            raise AuthError("invalid_token", "platform_admin tokens carry no tenant_id")
        return Principal(subject=subject, role="platform_admin", tenant_id=None, jti=jti)
    try:
        tenant_id = uuid.UUID(str(raw_tenant))
    except ValueError as exc:
        raise AuthError("invalid_token", "the token's tenant_id claim is missing or not a uuid") from exc
    if tenant_id == SYSTEM_TENANT_ID:
        raise AuthError("invalid_token", "the system tenant cannot be used by clients")
    return Principal(subject=subject, role=cast(Role, role), tenant_id=tenant_id, jti=jti)


def mint_token(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    tenant_id: uuid.UUID | None = None,
    ttl_seconds: int = 3600,
    with_jti: bool = True,
) -> str:
    """An HS256 token for development and tests, with a fresh `jti` (so it can be revoked) unless `with_jti` is
    false (a token as an identity provider that sets none issues it). Refused in production."""
    if settings.is_production:
        raise RuntimeError("tokens are minted by your identity provider in production")
    return sign_token(
        settings, subject=subject, role=role, tenant_id=tenant_id, ttl_seconds=ttl_seconds, with_jti=with_jti
    )


def sign_token(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    tenant_id: uuid.UUID | None = None,
    ttl_seconds: int = 3600,
    with_jti: bool = True,
) -> str:
    """`mint_token` without its production refusal, for a caller that keeps the token in its own process and
    never shows it (`cli.remote_embedder`)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if with_jti:
        claims["jti"] = str(uuid.uuid4())
    if tenant_id is not None:
        claims["tenant_id"] = str(tenant_id)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
