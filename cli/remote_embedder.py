"""`phivault search` embeds its query with the API running on this machine when one answers, so that one query
does not load a model (torch and its weights: seconds) in the command's own process.

The API's model is the one the tenant's chunks were embedded with, so its name and dimension (from its answer)
are what the search then looks for. Only the embedding crosses HTTP: the search itself (the tenant transaction,
row-level security, the audit row) still runs in the command.
"""

from __future__ import annotations

import httpx

from cli.context import cli_actor
from core.security import sign_token
from core.settings import Settings
from embeddings.base import QueryEmbedder

API_HOST = "127.0.0.1"
PROBE_TIMEOUT = httpx.Timeout(1.0)
EMBED_TIMEOUT = httpx.Timeout(30.0, connect=1.0)
TOKEN_SECONDS = 60


class RemoteEmbeddingFailed(Exception):
    """The API answered `/readyz` but did not embed the query (it refused the token, or failed)."""


class ApiQueryEmbedder:
    """The running API's model: `model_id` and `native_dim` are known once `embed_query` has returned, which is
    when `search.service.search` reads them."""

    def __init__(self, settings: Settings, base_url: str) -> None:
        self.settings = settings
        self.base_url = base_url
        self._model: tuple[str, int] | None = None

    @property
    def model_id(self) -> str:
        return self._answered()[0]

    @property
    def native_dim(self) -> int:
        return self._answered()[1]

    def _answered(self) -> tuple[str, int]:
        if self._model is None:
            raise RuntimeError("the API names its model in its answer: embed a query first")
        return self._model

    def embed_query(self, text: str) -> list[float]:
        # A platform_admin token that never leaves this process: sent once, to 127.0.0.1, and dropped. It is not
        # printed (which is why `phivault token`, and `mint_token`, refuse production and this does not).
        subject = str(cli_actor().actor_id)
        token = sign_token(
            self.settings, subject=subject, role="platform_admin", ttl_seconds=TOKEN_SECONDS, with_jti=False
        )
        try:
            response = httpx.post(
                f"{self.base_url}/v1/embeddings/query",
                json={"query": text},
                headers={"Authorization": f"Bearer {token}"},
                timeout=EMBED_TIMEOUT,
            )
        except httpx.TransportError as exc:
            raise RemoteEmbeddingFailed(type(exc).__name__) from None
        if response.status_code != 200:
            raise RemoteEmbeddingFailed(f"HTTP {response.status_code}")
        answer = response.json()
        self._model = (str(answer["model"]), int(answer["dims"]))
        return [float(x) for x in answer["vector"]]


def api_query_embedder(settings: Settings) -> QueryEmbedder | None:
    """The API on `127.0.0.1:{api_port}` as the query's embedder, or None (embed locally) when tokens are not
    HS256 with this process's secret (a JWKS is configured) or `/readyz` does not answer 200 within a second."""
    if settings.jwks_url:
        return None
    base_url = api_url(settings)
    try:
        ready = httpx.get(f"{base_url}/readyz", timeout=PROBE_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return None
    return ApiQueryEmbedder(settings, base_url) if ready else None


def api_url(settings: Settings) -> str:
    return f"http://{API_HOST}:{settings.api_port}"
