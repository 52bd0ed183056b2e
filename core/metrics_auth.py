"""The metrics token: one check for the API's `GET /metrics` and the worker's metrics port.

The token is compared as SHA-256 digests with `hmac.compare_digest`, so neither its
content nor its length shows in how long a refusal takes.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from core.security import AuthError


def require_metrics_token(expected: SecretStr | None, authorization: str | None) -> None:
    """Raise `AuthError` unless `authorization` is `Bearer <expected>` (nothing is required when unset)."""
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing_token", "a bearer token is required")
    given = hashlib.sha256(token.encode()).digest()
    wanted = hashlib.sha256(expected.get_secret_value().encode()).digest()
    if not hmac.compare_digest(given, wanted):
        raise AuthError("invalid_token", "the metrics token is not valid")
