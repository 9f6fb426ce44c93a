"""The collector's validator against the schema's rules, and against the reference JSON Schema implementation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.validation import SCHEMA, ClockWindow, lake_problem, lake_violation, schema_problem, schema_violation
from generator.synthetic import synthetic_events

REFERENCE = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

texts = st.text(min_size=1, max_size=40)
timestamps = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
)
prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
product_ids = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["click", "view", "purchase"]))
    details: dict[str, Any] = {
        "user_agent": draw(st.text(max_size=60)),
        "customer_id": draw(texts),
        "timestamp": draw(timestamps),
        "page": draw(texts),
    }
    for name, values in (("ip", st.none() | st.just("203.0.113.9")), ("referrer", st.none() | texts)):
        if draw(st.booleans()):
            details[name] = draw(values)
    if kind == "purchase":
        details.update(product_id=draw(product_ids), product_name=draw(texts), price=draw(prices))
    elif kind == "view":
        if draw(st.booleans()):
            details.update(product_id=draw(product_ids), product_name=draw(texts), price=draw(prices))
        else:
            details["query"] = draw(texts)
    return {"id": draw(texts), "type": kind, "package_id": draw(texts), "event": details}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(valid_events())
def test_valid_events_pass(event: dict[str, Any]) -> None:
    assert schema_violation(event) is None
    assert REFERENCE.is_valid(event)


@given(valid_events(), st.sampled_from(["id", "type", "package_id", "event"]))
def test_missing_top_level_field_is_named(event: dict[str, Any], field: str) -> None:
    del event[field]
    reason = schema_violation(event)
    assert reason is not None and field in reason


@given(valid_events(), st.sampled_from(["user_agent", "customer_id", "timestamp", "page"]))
def test_missing_event_field_is_named(event: dict[str, Any], field: str) -> None:
    del event["event"][field]
    reason = schema_violation(event)
    assert reason is not None and field in reason


@given(valid_events(), st.sampled_from(["product_id", "product_name", "price"]))
def test_purchase_needs_product_and_price(event: dict[str, Any], field: str) -> None:
    event["type"] = "purchase"
    event["event"].update(product_id=101, product_name="Laptop Pro", price=1299.0)
    assert schema_violation(event) is None
    del event["event"][field]
    assert schema_violation(event) is not None


@given(valid_events(), st.text(max_size=30).filter(lambda t: t not in ("click", "view", "purchase")))
def test_unknown_type_is_refused(event: dict[str, Any], kind: str) -> None:
    event["type"] = kind
    assert "$.type" in (schema_violation(event) or "")


@given(valid_events(), st.text(max_size=30))
def test_non_utc_or_malformed_timestamps_are_refused(event: dict[str, Any], text: str) -> None:
    for bad in ("2026-11-28T10:00:00+01:00", "2026-13-01T00:00:00Z", "28/11/2026 10:00", text):
        event["event"]["timestamp"] = bad
        if bad == text and REFERENCE.is_valid(event):
            continue  # hypothesis may draw a valid timestamp
        assert schema_violation(event) is not None


@settings(max_examples=300)
@given(st.one_of(json_values, valid_events().flatmap(lambda e: st.just(e) | _mutations(e))))
def test_verdict_matches_the_reference_implementation(value: Any) -> None:
    """jsonschema-rs (fast, used at runtime) and jsonschema (the reference) never disagree."""
    assert (schema_violation(value) is None) == REFERENCE.is_valid(value)


def _mutations(event: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    def mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(event))
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return copy

    paths = st.sampled_from(
        [
            ("id",),
            ("type",),
            ("package_id",),
            ("extra",),
            ("event", "price"),
            ("event", "product_id"),
            ("event", "query"),
            ("event", "timestamp"),
            ("event", "ip"),
            ("event", "unknown"),
        ]
    )
    return st.builds(mutate, paths, json_values)


def test_generator_traffic_is_valid() -> None:
    events = synthetic_events(500, seed=3)
    assert [e for e in events if schema_violation(e) is not None] == []


def test_a_view_without_product_or_query_is_explained() -> None:
    event = synthetic_events(1, seed=3)[0]
    event["type"] = "view"
    for field in ("product_id", "product_name", "price", "query"):
        event["event"].pop(field, None)
    assert schema_violation(event) == "$.event: a view names a product_id or a search query"


def _at(timestamp: str) -> dict[str, Any]:
    (event,) = synthetic_events(1, seed=9)
    event["event"]["timestamp"] = timestamp
    return event


WINDOW = ClockWindow(earliest=datetime(2000, 1, 1, tzinfo=UTC), ahead=timedelta(days=1))
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_timestamp_must_name_a_real_instant() -> None:
    for impossible in ("2026-04-31T10:00:00Z", "2023-02-29T10:00:00Z", "2100-02-29T00:00:00+00:00"):
        event = _at(impossible)
        assert schema_violation(event) is None  # the schema's pattern lets them through
        assert "not a real instant" in (lake_violation(event, WINDOW, NOW) or "")
    for real in ("2024-02-29T10:00:00Z", "2000-02-29T00:00:00.123456789+00:00", "2026-12-02T11:59:59Z"):
        assert lake_violation(_at(real), WINDOW, NOW) is None


def test_client_clocks_outside_the_window_are_invalid_with_a_reason() -> None:
    assert "before 2000-01-01T00:00:00Z" in (lake_violation(_at("1999-12-31T23:59:59Z"), WINDOW, NOW) or "")
    assert "ahead of the collector's clock" in (lake_violation(_at("2026-12-02T12:00:01Z"), WINDOW, NOW) or "")
    assert "ahead" in (lake_violation(_at("9999-12-31T23:59:59Z"), WINDOW, NOW) or "")


def test_integers_must_be_whole_and_fit_the_lake_column() -> None:
    event = _at("2026-11-30T10:00:00Z")
    event["type"] = "purchase"
    event["event"].update(product_id=1.0, product_name="p", price=2)
    assert schema_violation(event) is None  # JSON Schema counts 1.0 as an integer
    assert "not a whole number" in (lake_violation(event, WINDOW, NOW) or "")
    event["event"]["product_id"] = 2**31 - 1
    assert lake_violation(event, WINDOW, NOW) is None


def test_each_problem_has_a_code_and_the_path_it_is_at() -> None:
    def problem(change: Any) -> tuple[str, str] | None:
        event = _at("2026-11-30T10:00:00Z")
        change(event)
        found = schema_problem(event) or lake_problem(event, WINDOW, NOW)
        return None if found is None else (found.code, found.path)

    assert problem(lambda e: None) is None
    assert problem(lambda e: e["event"].pop("customer_id")) == ("schema.required", "$.event.customer_id")
    assert problem(lambda e: e.update(type="hover")) == ("schema.enum", "$.type")
    assert problem(lambda e: e.update(extra=1)) == ("schema.additional_properties", "$")
    assert problem(lambda e: e.update(id="")) == ("schema.min_length", "$.id")
    assert problem(lambda e: e["event"].update(timestamp="noon")) == ("schema.format.timestamp", "$.event.timestamp")
    assert problem(lambda e: e["event"].update(page=5)) == ("schema.type", "$.event.page")
    assert problem(lambda e: e.update(type="view", event={**e["event"], "query": None})) == ("schema.any_of", "$.event")
    assert problem(lambda e: e["event"].update(timestamp="2026-04-31T10:00:00Z")) == (
        "lake.timestamp.instant",
        "$.event.timestamp",
    )
    assert problem(lambda e: e["event"].update(timestamp="1999-01-01T10:00:00Z")) == (
        "lake.timestamp.window",
        "$.event.timestamp",
    )
