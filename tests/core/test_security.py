"""Token verification with RS256 keys published as a JWKS (served on 127.0.0.1), and HS256 minting."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from core.security import AuthError, TokenVerifier, mint_token
from core.settings import Settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "test-key-1"


def _jwks() -> bytes:
    public = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    public.update(kid=KID, use="sig", alg="RS256")
    return json.dumps({"keys": [public]}).encode()


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = _jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "dr-who", "role": "member", "tenant_id": str(uuid.uuid4()), "exp": now + 300, **extra}


@pytest.fixture
def verifier(jwks_url: str) -> TokenVerifier:
    return TokenVerifier(Settings(jwks_url=jwks_url, jwt_issuer="https://idp.test", jwt_audience="phivault"))


def test_rs256_token_from_the_jwks_is_accepted(verifier: TokenVerifier) -> None:
    claims = _claims(iss="https://idp.test", aud="phivault")
    token = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": KID})
    principal = verifier.verify(token)
    assert (principal.subject, principal.role, str(principal.tenant_id)) == ("dr-who", "member", claims["tenant_id"])


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda c: jwt.encode(c, OTHER_KEY, algorithm="RS256", headers={"kid": KID}), "invalid_token"),
        (
            lambda c: jwt.encode(c, "shared-secret-of-32-characters!!", algorithm="HS256", headers={"kid": KID}),
            "invalid_token",
        ),
        (
            lambda c: jwt.encode({**c, "iss": "https://evil.test"}, KEY, algorithm="RS256", headers={"kid": KID}),
            "invalid_token",
        ),
        (lambda c: jwt.encode({**c, "aud": "other"}, KEY, algorithm="RS256", headers={"kid": KID}), "invalid_token"),
        (
            lambda c: jwt.encode({**c, "exp": int(time.time()) - 120}, KEY, algorithm="RS256", headers={"kid": KID}),
            "expired_token",
        ),
        (lambda c: jwt.encode(c, KEY, algorithm="RS256", headers={"kid": "unknown"}), "invalid_token"),
    ],
    ids=["other-key", "hs256-confusion", "wrong-issuer", "wrong-audience", "expired", "unknown-kid"],
)
def test_bad_rs256_tokens_are_refused(verifier: TokenVerifier, make_token: Any, reason: str) -> None:
    token = make_token(_claims(iss="https://idp.test", aud="phivault"))
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert refused.value.reason == reason


def test_minted_tokens_verify_with_hs256() -> None:
    settings = Settings()
    tenant = uuid.uuid4()
    principal = TokenVerifier(settings).verify(mint_token(settings, subject="a", role="admin", tenant_id=tenant))
    assert (principal.subject, principal.role, principal.tenant_id) == ("a", "admin", tenant)


def test_subject_with_control_characters_is_refused() -> None:
    settings = Settings()
    token = mint_token(settings, subject="bad\x00sub", role="admin", tenant_id=uuid.uuid4())
    with pytest.raises(AuthError):
        TokenVerifier(settings).verify(token)
