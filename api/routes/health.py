"""Liveness and readiness probes (no tenant data, no authentication)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.openapi import Liveness, Readiness
from api.state import AppState
from core.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0


@router.get(
    "/healthz",
    response_model=Liveness,
    summary="Liveness probe",
    description="Answers 200 while the process serves requests; it checks no dependency. No authentication.",
)
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


async def _database_check(state: AppState) -> str:
    async with state.database.engine.connect() as conn:
        version = await current_revision(conn)
    expected = head_revision()
    return "ok" if version == expected else f"migrations at {version}, expected {expected}"


async def _broker_check(state: AppState) -> str:
    await state.redis.ping()
    return "ok"


def _embedder_check(state: AppState) -> str:
    if not state.embedder.done():
        return "loading"
    if state.embedder.cancelled():
        return "unavailable (cancelled)"
    failure = state.embedder.exception()
    return "ok" if failure is None else f"unavailable ({type(failure).__name__})"


async def _run_check(check: Any, state: AppState) -> str:
    try:
        return str(await asyncio.wait_for(check(state), CHECK_TIMEOUT_SECONDS))
    except Exception as exc:  # a probe reports failure, it does not raise
        return f"unavailable ({type(exc).__name__})"


@router.get(
    "/readyz",
    responses={
        200: {"model": Readiness, "description": "every dependency is ready"},
        503: {"model": Readiness, "description": "a dependency is unavailable"},
    },
    summary="Readiness probe",
    description=(
        "200 when the database is reachable with its migrations at head, the broker (Redis) answers, and the "
        "embedding model is loaded and warm; otherwise 503 with the reason of each check. Route traffic to an "
        "instance only while it answers 200. No authentication."
    ),
)
async def readyz(request: Request) -> JSONResponse:
    """Database reachable with migrations at head, broker reachable, embedding model loaded and warm."""
    state: AppState = request.app.state.phivault
    database, broker = await asyncio.gather(_run_check(_database_check, state), _run_check(_broker_check, state))
    checks = {"database": database, "broker": broker, "embedder": _embedder_check(state)}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503, content={"status": "ready" if ready else "unavailable", "checks": checks}
    )
