"""Request body limits enforced while the body streams in, before anything is spooled."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import send_error

# Room for the multipart boundaries, part headers and the `metadata` field.
MULTIPART_OVERHEAD = 256 * 1024


class UploadSizeLimitMiddleware:
    """Answers 413 for `POST /v1/documents` bodies over the upload limit.

    A declared Content-Length over the limit is refused before reading; a body
    without one is counted as it arrives and cut off once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body = max_upload_bytes + MULTIPART_OVERHEAD
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/documents":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._too_large(scope, send)
            return
        received = 0
        exceeded = False
        replaced = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # Never hand the app a cut-off body as if it were complete: a truncated multipart body can
                    # still hold a whole file part, which would be stored behind the 413. To the app the client
                    # has gone away, so reading the body fails; whatever it answers is replaced by 413.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal replaced, started
            if exceeded:
                if not replaced and not started:
                    replaced = True
                    await self._too_large(scope, send)
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not replaced and not started:
            await self._too_large(scope, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        message = f"the file is larger than the limit of {self.max_upload_bytes} bytes"
        await send_error(send, 413, "too_large", message, (scope.get("state") or {}).get("request_id"))
