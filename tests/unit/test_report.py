"""The lake report: its figures checked against the same numbers computed independently in Python, its HTML."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import enrichment
from chalicelib.validation import schema_violation
from generator.synthetic import PRODUCTS, synthetic_events
from lake import figures, page, report
from tests.unit.report_lake import (
    REASONS,
    START,
    invalid_table,
    iso_of,
    lake_table,
    moment_of,
    sessions_table,
    visits,
)


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    sample = synthetic_events(800, seed=11, start=START)

    def again(event: dict[str, Any], after: timedelta, **details: Any) -> dict[str, Any]:
        moment = iso_of(moment_of(event["event"]["timestamp"]) + after)
        return {**event, "id": f"{event['id']}+{after}", "event": {**event["event"], "timestamp": moment, **details}}

    first, last = sample[0], sample[-1]
    search = next(e for e in sample if e["event"].get("query") == "laptop")
    return [
        *sample,
        # The first customer comes back two hours later, the last one 31 minutes later: new sessions each...
        again(first, timedelta(hours=2)),
        again(last, timedelta(minutes=31)),
        # ...and after 29 minutes of silence, still the same session.
        again(last, timedelta(minutes=60)),
        # A search typed differently; a click that carries a query is no search result view.
        again(search, timedelta(seconds=1), query="  Laptop "),
        {**search, "id": "click-with-query", "type": "click", "event": {**search["event"], "query": "mouse"}},
    ]


@pytest.fixture(scope="module")
def broken() -> list[dict[str, Any]]:
    """Invalid events broken in the generator's ways, as the collector rejects them."""
    return synthetic_events(300, seed=5, invalid_share=1.0, start=START)


@pytest.fixture(scope="module")
def fig(events: list[dict[str, Any]]) -> dict[str, Any]:
    return figures.figures(lake_table(events), invalid_table([(r, s) for r, s, _ in REASONS]), sessions_table(events))


def humans(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if not enrichment.agent(e["event"]["user_agent"]).is_bot]


def test_totals(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Bots left out, as by default (freshness counts them: they were ingested too)."""
    moments = [moment_of(e["event"]["timestamp"]) for e in events]
    ingested = max(m + timedelta(seconds=3 + i % 5) for i, m in enumerate(moments))
    events = humans(events)
    moments = [moment_of(e["event"]["timestamp"]) for e in events]
    totals = fig["totals"]
    purchases = [e for e in events if e["type"] == "purchase"]
    assert not fig["empty"]
    assert totals["events"] == len(events)
    assert totals["by_type"] == dict(Counter(e["type"] for e in events))
    assert totals["customers"] == len({e["event"]["customer_id"] for e in events})
    assert totals["purchases"] == len(purchases)
    assert totals["product_views"] == sum(1 for e in events if e["type"] == "view" and e["event"].get("product_id"))
    assert totals["revenue"] == round(sum(e["event"]["price"] for e in purchases), 2)
    assert totals["invalid_events"] == sum(1 for _, status, _ in REASONS if status is None)
    assert totals["refused_requests"] == sum(1 for _, status, _ in REASONS if status is not None)
    assert totals["first_event"] == iso_of(min(moments))
    assert totals["last_event"] == iso_of(max(moments))
    assert totals["freshness"] == iso_of(ingested)


def test_session_figures_come_from_the_sessions_table(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    sessions = [v for v in visits(events) if not v["is_bot"]]
    assert len(sessions) >= len({e["event"]["customer_id"] for e in humans(events)}) + 2  # the comebacks
    totals = fig["totals"]
    assert totals["sessions"] == len(sessions)
    assert totals["bounced_sessions"] == sum(1 for v in sessions if v["events"] == 1)
    assert totals["converted_sessions"] == sum(1 for v in sessions if v["converted"])
    # Conversion per source / medium: the campaign's tags, else the referrer's host and medium.
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in sessions:
        source = v["utm_source"] or v["referrer_host"] or "(direct)"
        groups[f"{source} / {v['utm_medium'] or v['referrer_medium'] or '(none)'}"].append(v)
    expected = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))[: figures.TOP_SOURCES]
    assert [(r["name"], r["sessions"], r["converted"]) for r in fig["by_source"]] == [
        (name, len(group), sum(1 for v in group if v["converted"])) for name, group in expected
    ]
    assert all(r["rate"] == r["converted"] / r["sessions"] for r in fig["by_source"])
    campaigns = Counter(v["utm_campaign"] for v in sessions if v["utm_campaign"])
    assert {r["name"]: r["sessions"] for r in fig["by_campaign"]} == dict(campaigns.most_common(figures.TOP_SOURCES))
    assert len(fig["by_campaign"]) >= 2, "the sample should have campaigns"
    assert {r["name"]: r["sessions"] for r in fig["devices"]} == dict(Counter(v["device_class"] for v in sessions))
    pages = Counter(v["landing_page"].split("?")[0] for v in sessions)
    assert [(r["page"], r["sessions"]) for r in fig["landing_pages"]] == sorted(
        pages.items(), key=lambda item: (-item[1], item[0])
    )[: figures.TOP_PAGES]
    timeline = fig["sessions_timeline"]
    starts = timeline["buckets"]
    assert timeline["types"] == ["engaged", "bounced"]
    assert sum(b["counts"]["bounced"] for b in starts) == totals["bounced_sessions"]
    assert sum(b["counts"]["engaged"] + b["counts"]["bounced"] for b in starts) == len(sessions)
    step = timedelta(seconds=timeline["bucket_seconds"])
    assert {moment_of(b["start"]) - moment_of(a["start"]) for a, b in pairwise(starts)} == {step}  # no holes


def test_bots_are_left_out_unless_asked_and_their_share_shown(events: list[dict[str, Any]]) -> None:
    bots = [e for e in events if enrichment.agent(e["event"]["user_agent"]).is_bot]
    assert 0 < len(bots) < len(events) / 10, "the generator's traffic has a few percent crawlers"
    tables = (lake_table(events), pa.table({}), sessions_table(events))
    fig, everything = figures.figures(*tables), figures.figures(*tables, include_bots=True)
    assert fig["bots"]["events"] == everything["bots"]["events"] == len(bots)
    assert fig["bots"]["all_events"] == len(events)
    assert fig["totals"]["events"] == len(events) - len(bots)
    assert everything["totals"]["events"] == len(events)
    assert everything["totals"]["sessions"] == len(visits(events)) > fig["totals"]["sessions"]
    share = f"{100 * len(bots) / len(events):.1f}%"
    assert f">{share}<" in page.render_html(fig) and "left out of the figures" in page.render_html(fig)


def test_events_per_type_over_time(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    events = humans(events)
    timeline = fig["timeline"]
    moments = [moment_of(e["event"]["timestamp"]) for e in events]
    span = max(moments) - min(moments)
    assert timedelta(hours=2) <= span < timedelta(hours=2, minutes=30)
    assert timeline["bucket_seconds"] == 300
    assert timeline["bucket"] == "5 minutes"
    assert timeline["types"] == ["click", "view", "purchase"]
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for event, moment in zip(events, moments, strict=True):
        epoch = int(moment.timestamp())
        expected[iso_of(datetime.fromtimestamp(epoch - epoch % 300, UTC))][event["type"]] += 1
    starts = [b["start"] for b in timeline["buckets"]]
    # Every 5 minutes from the first bucket to the last, the empty ones included (with zeros).
    assert starts[0] == min(expected) and starts[-1] == max(expected)
    assert {moment_of(b) - moment_of(a) for a, b in pairwise(starts)} == {timedelta(minutes=5)}
    for bucket in timeline["buckets"]:
        assert bucket["counts"] == {t: expected.get(bucket["start"], Counter())[t] for t in timeline["types"]}
    assert sum(sum(b["counts"].values()) for b in timeline["buckets"]) == len(events)


def test_funnel_per_product(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    events = humans(events)
    views = Counter(e["event"]["product_id"] for e in events if e["type"] == "view" and e["event"].get("product_id"))
    purchases = Counter(e["event"]["product_id"] for e in events if e["type"] == "purchase")
    names = {product_id: name for product_id, name, _ in PRODUCTS}
    expected = [
        {
            "product_id": product_id,
            "product_name": names[product_id],
            "views": views[product_id],
            "purchases": purchases[product_id],
            "conversion": purchases[product_id] / views[product_id],
        }
        for product_id in sorted(views | purchases)
    ]
    assert fig["funnel"] == expected
    assert all(p["purchases"] for p in expected), "the sample should have purchases of every product"


def test_revenue_per_product(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    events = humans(events)
    revenue: dict[int, float] = defaultdict(float)
    count: Counter[int] = Counter()
    for event in events:
        if event["type"] == "purchase":
            revenue[event["event"]["product_id"]] += event["event"]["price"]
            count[event["event"]["product_id"]] += 1
    names = {product_id: name for product_id, name, _ in PRODUCTS}
    expected = [
        {"product_id": p, "product_name": names[p], "purchases": count[p], "revenue": round(revenue[p], 2)}
        for p in sorted(revenue, key=lambda p: (-revenue[p], p))
    ]
    assert fig["revenue"] == expected
    assert sum(r["revenue"] for r in fig["revenue"]) == fig["totals"]["revenue"]


def test_top_search_queries(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    searches = [e["event"]["query"] for e in humans(events) if e["type"] == "view" and e["event"].get("query")]
    queries = Counter(query.strip().lower() for query in searches)
    expected = sorted(queries.items(), key=lambda item: (-item[1], item[0]))[: figures.TOP_QUERIES]
    assert [(q["query"], q["views"]) for q in fig["queries"]] == expected
    assert "  Laptop " not in {q["query"] for q in fig["queries"]}


def test_sources(fig: dict[str, Any], events: list[dict[str, Any]]) -> None:
    assert fig["sources"] == [{"source": "acme.shop.generator", "events": len(humans(events))}]


def test_invalid_events_grouped_by_path_and_kind(fig: dict[str, Any]) -> None:
    expected = Counter(group for _, _, group in REASONS)
    assert {g["problem"]: g["count"] for g in fig["invalid"]} == expected
    counts = [g["count"] for g in fig["invalid"]]
    assert counts == sorted(counts, reverse=True)
    for group in fig["invalid"]:
        assert group["example"] in {reason for reason, _, g in REASONS if g == group["problem"]}


def test_rows_with_a_code_are_grouped_by_code_and_path_not_by_wording() -> None:
    rows = [
        {"code": "schema.required", "path": "$.event.price", "reason": "any wording at all", "status_code": None},
        {"code": "schema.required", "path": "$.event.price", "reason": "another wording", "status_code": None},
        {"code": "lake.timestamp.instant", "path": "$.event.timestamp", "reason": "x", "status_code": None},
        {"code": "record.shape", "path": "$", "reason": "record is not a JSON event", "status_code": None},
        {"code": "body.size", "path": None, "reason": "too big", "status_code": 413},
        {"code": "some.future_code", "path": "$.x", "reason": "y", "status_code": None},
    ]
    invalid = pa.Table.from_pylist(
        rows, schema=figures.INVALID_COLUMNS.remove(figures.INVALID_COLUMNS.get_field_index("ingested_timestamp"))
    )
    fig = figures.figures(pa.table({}), invalid)
    assert {g["problem"]: g["count"] for g in fig["invalid"]} == {
        "$.event.price: missing": 2,
        "$.event.timestamp: not a real instant": 1,
        "$: not an event record": 1,
        "HTTP 413: body too large": 1,
        "$.x: some.future_code": 1,
    }


def test_the_collectors_reasons_for_the_generators_broken_events(broken: list[dict[str, Any]]) -> None:
    reasons = [schema_violation(event) for event in broken]
    assert None not in reasons
    # Which way each event was broken, read from the value the generator put in.
    markers = {
        '"hover" is not one of': "$.type: not an allowed value",
        '"customer_id" is a required property': "$.event.customer_id: missing",
        '"yesterday at noon" does not match': "$.event.timestamp: wrong format",
        '"price" is a required property': "$.event.price: missing",
        '"product_id" is a required property': "$.event.product_id: missing",
        '"product_name" is a required property': "$.event.product_name: missing",
        '"free" is not of type': "$.event.price: wrong type",
    }
    expected = Counter(next(group for marker, group in markers.items() if marker in r) for r in reasons if r)
    fig = figures.figures(pa.table({}), invalid_table([(r, None) for r in reasons if r]))
    assert {g["problem"]: g["count"] for g in fig["invalid"]} == expected
    assert len(expected) >= 5


def test_bucket_size_follows_the_time_range() -> None:
    assert figures.bucket_seconds(None, None) == 60
    assert figures.bucket_seconds(START, START) == 60
    assert figures.bucket_seconds(START, START + timedelta(minutes=50)) == 60
    assert figures.bucket_seconds(START, START + timedelta(hours=2)) == 300
    assert figures.bucket_seconds(START, START + timedelta(hours=12)) == 900
    assert figures.bucket_seconds(START, START + timedelta(days=2)) == 3600
    assert figures.bucket_seconds(START, START + timedelta(days=20)) == 43200
    # A client clock years off: still about MAX_BUCKETS bars, of whole days.
    far = figures.bucket_seconds(START - timedelta(days=3650), START)
    assert far % 86400 == 0 and 3650 * 86400 / far <= figures.MAX_BUCKETS


def test_the_html_is_self_contained_and_shows_the_figures(fig: dict[str, Any]) -> None:
    html = page.render_html(fig, generated_at=START + timedelta(hours=3), source="s3://bucket/lake")
    assert html.startswith("<!doctype html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<script|<link|@import|url\(", html, re.IGNORECASE)
    svgs = re.findall(r"<svg\b[^>]*>(.*?)</svg>", html, re.DOTALL)
    # events and sessions over time, source/medium, campaign, devices, browsers, landing pages, funnel, revenue,
    # queries, sources, invalid
    assert len(svgs) == 12
    assert html.count('role="img" aria-label="') == 12
    assert all(svg.startswith("<title>") for svg in svgs)
    totals = fig["totals"]
    for number in ("events", "customers", "sessions", "purchases", "invalid_events"):
        assert f">{totals[number]:,}<" in html
    assert f">${totals['revenue']:,.2f}<" in html
    for product in fig["revenue"]:
        assert f"${product['revenue']:,.0f}" in html
    for query in fig["queries"]:
        assert f">{query['views']:,}<" in html
    assert ">$.event.{price,product_id,product_name}: missing<" in html
    assert "s3://bucket/lake" in html


def test_text_from_the_lake_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    sample = synthetic_events(40, seed=2, start=START)
    for event in sample:
        if event["event"].get("query"):
            event["event"]["query"] = hostile
        if event["event"].get("product_name"):
            event["event"]["product_name"] = hostile
    fig = figures.figures(lake_table(sample), invalid_table([(f"$.x: {hostile}", None)]))
    html = page.render_html(fig)
    assert "<script" not in html
    assert "&lt;script&gt;" in html


def test_an_empty_lake_renders() -> None:
    fig = figures.figures(pa.table({}), pa.table({}))
    assert fig["empty"]
    assert fig["totals"]["events"] == fig["totals"]["invalid_events"] == fig["totals"]["revenue"] == 0
    assert fig["totals"]["first_event"] is None and fig["totals"]["freshness"] is None
    assert fig["timeline"]["buckets"] == fig["funnel"] == fig["revenue"] == fig["queries"] == fig["invalid"] == []
    html = page.render_html(fig)
    assert "No data in the lake yet" in html
    assert "<svg" not in html


def test_a_lake_without_invalid_events(events: list[dict[str, Any]]) -> None:
    fig = figures.figures(lake_table(events), pa.table({}))
    assert fig["invalid"] == [] and fig["totals"]["invalid_events"] == 0
    html = page.render_html(fig)
    assert "No invalid events." in html
    assert html.count("<svg") == 5  # no sessions table either: only the events' charts
    assert "No sessions." in html


def test_main_writes_the_report_and_prints_the_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], events: list[dict[str, Any]]
) -> None:
    tables = {
        report.LAKE_PREFIX: lake_table(events),
        report.INVALID_PREFIX: invalid_table([("x", 400)]),
        report.SESSIONS_PREFIX: sessions_table(events),
    }
    asked: list[str] = []

    def dataset(prefix: str) -> ds.Dataset:
        asked.append(prefix)
        return ds.dataset(tables[prefix])  # as lake.reader.dataset: a lazy scan of the table

    monkeypatch.setattr(report, "dataset", dataset)
    output = tmp_path / "out" / "report.html"
    assert report.main(["--output", str(output)]) == 0
    assert set(asked) == {report.LAKE_PREFIX, report.INVALID_PREFIX, report.SESSIONS_PREFIX}
    out = capsys.readouterr().out
    printed = json.loads(out[: out.rindex("}") + 1])
    assert printed["events"] == len(humans(events))
    assert printed["sessions"] == sum(1 for v in visits(events) if not v["is_bot"])
    assert printed["refused_requests"] == 1
    assert out.strip().endswith(f"report: {output.resolve()}")
    assert "<svg" in output.read_text(encoding="utf-8")


def test_the_default_output_is_in_the_runtime_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLICKSTREAM_RUNTIME", str(tmp_path))
    assert report.default_output() == tmp_path / "report" / "lake-report.html"


def test_freshness_counts_the_invalid_prefix_too(events: list[dict[str, Any]]) -> None:
    later = START + timedelta(days=1)
    fig = figures.figures(lake_table(events), invalid_table([("x", 400)], at=later))
    assert fig["totals"]["freshness"] == iso_of(later + timedelta(seconds=2))
