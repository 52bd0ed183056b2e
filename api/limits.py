"""Request body limits enforced while the body streams in, before anything is spooled."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import send_error
from ingest.detect import RejectedUpload

# Room for the multipart boundaries, part headers and the `metadata` field.
MULTIPART_OVERHEAD = 256 * 1024


class UploadSizeLimitMiddleware:
    """Answers 413 for `POST /v1/documents` bodies over the upload limit.

    A body is counted as it arrives and cut off once it passes the limit; one whose declared
    Content-Length is over it is cut off before its first byte is read. Cut off, reading it raises
    `RejectedUpload("too_large")`, so the upload route, which reads the body only once the caller is
    authenticated and authorised, records the refusal (`document.rejected`) under that caller; an
    unauthenticated or refused caller gets its 401/403 (`auth.denied`, `access.denied`) as for any upload.
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
        declared_over = declared is not None and declared.isdigit() and int(declared) > self.max_body
        received = 0
        exceeded = False
        replaced = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded or declared_over:
                exceeded = True
                raise self._rejection()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # Never hand the app a cut-off body as if it were complete: a truncated multipart body can
                    # still hold a whole file part, which would be stored behind the 413. Reading the body fails
                    # instead; whatever the app answers is replaced by 413.
                    exceeded = True
                    raise self._rejection()
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

    def _rejection(self) -> RejectedUpload:
        return RejectedUpload("too_large", f"the file is larger than the limit of {self.max_upload_bytes} bytes")

    async def _too_large(self, scope: Scope, send: Send) -> None:
        rejection = self._rejection()
        await send_error(send, 413, rejection.code, rejection.message, (scope.get("state") or {}).get("request_id"))
