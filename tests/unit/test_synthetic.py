"""Synthetic traffic's clock: without a start, its visits lie before now, ending at now; with one, from there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from generator.synthetic import synthetic_events


def moments(events: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(e["event"]["timestamp"]) for e in events]


def test_visits_end_now_and_never_after() -> None:
    before = datetime.now(UTC)
    events = synthetic_events(2000, seed=4)
    after = datetime.now(UTC)
    times = moments(events)
    # 2,000 events: customers 7 s apart and returning visits up to two hours later, all of it before now.
    assert before - timedelta(milliseconds=1) <= max(times) <= after
    assert min(times) < before - timedelta(hours=1)


def test_a_start_places_the_first_visit_and_repeats_the_events() -> None:
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    events = synthetic_events(300, seed=8, start=start)
    assert start < min(moments(events)) < start + timedelta(minutes=2)
    assert events == synthetic_events(300, seed=8, start=start)
