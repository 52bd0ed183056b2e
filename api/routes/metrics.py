"""`GET /metrics`: Prometheus text format, behind the metrics token when one is configured.

Aggregates only, no tenant data, so a scrape is not audited as tenant access; a refused
scrape answers 401 in the standard error shape and is not audited either.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import APIError
from api.metrics import METRICS_PATH
from api.openapi import METRICS_BEARER, error_responses
from api.state import AppState
from core.metrics_auth import require_metrics_token
from core.security import AuthError

router = APIRouter(tags=["health"])


@router.get(
    METRICS_PATH,
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **error_responses(401),
    },
    openapi_extra=METRICS_BEARER,
    summary="Prometheus metrics",
    description=(
        "Process, request, document, queue and search metrics in the Prometheus text format: aggregates only, no "
        "tenant data. Send `PHIVAULT_METRICS_TOKEN` as a bearer token when one is configured (always in "
        "production); without one configured, no token is needed."
    ),
)
async def metrics(request: Request) -> Response:
    """Process, request, document, queue and search metrics."""
    state: AppState = request.app.state.phivault
    try:
        require_metrics_token(state.settings.metrics_token, request.headers.get("authorization"))
    except AuthError as exc:
        raise APIError(401, exc.reason, exc.message) from exc
    return Response(await state.metrics.render(state.database, state.redis), media_type=CONTENT_TYPE_LATEST)
