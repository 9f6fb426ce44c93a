"""The tracker remembers: with the collector unreachable, a person browses and reloads twice; when it is back,
the next page view sends everything the earlier ones queued (beacons included), and each event id lands in
the lake once (read with delta-rs, not Spark)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from playwright.sync_api import Route, expect

from lake.reader import LAKE_PREFIX
from stack.deploy import website_config
from stack.process import free_port
from tests.browser.conftest import Shop, Visitor, save_screenshot
from tests.browser.test_shop import search
from tests.conftest import lake_ids

pytestmark = pytest.mark.slow

QUEUE_KEY = "acme.clickstream.queue"


def test_events_queued_while_the_collector_is_away_land_once_after_reloads(
    shop: Shop, visitor: Visitor, lake_writer: None
) -> None:
    page = visitor.page
    # Nothing listens there: fetches and beacons alike fail to connect, as with a collector that is down.
    collector = {"url": f"http://127.0.0.1:{free_port()}"}

    def config(route: Route) -> None:
        body = website_config(collector["url"], shop.write_key)
        route.fulfill(status=200, headers={"Content-Type": "text/javascript", "Cache-Control": "no-store"}, body=body)

    visitor.context.route("**/config.js", config)
    tracked: set[str] = set()

    def browse_then_leave(steps: list[str]) -> None:
        for step in steps:
            if step == "search":
                search(page, "mouse", "1 result for “mouse”")
            else:
                page.get_by_test_id(step).click()
                if step.startswith("view-"):
                    page.get_by_test_id("dialog-close").click()
        tracked.update(page.evaluate("window.__shop.tracker.pendingIds"))

    page.goto(f"{shop.local_url}/index.html?batchSize=2&flushMs=200")
    browse_then_leave(["search", "view-606", "buy-606"])
    page.reload()  # pagehide: the queue goes to a beacon, which fails too; it stays stored
    browse_then_leave(["view-101"])
    page.reload()
    browse_then_leave(["buy-202"])
    stored = json.loads(page.evaluate(f"localStorage.getItem('{QUEUE_KEY}')"))
    assert {event["id"] for event in stored} == tracked
    assert len(tracked) >= 8  # three landing clicks, a search, two views, two purchases

    collector["url"] = shop.api_url  # the collector is back
    page.reload()
    tracked.update(page.evaluate("window.__shop.tracker.pendingIds"))
    expect(page.get_by_test_id("queued-count")).to_have_text("0")
    assert json.loads(page.evaluate(f"localStorage.getItem('{QUEUE_KEY}')")) == []
    save_screenshot(page, "tracker-after-outage")

    assert lake_ids(LAKE_PREFIX, tracked, timeout_s=180) == Counter(dict.fromkeys(tracked, 1))
    assert visitor.errors == []
