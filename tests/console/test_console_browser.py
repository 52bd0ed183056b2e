"""The console in a real browser: headless Chromium (Debian's package) driven through Playwright against
`phivault api` on 127.0.0.1 and a real worker.

One story, as a new user would live it: sign in with the development button as platform administrator,
create a tenant, sign in as its administrator, upload two files (one dropped, one picked), watch both reach
`ready`, search and find the expected one with the query's words marked, delete it and see it leave the
results, read the audit trail (filtered too), export it, verify the chain, sign out. A screenshot of each step
goes to `tests/artifacts/console/`. Throughout, every request the page makes must stay on the API's origin,
no token may appear in any address, and the page may raise no script error or Content-Security-Policy
violation.

Where `/usr/bin/chromium` is missing, the test fails at once with a message saying it did not run and why
(`.ci/run` installs it); it is never skipped, so CI cannot pass without it. Everything else still runs.
"""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from playwright.sync_api import ConsoleMessage, Locator, Page, Request, expect, sync_playwright

from core.runtime import Services
from core.settings import Settings
from tests.harness import Worker, worker_env
from tests.waiting import patience, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
WAIT_MS = patience() * 1000

CARDIOLOGY = (
    "Cardiology follow-up.\n\nThe patient has persistent atrial fibrillation with a rapid ventricular response. "
    "Anticoagulation with apixaban was started and rate control with metoprolol continues.\n"
)
DERMATOLOGY = (
    "Dermatology consult.\n\nPlaque psoriasis on both elbows and the scalp, treated with a topical corticosteroid "
    "and calcipotriol. Review in six weeks.\n"
)
QUERY = "atrial fibrillation anticoagulation"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the console browser test did not run: {CHROMIUM} is missing "
            "(install Debian's chromium package: apt-get install chromium; .ci/run does)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def console_url(chromium: Path, settings: Settings, services: Services, worker: Worker) -> Iterator[str]:
    """`phivault api` on a free port of 127.0.0.1, on the session's database and Redis, with the session's worker."""
    port = _free_port()
    log_path = settings.data_dir / "console-api.log"
    with log_path.open("ab") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=worker_env(settings, services),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if api.poll() is not None:
            raise AssertionError("phivault api exited:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, "phivault api ready for the console")
        yield base
    finally:
        api.terminate()
        try:
            api.wait(timeout=patience())
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


class Story:
    """The page, what it requested, and the tokens it held, checked at every step."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.tokens: list[str] = []
        self.step = 0
        page.on("request", self._request)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("console", self._console)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"CSP violation: {message.text}")

    def same_origin(self, url: str) -> bool:
        if url.startswith("data:"):
            return True  # inline, nothing fetched (the page's empty favicon)
        if url.startswith("blob:"):
            return url.startswith(f"blob:{self.base}/")  # a download the page built from a same-origin fetch
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" == self.base

    def remember_token(self) -> None:
        token = self.page.evaluate("() => sessionStorage.getItem('phivault.token')")
        assert isinstance(token, str)
        assert token.count(".") == 2
        self.tokens.append(token)

    def check(self) -> None:
        assert not self.problems, self.problems
        outside = [url for url in self.requests if not self.same_origin(url)]
        assert not outside, f"requests outside {self.base}: {outside}"
        for token in self.tokens:
            assert token not in self.page.url
            assert not [url for url in self.requests if token in url], "a token appeared in a request URL"

    def shot(self, name: str) -> None:
        self.check()
        self.step += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.step:02d}-{name}.png"), full_page=True)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()
        expect(self.page.get_by_role("tab", name=name)).to_have_attribute("aria-selected", "true", timeout=WAIT_MS)


def document_row(page: Page, filename: str) -> Locator:
    return page.locator("#documents-body tr", has=page.locator("th", has_text=filename))


def drop_file(page: Page, filename: str, content: str) -> None:
    """Drag and drop, as a person would from their desktop: a drop event carrying a DataTransfer with the file."""
    transfer = page.evaluate_handle(
        """([name, text]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, { type: "text/plain" }));
            return transfer;
        }""",
        [filename, content],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def audit_filter(page: Page, action: str) -> Locator:
    page.get_by_label("Action", exact=True).fill(action)
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#audit-body tr")
    expect(rows.first).to_have_attribute("data-action", action, timeout=WAIT_MS)
    return rows


def test_the_console_from_sign_in_to_a_verified_audit_chain(console_url: str, chromium: Path, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    picked = tmp_path / "dermatology.txt"
    picked.write_text(DERMATOLOGY)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            story = Story(page, console_url)

            page.goto(f"{console_url}/console")
            assert page.url == f"{console_url}/console/"
            expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
            story.shot("sign-in")

            # Quick start from an empty vault: platform administrator, a tenant, then that tenant's administrator.
            page.get_by_label("Role", exact=True).select_option("platform_admin")
            page.get_by_role("button", name="Get a development token").click()
            expect(page.locator("#identity-text")).to_contain_text("platform administrator", timeout=WAIT_MS)
            story.remember_token()
            page.get_by_label("New tenant's name").fill("Console Clinic")
            page.get_by_role("button", name="Create tenant").click()
            expect(page.locator("#tenant-create-message")).to_contain_text("Console Clinic created", timeout=WAIT_MS)
            tenant_row = page.locator("#tenants-body tr", has_text="Console Clinic")
            tenant_id = tenant_row.get_attribute("data-tenant-id")
            assert tenant_id
            page.get_by_role("button", name="Refresh").click()  # the list (GET /v1/tenants) loads, newest first
            expect(page.locator("#tenants-body tr").first).to_have_attribute("data-tenant-id", tenant_id)
            expect(page.locator("#tenants-message.error")).to_have_count(0)
            tenant_row.get_by_role("button", name="Suspend Console Clinic").click()
            expect(tenant_row.locator(".badge")).to_have_text("suspended", timeout=WAIT_MS)
            tenant_row.get_by_role("button", name="Resume Console Clinic").click()
            expect(tenant_row.locator(".badge")).to_have_text("active", timeout=WAIT_MS)
            story.shot("tenant-created")
            tenant_row.get_by_role("button", name="Sign in as administrator of Console Clinic").click()
            expect(page.locator("#identity-text")).to_contain_text(f"administrator · tenant {tenant_id}")
            story.remember_token()
            expect(page.get_by_role("tab", name="Documents")).to_have_attribute("aria-selected", "true")
            expect(page.get_by_role("tab", name="Tenants")).to_be_hidden()

            # Two uploads, one dropped and one picked; each has its own progress bar and outcome.
            drop_file(page, "cardiology.txt", CARDIOLOGY)
            page.locator("#file-input").set_input_files(picked)
            for filename in ("cardiology.txt", "dermatology.txt"):
                upload = page.locator(f'#uploads li[data-upload="{filename}"]')
                expect(upload).to_have_attribute("data-outcome", "uploaded", timeout=WAIT_MS)
                expect(upload.locator("progress")).to_have_attribute("value", "100")
            story.shot("uploaded")
            for filename in ("cardiology.txt", "dermatology.txt"):
                expect(document_row(page, filename)).to_have_attribute("data-status", "ready", timeout=WAIT_MS)
            story.shot("ready")

            # Search (reached from the keyboard): the expected document first, the query's words marked in its text.
            page.get_by_role("tab", name="Documents").focus()
            page.keyboard.press("ArrowRight")
            expect(page.get_by_role("tab", name="Search")).to_have_attribute("aria-selected", "true")
            expect(page.get_by_role("tab", name="Search")).to_be_focused()
            page.get_by_label("Search your documents").fill(QUERY)
            page.get_by_label("Meaning and words (hybrid)").check()
            page.get_by_role("button", name="Search", exact=True).click()
            first = page.locator("#search-results .result").first
            expect(first.locator(".result-file")).to_have_text("cardiology.txt", timeout=WAIT_MS)
            marks = {text.lower() for text in first.locator("mark").all_inner_texts()}
            assert {"atrial", "fibrillation", "anticoagulation"} <= marks, marks
            story.shot("search")

            # Delete the found document: it leaves the list and, searched again, the results.
            story.tab("Documents")
            document_row(page, "cardiology.txt").get_by_role("button", name="Delete cardiology.txt").click()
            expect(document_row(page, "cardiology.txt")).to_have_count(0, timeout=WAIT_MS)
            expect(page.get_by_role("button", name="Restore cardiology.txt")).to_be_visible()
            story.shot("deleted")
            story.tab("Search")
            page.get_by_role("button", name="Search", exact=True).click()
            results = page.locator("#search-results .result-file")
            expect(results.filter(has_text="dermatology.txt")).to_have_count(1, timeout=WAIT_MS)
            expect(results.filter(has_text="cardiology.txt")).to_have_count(0)
            story.shot("search-after-delete")

            # The audit trail shows what was done, filters by action, exports, and its chain verifies.
            story.tab("Audit")
            events = page.locator("#audit-body tr")
            expect(events.filter(has=page.locator("th", has_text="document.deleted"))).to_have_count(1, timeout=WAIT_MS)
            expect(events.filter(has=page.locator("th", has_text="search.query"))).to_have_count(2)
            story.shot("audit")
            assert audit_filter(page, "document.uploaded").count() == 2
            expect(audit_filter(page, "document.processed")).to_have_count(2)
            with page.expect_download() as exported:
                page.get_by_role("button", name="Export CSV").click()
            export_path = tmp_path / "audit.csv"
            exported.value.save_as(export_path)
            with export_path.open(newline="") as exported_file:
                assert [row["action"] for row in csv.DictReader(exported_file)] == ["document.processed"] * 2
            page.get_by_role("button", name="Verify chain").click()
            expect(page.locator("#audit-verdict")).to_contain_text("Chain intact", timeout=WAIT_MS)
            story.shot("chain-verified")

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
            assert page.evaluate("() => sessionStorage.getItem('phivault.token')") is None
            story.shot("signed-out")

            # A pasted token the server refuses signs the tab out again, saying so; a good one signs in.
            forged = jwt.encode(
                {"sub": "mallory", "role": "admin", "tenant_id": tenant_id, "exp": int(time.time()) + 3600},
                "not-the-server-secret-not-the-server-secret",
                algorithm="HS256",
            )
            story.tokens.append(forged)
            page.get_by_label("Bearer token").fill(forged)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.locator("#banner")).to_contain_text("did not accept your token", timeout=WAIT_MS)
            expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
            assert page.evaluate("() => sessionStorage.getItem('phivault.token')") is None
            story.shot("refused-token")
            page.get_by_label("Bearer token").fill(story.tokens[1])
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(document_row(page, "dermatology.txt")).to_have_attribute("data-status", "ready", timeout=WAIT_MS)
            expect(page.locator("#banner")).to_be_hidden()
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
            story.check()
        finally:
            browser.close()
