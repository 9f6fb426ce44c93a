"""The lake report's charts: inline SVG, drawn here (no script or font is fetched, so the page opens offline)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

COLOURS = {
    "click": "#4c78a8",
    "view": "#54a24b",
    "purchase": "#f58518",
    "invalid": "#e45756",
    "other": "#9d755d",
    "engaged": "#72b7b2",
    "bounced": "#bab0ac",
    "bot": "#b279a2",
}
VIEW_LIGHT = "#b8dcb2"
CHAR_WIDTH = 7.0  # width of a 12px sans-serif character (a little over the average), for laying out labels
BOLD_WIDTH = 7.6  # the same for bold digits


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_money(value: float, cents: bool = True) -> str:
    return f"${value:,.2f}" if cents else f"${value:,.0f}"


def fmt_short(value: float) -> str:
    """1234 -> 1.2k, for labels in tight places."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return fmt_int(value)


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `maximum` (steps of 1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(maximum / step) + 1)]


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> str:
    label = escape(title)
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{label}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>{"".join(body)}</svg>'
    )


def _text(x: float, y: float, content: str, anchor: str = "start", css: str = "", extra: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{cls}{extra}>{escape(content)}</text>'


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str  # the number printed at the bar's end
    tooltip: str = ""


def hbar_chart(title: str, bars: Sequence[Bar], colour: str, axis_label: str, width: int = 560) -> str:
    """Horizontal bars, largest first as given, with the value at each bar's end."""
    row, top, bottom = 26, 8, 34
    label_chars = min(max((len(b.label) for b in bars), default=4), 64 if width > 800 else 36)
    left = 16 + label_chars * CHAR_WIDTH
    right = 16 + max((len(b.text) for b in bars), default=4) * BOLD_WIDTH
    span = max(width - left - right, 40)
    top_value = max((b.value for b in bars), default=0) or 1
    height = top + row * len(bars) + bottom
    parts = []
    for i, bar in enumerate(bars):
        y = top + i * row
        length = max(span * bar.value / top_value, 1 if bar.value else 0)
        tip = escape(bar.tooltip or f"{bar.label}: {bar.text}")
        parts.append(
            f"<g><title>{tip}</title>"
            + _text(left - 8, y + row / 2 + 4, _clip(bar.label, label_chars), "end", "label")
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{length:.1f}" height="{row - 8}" rx="3" fill="{colour}"/>'
            + _text(left + length + 6, y + row / 2 + 4, bar.text, css="value")
            + "</g>"
        )
    axis_y = top + row * len(bars)
    parts.append(f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top}" y2="{axis_y}" class="axis"/>')
    parts.append(_text(left + span / 2, axis_y + 24, axis_label, "middle", "axis-title"))
    return _svg(width, height, title, parts)


def funnel_chart(title: str, funnel: Sequence[dict[str, Any]], width: int = 560) -> str:
    """Per product: its page views (light bar), its purchases over them (dark bar) and the conversion."""
    row, top, bottom = 42, 28, 34
    labels = [product_label(p) for p in funnel]
    label_chars = min(max((len(label) for label in labels), default=4), 28)
    left, right = 16 + label_chars * CHAR_WIDTH, 16 + 6 * BOLD_WIDTH
    span = width - left - right
    top_value = max((max(p["views"], p["purchases"]) for p in funnel), default=0) or 1
    parts = _legend((("product page views", VIEW_LIGHT), ("purchases", COLOURS["purchase"])), left, 12)
    for i, (product, label) in enumerate(zip(funnel, labels, strict=True)):
        y = top + i * row
        views, purchases = product["views"], product["purchases"]
        conversion = "n/a" if product["conversion"] is None else f"{100 * product['conversion']:.1f}%"
        caption = f"{fmt_int(views)} views → {fmt_int(purchases)} purchases"
        views_w, purchases_w = span * views / top_value, span * purchases / top_value
        parts.append(
            f"<g><title>{escape(label)}: {escape(caption)}, conversion {conversion}</title>"
            + _text(left - 8, y + 17, _clip(label, label_chars), "end", "label")
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{views_w:.1f}" height="18" rx="3" fill="{VIEW_LIGHT}"/>'
            + f'<rect x="{left:.1f}" y="{y + 4}" width="{purchases_w:.1f}" height="18" rx="3" '
            f'fill="{COLOURS["purchase"]}"/>'
            + _text(left + max(views_w, purchases_w) + 6, y + 17, conversion, css="value")
            + _text(left, y + 36, caption, css="caption")
            + "</g>"
        )
    axis_y = top + row * len(funnel)
    parts.append(f'<line x1="{left:.1f}" x2="{left:.1f}" y1="{top}" y2="{axis_y}" class="axis"/>')
    parts.append(_text(left + span / 2, axis_y + 24, "events; % = purchases per view", "middle", "axis-title"))
    return _svg(width, axis_y + bottom, title, parts)


def _time_label(start: str, seconds: int, previous: str | None) -> str:
    """HH:MM, with the date where the day changes (only the date for buckets of a day or more)."""
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    day = moment.strftime("%b %d")
    if seconds >= 86400:
        return day
    return f"{day} {moment:%H:%M}" if previous is None or previous[:10] != start[:10] else f"{moment:%H:%M}"


def timeline_chart(title: str, timeline: dict[str, Any], width: int = 1160, height: int = 300) -> str:
    """Stacked bars of events per type and time bucket, with a y axis, time labels and a legend."""
    buckets, types, seconds = timeline["buckets"], timeline["types"], timeline["bucket_seconds"]
    left, right, top, bottom = 64, 16, 30, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(b["counts"].values()) for b in buckets]
    ticks = nice_ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    slot = plot_w / max(len(buckets), 1)
    parts = []
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(_text(left - 6, y + 4, fmt_short(tick), "end", "tick"))
    label_every = max(1, math.ceil(len(buckets) / (plot_w / 90)))
    previous_label: str | None = None
    for i, (bucket, total) in enumerate(zip(buckets, totals, strict=True)):
        x, y = left + i * slot + slot * 0.1, top + plot_h
        breakdown = ", ".join(f"{t} {fmt_int(bucket['counts'][t])}" for t in types)
        parts.append(f"<g><title>{escape(bucket['start'])} ({timeline['bucket']}): {escape(breakdown)}</title>")
        for kind in types:
            h = bucket["counts"][kind] * scale
            y -= h
            colour = COLOURS.get(kind, COLOURS["other"])
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{colour}"/>')
        if slot >= 34 and total:
            parts.append(_text(x + slot * 0.4, y - 4, fmt_short(total), "middle", "value"))
        parts.append("</g>")
        if i % label_every == 0:
            label = _time_label(bucket["start"], seconds, previous_label)
            previous_label = bucket["start"]
            # The first label starts at its bar, so a long one (with the date) stays clear of the y axis.
            at, anchor = (x, "start") if i == 0 else (x + slot * 0.4, "middle")
            parts.append(_text(at, top + plot_h + 16, label, anchor, "tick"))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" class="axis"/>')
    unit = timeline.get("unit", "events")
    moment = "event time" if unit == "events" else "start time"
    parts.append(_text(left + plot_w / 2, height - 12, f"{moment} (UTC)", "middle", "axis-title"))
    parts.append(
        _text(
            14,
            top + plot_h / 2,
            f"{unit} per {timeline['bucket']}",
            "middle",
            "axis-title",
            f' transform="rotate(-90 14 {top + plot_h / 2:.1f})"',
        )
    )
    parts.extend(_legend(((t, COLOURS.get(t, COLOURS["other"])) for t in types), left, 14))
    return _svg(width, height, title, parts)


def _legend(entries: Iterable[tuple[str, str]], x: float, y: float) -> list[str]:
    parts = []
    for name, colour in entries:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="11" height="11" rx="2" fill="{colour}"/>')
        parts.append(_text(x + 16, y, name, css="label"))
        x += 32 + len(name) * CHAR_WIDTH
    return parts


def product_label(product: dict[str, Any]) -> str:
    name = product.get("product_name")
    return f"{name} ({product['product_id']})" if name else f"product {product['product_id']}"
