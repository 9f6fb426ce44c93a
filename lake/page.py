"""The lake report's page: one self-contained HTML file with inline CSS and the charts (lake/charts.py) of the figures
(lake/figures.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from lake.charts import (
    COLOURS,
    Bar,
    fmt_int,
    fmt_money,
    funnel_chart,
    hbar_chart,
    product_label,
    timeline_chart,
)
from lake.figures import TOP_PAGES, TOP_QUERIES, TOP_SOURCES

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --card: #fff; --accent: #4c78a8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 24px 40px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: var(--muted); }
.numbers { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 12px; margin: 20px 0; }
.number, .chart { background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
.number { padding: 14px 16px; border-top: 4px solid var(--accent); }
.number .name { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.number .value { font-size: 24px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.number .note { color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
.chart { padding: 16px 18px 10px; }
.chart.wide { grid-column: 1 / -1; }
.chart h2 { margin: 0 0 2px; font-size: 16px; }
.chart .sub { margin: 0 0 10px; color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); padding: 24px 0; text-align: center; }
.nodata { background: var(--card); border: 1px dashed #cbd2d9; border-radius: 10px; padding: 48px 24px;
  text-align: center; color: var(--muted); font-size: 16px; }
footer { margin-top: 20px; color: var(--muted); font-size: 12px; }
svg { display: block; height: auto; font-family: inherit; }
svg .label { font-size: 12px; fill: var(--ink); }
svg .value { font-size: 12px; fill: var(--ink); font-weight: 600; }
svg .caption { font-size: 11px; fill: var(--muted); }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .axis-title { font-size: 12px; fill: var(--muted); }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
@media (max-width: 800px) { .charts, .numbers { grid-template-columns: 1fr 1fr; } .chart { grid-column: 1 / -1; } }
"""


def _moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _duration(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _time_range(first: str | None, last: str | None) -> tuple[str, str]:
    """The events' time range for a card: a short value and a note."""
    if first is None or last is None:
        return "n/a", "no events yet"
    start, end = _moment(first), _moment(last)
    span = _duration((end - start).total_seconds())
    if start.date() == end.date():
        return f"{start:%H:%M} → {end:%H:%M}", f"{start:%Y-%m-%d} UTC · {span} of events"
    return f"{start:%b %d} → {end:%b %d}", f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC · {span}"


def _freshness(iso: str | None, now: datetime) -> tuple[str, str]:
    if iso is None:
        return "n/a", "nothing ingested yet"
    moment = _moment(iso)
    return f"{moment:%H:%M:%S} UTC", f"{moment:%Y-%m-%d} · {_duration((now - moment).total_seconds())} ago"


def _number(name: str, value: str, note: str = "", colour: str = "") -> str:
    style = f' style="border-top-color:{colour}"' if colour else ""
    note_html = f'<div class="note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="number"{style}><div class="name">{escape(name)}</div>'
        f'<div class="value">{escape(value)}</div>{note_html}</div>'
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def key_numbers(totals: dict[str, Any], bots: dict[str, Any], now: datetime) -> str:
    views, purchases, sessions = totals["product_views"], totals["purchases"], totals["sessions"]
    conversion = f"{100 * purchases / views:.1f}% of product views" if views else ""
    by_type = ", ".join(f"{fmt_int(n)} {t}" for t, n in totals["by_type"].items())
    per_session = f"{totals['events'] / sessions:.1f} events each" if sessions else "from clickstream-sessions"
    average = f"{fmt_money(totals['revenue'] / purchases)} per purchase" if purchases else ""
    invalid_note = f"+ {fmt_int(totals['refused_requests'])} refused requests"
    bot_note = f"{_share(bots['sessions'], bots['all_sessions'])} of sessions; " + (
        "included in the figures" if bots["included"] else "left out of the figures"
    )
    cards = [
        _number("Events in the lake", fmt_int(totals["events"]), by_type),
        _number("Customers", fmt_int(totals["customers"]), "distinct customer_id"),
        _number("Sessions", fmt_int(sessions), per_session),
        _number("Bounce rate", _share(totals["bounced_sessions"], sessions), "sessions of a single event"),
        _number("Purchases", fmt_int(purchases), conversion, COLOURS["purchase"]),
        _number("Revenue", fmt_money(totals["revenue"]), average, COLOURS["purchase"]),
        _number(
            "Converted sessions",
            _share(totals["converted_sessions"], sessions),
            f"{fmt_int(totals['converted_sessions'])} sessions with a purchase",
            COLOURS["purchase"],
        ),
        _number("Invalid events", fmt_int(totals["invalid_events"]), invalid_note, COLOURS["invalid"]),
        _number("Bot events", _share(bots["events"], bots["all_events"]), bot_note, COLOURS["bot"]),
        _number("Time range", *_time_range(totals["first_event"], totals["last_event"])),
        _number("Freshness (last ingested)", *_freshness(totals["freshness"], now)),
        _number(
            "Revenue per session",
            fmt_money(totals["revenue"] / sessions) if sessions else "n/a",
            "revenue over every session",
            COLOURS["purchase"],
        ),
    ]
    return f'<section class="numbers" aria-label="key numbers">{"".join(cards)}</section>'


def _card(title: str, sub: str, content: str, wide: bool = False) -> str:
    cls = "chart wide" if wide else "chart"
    return f'<section class="{cls}"><h2>{escape(title)}</h2><p class="sub">{escape(sub)}</p>{content}</section>'


def _or_empty(rows: Sequence[Any], chart: str, message: str) -> str:
    return chart if rows else f'<p class="empty">{escape(message)}</p>'


def _bars(fig: dict[str, Any]) -> dict[str, list[Bar]]:
    """The bars of the horizontal bar charts, with their printed values and tooltips."""
    revenue = [
        Bar(
            product_label(p),
            p["revenue"],
            fmt_money(p["revenue"], cents=False),
            f"{product_label(p)}: {fmt_money(p['revenue'])} from {fmt_int(p['purchases'])} purchases",
        )
        for p in fig["revenue"]
    ]
    queries = [Bar(q["query"], q["views"], fmt_int(q["views"])) for q in fig["queries"]]
    invalid = [Bar(g["problem"], g["count"], fmt_int(g["count"]), f"e.g. {g['example']}") for g in fig["invalid"]]
    sources = [Bar(r["source"] or "(none)", r["events"], fmt_int(r["events"])) for r in fig["sources"]]
    conversion = {
        key: [
            Bar(
                r["name"],
                r["rate"],
                f"{100 * r['rate']:.1f}% of {fmt_int(r['sessions'])}",
                f"{r['name']}: {fmt_int(r['converted'])} of {fmt_int(r['sessions'])} sessions converted, "
                f"{fmt_money(r['revenue'])}",
            )
            for r in fig[key]
        ]
        for key in ("by_source", "by_campaign")
    }
    splits = {
        key: [Bar(r["name"], r["sessions"], fmt_int(r["sessions"])) for r in fig[key]]
        for key in ("devices", "browsers")
    }
    pages = [
        Bar(
            r["page"],
            r["sessions"],
            fmt_int(r["sessions"]),
            f"{r['page']}: {fmt_int(r['sessions'])} sessions, {100 * r['bounce_rate']:.1f}% bounced",
        )
        for r in fig["landing_pages"]
    ]
    return {
        "revenue": revenue,
        "queries": queries,
        "invalid": invalid,
        "sources": sources,
        **conversion,
        **splits,
        "landing_pages": pages,
    }


def charts(fig: dict[str, Any]) -> str:
    timeline, funnel, bars = fig["timeline"], fig["funnel"], _bars(fig)
    revenue_chart = hbar_chart("Revenue per product", bars["revenue"], COLOURS["purchase"], "revenue (USD)")
    query_chart = hbar_chart("Top search queries", bars["queries"], COLOURS["view"], "search result views")
    invalid_chart = hbar_chart(
        "Invalid events by problem", bars["invalid"], COLOURS["invalid"], "invalid events", width=1160
    )
    source_chart = hbar_chart("Events per source", bars["sources"], COLOURS["click"], "events")
    visits = fig["sessions_timeline"]
    session_cards = [
        _card(
            "Sessions over time",
            f"sessions per {visits['bucket']} by start (UTC): engaged, and bounced (a single event)",
            _or_empty(visits["buckets"], timeline_chart("Sessions over time", visits), "No sessions."),
            wide=True,
        ),
        *[
            _card(
                title,
                sub,
                _or_empty(bars[key], hbar_chart(title, bars[key], COLOURS[colour], axis), "No sessions."),
            )
            for key, title, sub, colour, axis in (
                (
                    "by_source",
                    "Conversion per source / medium",
                    "sessions with a purchase, by utm_source / utm_medium, else referrer host / medium",
                    "purchase",
                    "converted sessions (share)",
                ),
                (
                    "by_campaign",
                    "Conversion per campaign",
                    "sessions with a purchase, by utm_campaign of the landing page",
                    "purchase",
                    "converted sessions (share)",
                ),
                ("devices", "Devices", "sessions per device class", "engaged", "sessions"),
                ("browsers", "Browsers", f"sessions per browser family (top {TOP_SOURCES})", "engaged", "sessions"),
            )
        ],
        _card(
            "Top landing pages",
            f"the {TOP_PAGES} pages most sessions start on (path only); the tooltip gives their bounce rate",
            _or_empty(
                bars["landing_pages"],
                hbar_chart("Top landing pages", bars["landing_pages"], COLOURS["view"], "sessions", width=1160),
                "No sessions.",
            ),
            wide=True,
        ),
    ]
    parts = [
        _card(
            "Events over time",
            f"events per {timeline['bucket']} and type, by event time (UTC)",
            _or_empty(timeline["buckets"], timeline_chart("Events per type over time", timeline), "No events."),
            wide=True,
        ),
        *session_cards,
        _card(
            "View → purchase funnel per product",
            "product page views, purchases and conversion",
            _or_empty(funnel, funnel_chart("View to purchase funnel per product", funnel), "No product views."),
        ),
        _card(
            "Revenue per product",
            "sum of purchase prices (USD)",
            _or_empty(bars["revenue"], revenue_chart, "No purchases."),
        ),
        _card(
            "Top search queries",
            f"the {TOP_QUERIES} most frequent queries of search result views (lower-cased)",
            _or_empty(bars["queries"], query_chart, "No searches."),
        ),
        _card(
            "Events per source",
            f"package_id of the sending tracker or app (top {TOP_SOURCES})",
            _or_empty(bars["sources"], source_chart, "No events."),
        ),
        _card(
            "Invalid events by problem",
            "JSON path and kind of schema violation; refused requests by HTTP status and cause",
            _or_empty(bars["invalid"], invalid_chart, "No invalid events."),
            wide=True,
        ),
    ]
    return f'<div class="charts">{"".join(parts)}</div>'


def render_html(fig: dict[str, Any], generated_at: datetime | None = None, source: str = "") -> str:
    """The report as one HTML document: inline CSS and SVG, nothing to fetch."""
    now = generated_at or datetime.now(UTC)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    about = f"{escape(source)} · " if source else ""
    bots_note = (
        "Bots (is_bot) are included."
        if fig["bots"]["included"]
        else "Bots (is_bot) are left out of every figure but their share (--include-bots keeps them)."
    )
    body = (
        '<div class="nodata" role="status">No data in the lake yet. Send some events (<code>make run</code>) '
        "and run the report again.</div>"
        if fig["empty"]
        else charts(fig)
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Clickstream lake report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><h1>Clickstream lake report</h1><p>{about}generated {stamp}</p></header>
{key_numbers(fig["totals"], fig["bots"], now)}
{body}
<footer>Committed rows only (the Delta tables' current versions, read with delta-rs). Sessions: the
clickstream-sessions table, a customer's events with less than the lake writer's gap (SESSION_GAP_MINUTES) between
them. {bots_note} Invalid events: rejected events and refused requests kept by the collector.</footer>
</main>
</body>
</html>
"""
