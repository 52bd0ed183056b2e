"""The outermost layer of every request: request id, client address, one log line, and a last-resort 500.

* `X-Request-ID` is accepted when well-formed, generated otherwise, and returned on every response.
* The client address is the peer's, or, when the peer is a configured trusted proxy, the right-most
  `X-Forwarded-For` entry that is not itself a trusted proxy.
* One structured log line per request: request id, tenant id, route template, status, duration.
* An unexpected exception becomes a JSON 500 here and is logged by type only: exception messages
  from drivers can quote row data, and the server's own traceback logging would print them.
  A dependency outage that reaches this layer (from a middleware, outside the app's exception
  handlers) is the same 503 as inside (`api.errors.unavailable`), logged as a warning.
* A client that goes away mid-request (an upload cut off) is logged at info level as status 499,
  the convention for "client closed request": it is not a server error.
* Security headers on every response, here and nowhere else: nothing is cached, sniffed, framed
  or sent as a referrer; API responses forbid every resource (`default-src 'none'`), the console
  (`/console/`) may load its own files and call this origin only; HSTS when
  the deployment says it is behind TLS (`PHIVAULT_HSTS=true`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import log_unavailable, unavailable
from core.errors import send_error

log = logging.getLogger("phivault.request")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CLIENT_CLOSED_REQUEST = 499

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
CONSOLE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    b"form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
)
"""The console (`api.console`): its own files only, no inline script or style, requests to this origin only."""
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
INTERACTIVE_DOCS = ("/docs", "/redoc")
"""HTML pages that run scripts: they keep their own policy instead of the API's `default-src 'none'`."""
CONSOLE = "/console"


def security_headers(path: str, *, hsts: bool) -> list[tuple[bytes, bytes]]:
    headers = list(SECURITY_HEADERS)
    if path == CONSOLE or path.startswith(CONSOLE + "/"):
        headers.append(CONSOLE_CSP)
    elif not path.startswith(INTERACTIVE_DOCS):
        headers.append(API_CSP)
    if hsts:
        headers.append(HSTS)
    return headers


def accept_request_id(value: str | None) -> str:
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return str(uuid.uuid4())


def parse_networks(entries: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if peer is None:
        return None
    try:
        ipaddress.ip_address(peer)
    except ValueError:
        return None  # a peer that is no IP address (a test client's name, a socket path) is unknown
    if not forwarded_for or not is_trusted(peer):
        return peer
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not trusted
        if not is_trusted(hop):
            return hop
    return peer


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = (), *, hsts: bool = False) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(REQUEST_ID_HEADER)
        request_id = accept_request_id(raw_id.decode("latin-1") if raw_id else None)
        forwarded = headers.get(b"x-forwarded-for")
        peer = scope["client"][0] if scope.get("client") else None
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = client_address(peer, forwarded.decode("latin-1") if forwarded else None, self.trusted)
        status = 500
        started_response = False
        added = [(REQUEST_ID_HEADER, request_id.encode()), *security_headers(scope["path"], hsts=self.hsts)]
        replaced = {name for name, _ in added}

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message["headers"] = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                message["headers"].extend(added)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = CLIENT_CLOSED_REQUEST
            log.info("client disconnected", extra={"request_id": request_id})
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                log.error("unhandled error", extra={"request_id": request_id, "error_type": type(exc).__name__})
            else:
                log_unavailable(exc, request_id)
            if not started_response:
                if error is None:
                    await send_error(send_with_id, 500, "internal_error", "internal server error", request_id)
                else:
                    await send_error(
                        send_with_id, error.status_code, error.code, error.message, request_id, error.headers
                    )
        finally:
            route = scope.get("route")
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "tenant_id": state.get("tenant_id"),
                    "method": scope["method"],
                    "route": getattr(route, "path", "unmatched"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
