"""The browser console: static files (`api/console/`) served at `/console/`, same origin as the API.

The page is plain HTML, CSS and JavaScript modules, with no build step; its Content-Security-Policy is set
with every other security header in `api.middleware.security_headers`. In development the sign-in button's
token endpoint (`api.routes.dev`) is registered too; in production it does not exist.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from api.routes import dev
from core.settings import Settings

CONSOLE_PATH = "/console"
CONSOLE_FILES = Path(__file__).with_name("console")


async def _to_console() -> RedirectResponse:
    return RedirectResponse(f"{CONSOLE_PATH}/")


def install_console(app: FastAPI, settings: Settings) -> None:
    app.add_api_route(CONSOLE_PATH, _to_console, include_in_schema=False)
    app.mount(CONSOLE_PATH, StaticFiles(directory=CONSOLE_FILES, html=True), name="console")
    if not settings.is_production:
        app.include_router(dev.router)
