"""The error contract every refusal must keep: `{"error": {"code", "message", "request_id"}}`, never a 500."""

from __future__ import annotations

import httpx


def assert_error(response: httpx.Response, status_code: int, code: str | None = None) -> dict[str, str]:
    """Assert the exact status, the exact JSON shape and (when given) the exact code; return the error object.

    The body's `request_id` must be the one the response's `X-Request-ID` header carries.
    """
    assert response.status_code == status_code, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) == {"code", "message", "request_id"}, body
    assert isinstance(error["code"], str), body
    assert error["code"], body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["request_id"], str), body
    assert error["request_id"] == response.headers["x-request-id"], (body, response.headers)
    if code is not None:
        assert error["code"] == code, body
    return error
