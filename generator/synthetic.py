"""Realistic, reproducible shop traffic: customers arrive, browse, search, view and sometimes buy.

The same seed and start time give the same events, ids included; ids change with the start time, so a
second run adds new events instead of duplicates the lake would drop.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

#: The demo shop's catalogue (the seed's six products): id, name, price.
PRODUCTS: tuple[tuple[int, str, float], ...] = (
    (101, "Laptop Pro", 1299.0),
    (202, "Smartphone X", 899.0),
    (303, "Tablet Air", 599.0),
    (404, "Wireless Headphones", 199.0),
    (505, "Smart Watch", 399.0),
    (606, "Gaming Mouse", 79.0),
)
QUERIES = ("laptop", "phone", "tablet", "headphones", "watch", "mouse", "gaming", "wireless", "gift ideas")
#: Where visits come from: (weight, referrer, landing page's campaign query), as the lake's enrichment classifies
#: them (search, social, email, direct, other).
ARRIVALS: tuple[tuple[int, str | None, str], ...] = (
    (30, "https://www.google.com/search?q=laptop", ""),
    (8, "https://duckduckgo.com/", ""),
    (5, "https://www.bing.com/search?q=smart+watch", ""),
    (6, "https://www.google.com/", "?utm_source=google&utm_medium=cpc&utm_campaign=winter-sale&gclid=Cj0KCQ"),
    (8, "https://t.co/x1y2z3", "?utm_source=twitter&utm_medium=social&utm_campaign=launch"),
    (5, "https://m.facebook.com/", "?utm_source=facebook&utm_medium=social&utm_campaign=launch&fbclid=IwAR0"),
    (8, None, "?utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale&utm_content=hero"),
    (5, "https://news.example/best-gadgets", ""),
    (25, None, ""),
)
_BLINK = "AppleWebKit/537.36 (KHTML, like Gecko)"
_WEBKIT = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
#: (weight, user agent): desktop and mobile browsers, tablets, and a few percent of crawlers.
USER_AGENTS: tuple[tuple[int, str], ...] = (
    (22, f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Chrome/141.0 Safari/537.36"),
    (8, f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_BLINK} Chrome/141.0 Safari/537.36 Edg/141.0"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:144.0) Gecko/20100101 Firefox/144.0"),
    (9, f"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) {_WEBKIT} Version/18.1 Safari/605.1.15"),
    (4, f"Mozilla/5.0 (X11; Linux x86_64) {_BLINK} Chrome/141.0 Safari/537.36"),
    (20, f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) {_WEBKIT} Version/18.1 Mobile/15E148 Safari/604.1"),
    (16, f"Mozilla/5.0 (Linux; Android 15; Pixel 9) {_BLINK} Chrome/141.0 Mobile Safari/537.36"),
    (5, f"Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) {_WEBKIT} Version/18.1 Mobile/15E148 Safari/604.1"),
    (3, f"Mozilla/5.0 (Linux; Android 14; SM-X710) {_BLINK} Chrome/141.0 Safari/537.36"),
    (2, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (1, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (1, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
)
#: The share of visits that end on their landing page (web shops see 30-50 %).
BOUNCE_SHARE = 0.35
#: The share of customers who come back for another visit, after more than half an hour.
RETURNING_SHARE = 0.25
PACKAGE_ID = "acme.shop.generator"
ID_NAMESPACE = uuid.UUID("6f1d3c1e-4d52-4c6e-9a57-2f0f5d8f1a10")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _weighted(rng: random.Random, choices: tuple[tuple[int, Any], ...] | tuple[tuple[int, Any, Any], ...]) -> Any:
    return rng.choices(choices, weights=[c[0] for c in choices])[0]


def _session(rng: random.Random, customer: str, start: datetime, agent: str, ip: str) -> Iterator[dict[str, Any]]:
    """One visit: a landing click (from a search, a social site, a newsletter or nowhere, maybe with a campaign's
    parameters), and unless it bounces, some searches and product views, maybe a purchase."""
    _, referrer, campaign = _weighted(rng, ARRIVALS)
    moment = start
    page = "/home"

    def event(kind: str, new_page: str, **fields: Any) -> dict[str, Any]:
        nonlocal moment, page, referrer
        moment += timedelta(milliseconds=rng.randrange(400, 15000))
        # A click lands from outside (its referrer stays); other events come from the previous page.
        if kind != "click":
            referrer = page
        page = new_page
        details = {
            "user_agent": agent,
            "ip": ip,
            "customer_id": customer,
            "timestamp": _iso(moment),
            "page": new_page,
            "referrer": referrer,
            **fields,
        }
        return {"type": kind, "package_id": PACKAGE_ID, "event": details}

    yield event("click", "/home" + campaign)
    if rng.random() < BOUNCE_SHARE:
        return
    for _ in range(rng.randrange(1, 6)):
        if rng.random() < 0.3:
            yield event("view", "/products", query=rng.choice(QUERIES))
        product_id, name, price = rng.choice(PRODUCTS)
        yield event("view", f"/product/{product_id}", product_id=product_id, product_name=name, price=price)
        if rng.random() < 0.15:
            yield event("purchase", "/checkout", product_id=product_id, product_name=name, price=price)


def _break(rng: random.Random, event: dict[str, Any]) -> dict[str, Any]:
    """Make a valid event invalid in one of the ways real clients do."""
    broken = {**event, "event": dict(event["event"])}
    match rng.randrange(5):
        case 0:
            broken["type"] = "hover"
        case 1:
            del broken["event"]["customer_id"]
        case 2:
            broken["event"]["timestamp"] = "yesterday at noon"
        case 3:
            broken["type"] = "purchase"
            broken["event"].pop("price", None)
        case _:
            broken["event"]["price"] = "free"
    return broken


def synthetic_events(
    count: int, seed: int = 0, invalid_share: float = 0.0, start: datetime | None = None
) -> list[dict[str, Any]]:
    """`count` events, about `invalid_share` of them deliberately invalid, of visits from `start` on; without a
    start, of visits in the hours before now and never after (the last event is now's)."""
    if start is None:
        now = datetime.now(UTC)
        _, last = _events(count, seed, invalid_share, now)
        start = now - (last - now)
    elif start.tzinfo is None:
        start = start.replace(tzinfo=UTC)  # the schema wants UTC timestamps
    return _events(count, seed, invalid_share, start)[0]


def _events(count: int, seed: int, invalid_share: float, start: datetime) -> tuple[list[dict[str, Any]], datetime]:
    """The events of visits from `start` (the same for the same arguments), and the latest moment among them."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    last = start
    customer_number = 0
    while len(events) < count:
        customer_number += 1
        arrival = start + timedelta(seconds=rng.randrange(0, 60) + customer_number * 7)
        customer = f"customer-{seed}-{customer_number:05d}"
        agent = _weighted(rng, USER_AGENTS)[1]
        ip = f"198.51.100.{rng.randrange(1, 255)}"  # documentation range: never a real client
        visits = [arrival]
        if rng.random() < RETURNING_SHARE:
            visits.append(arrival + timedelta(minutes=rng.randrange(35, 120)))
        for visit in visits:
            for event in _session(rng, customer, visit, agent, ip):
                if len(events) == count:
                    break
                last = max(last, datetime.fromisoformat(event["event"]["timestamp"]))
                event_id = uuid.uuid5(ID_NAMESPACE, f"{seed}/{_iso(start)}/{len(events)}")
                event = {"id": str(event_id), **event}
                events.append(_break(rng, event) if rng.random() < invalid_share else event)
    return events, last
