"""The shop in a real browser: Debian's Chromium driven by Playwright, the shop served by the S3 website on the
suite's LocalStack and by a local static server, both talking to the collector deployed there.

Chromium comes from Debian (`make browser`), never from `playwright install`: no browser download is needed.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from pipeline.config import Config, variables
from stack.deploy import website_config
from tests.conftest import REPO

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The S3 website's host name resolves to 127.0.0.1 by public DNS; this machine has no DNS.
    "--host-resolver-rules=MAP *.localhost.localstack.cloud 127.0.0.1",
]
FRONTEND = REPO / "frontend"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# A shared machine: give the browser, the Lambda's cold start and Kafka time. Nothing asserts timings.
TIMEOUT_MS = 60_000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (Debian's chromium package)")
    # Not the stack's settings: Chromium's helpers outlive the stack's `make down`, which checks nothing of it is left.
    settings = {variable.name for _, variable in variables()}
    env = {k: v for k, v in os.environ.items() if k not in settings}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, env=env)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visitor:
    """One browser profile (its own localStorage) with a user agent no other test uses.

    The collector records the request's User-Agent in each record's "collector" metadata, so a test finds
    exactly its own events in Kafka with read_topic(..., {"user_agent": visitor.user_agent}, ...).
    """

    context: BrowserContext
    page: Page
    user_agent: str
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def visitor(browser: Browser) -> Iterator[Visitor]:
    probe = browser.new_page()
    default_agent = probe.evaluate("navigator.userAgent")
    probe.close()
    user_agent = f"{default_agent} acme-browser-test/{uuid.uuid4()}"
    context = browser.new_context(user_agent=user_agent, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    found = Visitor(context, page, user_agent)
    # Uncaught exceptions only: failed loads (the tests provoke some) are console errors too.
    page.on("pageerror", lambda error: found.errors.append(str(error)))
    try:
        yield found
    finally:
        context.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base class prints every request
        pass


@dataclass(frozen=True)
class StaticSite:
    root: Path
    url: str


@pytest.fixture(scope="session")
def static_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    """A copy of frontend/ served by Python's http.server on a free port (the `shop` fixture points its
    config.js at the deployed collector)."""
    root = tmp_path_factory.mktemp("shop-site")
    shutil.copytree(FRONTEND, root, dirs_exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="shop-static-server", daemon=True)
    thread.start()
    try:
        yield StaticSite(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Shop:
    website_url: str  # the S3 website on LocalStack
    local_url: str  # the static server
    api_url: str  # the collector behind API Gateway, which both pages send to
    write_key: str  # the shop's key, which both pages send


def website_origin(config: Config) -> str:
    from stack import localstack

    _, port = localstack.listen(config)
    return f"http://{config.stack.website_bucket}.s3-website.localhost.localstack.cloud:{port}"


def allow_origins(config: Config, function_name: str, origins: list[str]) -> None:
    """Add origins to the deployed function's CORS list if missing (their ports are known only now: LocalStack's and
    the static server's are free ports)."""
    from stack import localstack

    client = localstack.client("lambda", config)
    variables = client.get_function_configuration(FunctionName=function_name).get("Environment", {})
    variables = variables.get("Variables", {})
    default = ",".join(Config.defaults().collector.cors_allowed_origins)
    allowed = (variables.get("CORS_ALLOWED_ORIGINS") or default).split(",")
    missing = [origin for origin in origins if origin not in allowed and "*" not in allowed]
    if missing:
        variables = {**variables, "CORS_ALLOWED_ORIGINS": ",".join(allowed + missing)}
        client.update_function_configuration(FunctionName=function_name, Environment={"Variables": variables})
        localstack.wait_for_function(client, function_name)


@pytest.fixture(scope="module")
def shop(config: Config, deployment: dict[str, Any], static_site: StaticSite) -> Shop:
    """The collector and the shop `make run` deployed on the suite stack, allowing the pages' origins by CORS (the
    defaults stay allowed, for the other tests)."""
    origins = [website_origin(config), static_site.url]
    allow_origins(config, deployment["function_name"], origins)
    assert deployment["website_url"] == origins[0]
    # config.js as `make deploy` writes it for the website.
    write_key = deployment["write_keys"]["shop"]
    (static_site.root / "config.js").write_text(website_config(deployment["api_url"], write_key))
    return Shop(
        website_url=deployment["website_url"],
        local_url=static_site.url,
        api_url=deployment["api_url"],
        write_key=write_key,
    )


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under tests/browser/artifacts/ (gitignored), its path printed for the log."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
