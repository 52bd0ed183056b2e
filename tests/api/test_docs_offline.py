"""`/docs` and `/redoc` work on a network without internet: every asset they load is served by the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

ASSET_ATTRIBUTES = {("script", "src"), ("link", "href"), ("img", "src"), ("redoc", "spec-url")}
EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class _References(HTMLParser):
    """Every URL the page loads: asset attributes, and the schema URL Swagger UI is given in its inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls += [value for name, value in attrs if (tag, name) in ASSET_ATTRIBUTES and value]

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


@pytest.mark.parametrize(("page", "needs"), [("/docs", {".js", ".css", ".json"}), ("/redoc", {".js", ".json"})])
async def test_the_interactive_docs_load_only_same_origin_assets(
    client: httpx.AsyncClient, page: str, needs: set[str]
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?:|//[a-z]", html, re.IGNORECASE), "an absolute or CDN URL in the page"
    parser = _References()
    parser.feed(html)
    assert {url[url.rfind(".") :] for url in parser.urls} >= needs, parser.urls
    for url in parser.urls:
        assert url.startswith("/"), url  # a path on this origin
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        assert EXPECTED_TYPES[url[url.rfind(".") :]] in asset.headers["content-type"], url


async def test_swagger_ui_does_not_call_the_online_validator(client: httpx.AsyncClient) -> None:
    """Its default would show a badge fetched from validator.swagger.io, sending it the schema's URL."""
    assert '"validatorUrl": null' in (await client.get("/docs")).text
