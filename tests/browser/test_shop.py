"""The shop end to end in Chromium: page -> tracker.js -> collector (API Gateway -> Lambda on LocalStack) -> Kafka.

Each test's browser has a user agent of its own, which the collector records with every record, so a test
asserts exactly which events landed: no more, no fewer, each with the fields the page gave it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from generator.synthetic import PRODUCTS
from pipeline.config import Config
from stack.deploy import SHOP_PACKAGE
from tests.browser.conftest import Shop, StaticSite, Visitor, save_screenshot
from tests.conftest import read_topic, record_json

pytestmark = pytest.mark.slow

PACKAGE_ID = SHOP_PACKAGE
#: POST /collect's URL, with or without the write key's query.
COLLECT = re.compile(r"/collect(\?|$)")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UTC_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # what Date.toISOString() gives
PRODUCT = {pid: {"product_id": pid, "product_name": name, "price": price} for pid, name, price in PRODUCTS}
LOG = "#event-log li"
ACCEPTED = f'{LOG}[data-status="accepted"]'
REJECTED = f'{LOG}[data-status="rejected"]'
#: A demo link with a campaign's parameters, as `make deploy` prints the shop's address.
CAMPAIGN = "?utm_source=readme&utm_medium=demo&utm_campaign=launch"


def landing(url: str) -> tuple[str, str, None, dict[str, Any]]:
    """The landing click: the full URL of the page opened, and no referrer (it was opened directly)."""
    return ("click", url, None, {})


def logged(page: Page) -> list[dict[str, str]]:
    """The live log's entries, oldest first."""
    entries = page.eval_on_selector_all(
        LOG,
        """items => items.map((item) => ({
            id: item.dataset.eventId, type: item.dataset.eventType, status: item.dataset.status,
            mark: item.querySelector(".mark").textContent, reason: item.querySelector(".reason").textContent,
        }))""",
    )
    return entries[::-1]


def landed(settings: Config, visitor: Visitor, expected: int, topic: str | None = None) -> list[dict[str, Any]]:
    """The records of this visitor's browser in a topic (the raw one by default)."""
    records = read_topic(
        settings.kafka.bootstrap_servers,
        topic or settings.kafka.raw_topic,
        {"user_agent": visitor.user_agent},
        expected,
        timeout_s=90,
    )
    return [record_json(record.value) for record in records]


def check_events(
    records: list[dict[str, Any]],
    ids: list[str],
    expected: list[tuple[str, str, str, dict[str, Any]]],
    visitor: Visitor,
    customer_id: str,
) -> None:
    """`records` are the events `ids`, once each, as `expected` (type, page, referrer, fields) describes them."""
    assert sorted(record["id"] for record in records) == sorted(ids)
    by_id = {record["id"]: record for record in records}
    timestamps = []
    for event_id, (kind, page, referrer, fields) in zip(ids, expected, strict=True):
        record = dict(by_id[event_id])
        meta = record.pop("collector")
        assert meta["user_agent"] == visitor.user_agent and meta["schema_version"] == "1-0-0"
        details = dict(record["event"])
        timestamps.append(details.pop("timestamp"))
        assert UTC_MILLIS.match(timestamps[-1]), timestamps[-1]
        assert {**record, "event": details} == {
            "id": event_id,
            "type": kind,
            "package_id": PACKAGE_ID,
            "event": {
                "user_agent": visitor.user_agent,
                "customer_id": customer_id,
                "page": page,
                "referrer": referrer,
                **fields,
            },
        }
    assert timestamps == sorted(timestamps)  # in the order they happened


def search(page: Page, text: str, results: str) -> None:
    box = page.get_by_role("searchbox", name="Search products")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("results")).to_have_text(results)


def test_shop_on_the_s3_website(shop: Shop, visitor: Visitor, config: Config) -> None:
    page = visitor.page
    url = f"{shop.website_url}/index.html{CAMPAIGN}"
    page.goto(url)
    expect(page.get_by_test_id("collector-url")).to_have_text(shop.api_url)  # config.js as deployed

    search(page, "laptop", "1 result for “laptop”")
    page.get_by_test_id("view-101").click()
    dialog = page.get_by_test_id("product-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Laptop Pro")
    expect(dialog).to_contain_text("$1,299.00")
    dialog.get_by_role("button", name="Buy Now").click()
    expect(dialog).to_be_hidden()
    toast = page.get_by_test_id("toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Order placed: Laptop Pro")

    page.evaluate("window.__shop.tracker.flush()")  # resolves once the collector answered
    expect(page.locator(ACCEPTED)).to_have_count(4)
    assert [entry["mark"] for entry in logged(page)] == ["✅"] * 4
    expect(page.get_by_test_id("event-count")).to_have_text("4")
    expect(page.get_by_test_id("accepted-count")).to_have_text("4")
    expect(page.get_by_test_id("queued-count")).to_have_text("0")
    page.get_by_role("searchbox", name="Search products").fill("")  # the whole catalogue again, no event
    expect(page.get_by_test_id("products").get_by_role("listitem")).to_have_count(len(PRODUCTS))
    save_screenshot(page, "shop-s3-website")
    customer_id = page.evaluate("window.__shop.tracker.customerId")
    assert UUID4.match(customer_id)
    ids = [entry["id"] for entry in logged(page)]

    page.reload()  # a second visit: the same anonymous customer
    expect(page.locator(ACCEPTED)).to_have_count(1)
    assert page.evaluate("window.__shop.tracker.customerId") == customer_id
    ids += [entry["id"] for entry in logged(page)]
    assert len(set(ids)) == 5 and all(UUID4.match(event_id) for event_id in ids)

    records = landed(config, visitor, expected=5)
    expected = [
        landing(url),
        ("view", "/products", "/home", {"query": "laptop"}),
        ("view", "/product/101", "/products", PRODUCT[101]),
        ("purchase", "/checkout", "/product/101", PRODUCT[101]),
        landing(url),
    ]
    check_events(records, ids, expected, visitor, customer_id)
    assert landed(config, visitor, 0, config.kafka.invalid_topic) == []
    assert visitor.errors == []


def test_the_s3_websites_policy_lets_the_page_send_to_the_collector_only(shop: Shop, visitor: Visitor) -> None:
    page = visitor.page
    page.goto(f"{shop.website_url}/index.html")
    expect(page.get_by_test_id("collector-url")).to_have_text(shop.api_url)
    outcome = page.evaluate(
        """async () => {
            const violations = [];
            document.addEventListener("securitypolicyviolation", (e) => violations.push(e.effectiveDirective));
            let fetched = "fetched";
            try { await fetch("https://elsewhere.example/collect", { method: "POST", body: "[]" }); }
            catch (error) { fetched = error.name; }
            await new Promise((resolve) => setTimeout(resolve, 200));
            return { fetched, violations, referrer: document.querySelector("meta[name=referrer]").content };
        }"""
    )
    assert outcome == {
        "fetched": "TypeError",
        "violations": ["connect-src"],
        "referrer": "strict-origin-when-cross-origin",
    }


def test_shop_on_a_local_static_server(shop: Shop, visitor: Visitor, config: Config) -> None:
    page = visitor.page
    url = f"{shop.local_url}/index.html"
    page.goto(url)
    expect(page.get_by_test_id("collector-url")).to_have_text(shop.api_url)

    search(page, "wireless", "1 result for “wireless”")
    expect(page.get_by_test_id("products").get_by_role("listitem")).to_have_count(1)
    page.get_by_test_id("buy-404").click()  # straight from the card
    expect(page.get_by_test_id("toast")).to_contain_text("Order placed: Wireless Headphones")
    # An event the collector refuses (a view of neither a product nor a search): ❌ with its reason.
    page.evaluate("window.__shop.track('view', {page: '/products'})")

    # No flush(): the tracker sends on its own, flushIntervalMs (2 s) after the first queued event.
    expect(page.locator(ACCEPTED)).to_have_count(3)
    expect(page.locator(REJECTED)).to_have_count(1)
    entries = logged(page)
    assert [entry["mark"] for entry in entries] == ["✅", "✅", "✅", "❌"]
    refused = entries[-1]
    assert refused["reason"]
    expect(page.get_by_test_id("rejected-count")).to_have_text("1")
    save_screenshot(page, "shop-local-rejected-event")
    customer_id = page.evaluate("window.__shop.tracker.customerId")

    records = landed(config, visitor, expected=3)
    expected = [
        landing(url),
        ("view", "/products", "/home", {"query": "wireless"}),
        ("purchase", "/checkout", "/product/404", PRODUCT[404]),
    ]
    check_events(records, [entry["id"] for entry in entries[:3]], expected, visitor, customer_id)
    [invalid] = landed(config, visitor, 1, config.kafka.invalid_topic)
    assert invalid["payload"]["id"] == refused["id"] and invalid["reason"] == refused["reason"]
    expect(page.get_by_test_id("toast")).to_be_hidden()  # the confirmation went away by itself
    assert visitor.errors == []


def test_closing_the_page_delivers_queued_events_by_beacon(shop: Shop, visitor: Visitor, config: Config) -> None:
    page = visitor.page
    posts = []
    page.on("request", lambda request: COLLECT.search(request.url) and posts.append(request.url))
    # A batch of 100 and a minute between flushes: everything stays queued until the page goes away.
    url = f"{shop.website_url}/index.html?batchSize=100&flushMs=60000"
    page.goto(url)
    search(page, "mouse", "1 result for “mouse”")
    page.get_by_test_id("view-606").click()
    page.get_by_test_id("dialog-close").click()
    page.get_by_test_id("buy-606").click()
    expect(page.get_by_test_id("queued-count")).to_have_text("4")
    ids = page.evaluate("window.__shop.tracker.pendingIds")
    assert ids == [entry["id"] for entry in logged(page)]
    assert [entry["mark"] for entry in logged(page)] == ["⏳"] * 4
    assert posts == []  # nothing sent yet
    customer_id = page.evaluate("window.__shop.tracker.customerId")
    assert visitor.errors == []

    page.close(run_before_unload=True)  # pagehide: the tracker hands the queue to navigator.sendBeacon

    records = landed(config, visitor, expected=4)
    expected = [
        landing(url),
        ("view", "/products", "/home", {"query": "mouse"}),
        ("view", "/product/606", "/products", PRODUCT[606]),
        ("purchase", "/checkout", "/product/606", PRODUCT[606]),
    ]
    check_events(records, ids, expected, visitor, customer_id)


def test_tracker_retries_failed_batches_in_order_but_never_a_4xx(shop: Shop, visitor: Visitor, config: Config) -> None:
    page = visitor.page
    cors = {"Access-Control-Allow-Origin": shop.local_url}
    batches: list[list[str]] = []  # the event ids of each POST /collect, in order
    answers = iter(["503", "network error", "collector", "400", "collector"])

    def answer(route: Route) -> None:
        batches.append([event["id"] for event in json.loads(route.request.post_data or "[]")])
        match next(answers):
            case "503":
                body = {"status": "unavailable", "errors": [], "message": "Kafka is away"}
                route.fulfill(status=503, headers={**cors, "Retry-After": "1"}, json=body)
            case "network error":
                route.abort("connectionreset")
            case "400":
                route.fulfill(status=400, headers=cors, json={"status": "rejected", "errors": [], "message": "no!"})
            case _:
                route.continue_()  # to the deployed collector

    page.route(COLLECT, answer)
    url = f"{shop.local_url}/index.html?batchSize=100&flushMs=60000"
    page.goto(url)
    search(page, "tablet", "1 result for “tablet”")
    first = page.evaluate("window.__shop.tracker.pendingIds")
    page.evaluate("window.__shop.tracker.flush()")  # resolves after a 503, a network error, then the collector
    expect(page.locator(ACCEPTED)).to_have_count(2)
    assert batches == [first, first, first]

    page.get_by_test_id("view-303").click()
    page.get_by_test_id("dialog-close").click()
    refused = page.evaluate("window.__shop.tracker.pendingIds")
    page.evaluate("window.__shop.tracker.flush()")  # a 400: answered, not retried
    expect(page.locator(REJECTED)).to_have_count(1)
    expect(page.locator(REJECTED)).to_contain_text("no!")
    page.get_by_test_id("buy-303").click()
    last = page.evaluate("window.__shop.tracker.pendingIds")
    page.evaluate("window.__shop.tracker.flush()")
    expect(page.locator(ACCEPTED)).to_have_count(3)
    assert batches == [first, first, first, refused, last]

    records = landed(config, visitor, expected=3)  # each once, though the first batch went three times
    expected = [
        landing(url),
        ("view", "/products", "/home", {"query": "tablet"}),
        ("purchase", "/checkout", "/product/303", PRODUCT[303]),
    ]
    customer_id = page.evaluate("window.__shop.tracker.customerId")
    check_events(records, first + last, expected, visitor, customer_id)
    assert visitor.errors == []


def test_the_shops_catalogue_is_the_generators(static_site: StaticSite, visitor: Visitor) -> None:
    page = visitor.page
    page.route(COLLECT, lambda route: route.abort())  # no collector needed here
    page.goto(f"{static_site.url}/index.html")
    # The module the page loaded (an import() of the same URL does not run it again).
    products = page.evaluate("import('./shop.js').then((shop) => shop.PRODUCTS)")
    assert [(p["id"], p["name"], p["price"]) for p in products] == list(PRODUCTS)
    assert all(p["emoji"] for p in products)

    expect(page.get_by_test_id("products").get_by_role("listitem")).to_have_count(len(PRODUCTS))
    for pid, name, price in PRODUCTS:
        card = page.get_by_test_id(f"product-{pid}")
        expect(card).to_contain_text(name)
        expect(card).to_contain_text(f"${price:,.2f}")
    # Accessible names: a labelled search box, real buttons.
    expect(page.get_by_role("searchbox", name="Search products")).to_be_visible()
    expect(page.get_by_role("button", name="View Details")).to_have_count(len(PRODUCTS))
    expect(page.get_by_role("button", name="Buy Now")).to_have_count(len(PRODUCTS))
    assert visitor.errors == []
