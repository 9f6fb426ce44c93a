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
REFERRERS = ("https://google.com", "https://duckduckgo.com", "https://news.example", None)
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:141.0) Gecko/20100101 Firefox/141.0",
)
PACKAGE_ID = "acme.shop.generator"
ID_NAMESPACE = uuid.UUID("6f1d3c1e-4d52-4c6e-9a57-2f0f5d8f1a10")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _session(rng: random.Random, customer: str, start: datetime) -> Iterator[dict[str, Any]]:
    """One visit: a landing click, some searches and product views, maybe a purchase."""
    agent = rng.choice(USER_AGENTS)
    ip = f"198.51.100.{rng.randrange(1, 255)}"  # documentation range: never a real client
    moment = start
    page, referrer = "/home", rng.choice(REFERRERS)

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

    yield event("click", "/home")
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
    """`count` events in time order, about `invalid_share` of them deliberately invalid."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)  # the schema wants UTC timestamps
    events: list[dict[str, Any]] = []
    customer_number = 0
    while len(events) < count:
        customer_number += 1
        arrival = start + timedelta(seconds=rng.randrange(0, 60) + customer_number * 7)
        for event in _session(rng, f"customer-{seed}-{customer_number:05d}", arrival):
            if len(events) == count:
                break
            event_id = uuid.uuid5(ID_NAMESPACE, f"{seed}/{_iso(start)}/{len(events)}")
            event = {"id": str(event_id), **event}
            events.append(_break(rng, event) if rng.random() < invalid_share else event)
    return events
