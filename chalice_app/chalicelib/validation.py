"""Validation of one event: the event schema (the collector's copy of schemas/*.json), then the lake's types.

The schema's JSON types are wider than the lake's columns: JSON Schema counts 1.0 as an integer and its
timestamp pattern allows 31 April. The lake writer would have to refuse such values, so the collector refuses
them first, with the semantics the lake writer applies (tests/spark checks the two agree).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema_rs

from pipeline import problems
from pipeline.contract import integer_range

SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "event_schema.json").read_text(encoding="utf-8"))
SCHEMA_ID: str = SCHEMA["$id"]
SCHEMA_VERSION: str = SCHEMA["self"]["version"]

# Built once per process. jsonschema-rs validates an event in ~2 us, a sixth of a Python validator's time,
# which matters at a thousand events per request; the test suite checks it against the reference
# implementation (jsonschema).
_validator = jsonschema_rs.Draft7Validator(SCHEMA)


class Problem(NamedTuple):
    """Why an event (or a request) is invalid, in the bad-row spirit: a code for machines, a reason for people."""

    #: Stable and machine-readable, from the table of pipeline/problems.py (schema.required, lake.timestamp.instant).
    code: str
    #: The JSON path of the offending value ("$" for the whole event); for a missing property, the property's.
    path: str
    #: What is wrong, for a person; starts with the path.
    reason: str


def schema_problem(event: Any) -> Problem | None:
    """The first way `event` breaks the schema, or None if it is valid."""
    if _validator.is_valid(event):
        return None
    error = next(iter(_validator.iter_errors(event)))
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
    kind = error.kind
    if isinstance(kind, (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid)):
        # The library's message repeats the whole value; the rule's own description says what is wanted.
        return Problem(problems.schema_code(kind.name), path, f"{path}: {_rule_description(error.schema_path)}")
    reason = f"{path}: {error.message}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return Problem(problems.SCHEMA_REQUIRED.code, f"{path}.{kind.property}", reason)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):
        # The schema's only patterns are formats (the timestamp's): name the format by its field.
        return Problem(problems.SCHEMA_FORMAT_PREFIX + path.rsplit(".", 1)[-1], path, reason)
    return Problem(problems.schema_code(kind.name), path, reason)


def schema_violation(event: Any) -> str | None:
    """Why `event` breaks the schema (its first error, with the JSON path), or None if it is valid."""
    problem = schema_problem(event)
    return None if problem is None else problem.reason


def _rule_description(schema_path: list[str | int]) -> str:
    """The description of the innermost schema rule on `schema_path` that has one."""
    node: Any = SCHEMA
    description = "matches none of the allowed forms"
    for step in schema_path:
        node = node[step]
        if isinstance(node, dict) and "description" in node:
            description = node["description"]
    return description


@dataclass(frozen=True)
class ClockWindow:
    """The event times the collector accepts: client clocks are wrong, but not by decades."""

    earliest: datetime
    ahead: timedelta

    def violation(self, instant: datetime, now: datetime) -> str | None:
        if instant < self.earliest:
            return f"is before {self.earliest.isoformat().replace('+00:00', 'Z')}, the earliest time accepted"
        if instant - now > self.ahead:  # a difference, not a sum: no overflow near year 9999
            return f"is more than {self.ahead.total_seconds():.0f} s ahead of the collector's clock"
        return None


def parse_instant(text: str) -> datetime | None:
    """The instant an event's timestamp names, or None if it names none (e.g. 31 April, 29 February 2023).

    Fractions finer than a microsecond are cut, as the lake's microsecond timestamps cut them.
    """
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


def lake_problem(event: dict[str, Any], window: ClockWindow, now: datetime | None = None) -> Problem | None:
    """Why a schema-valid `event` cannot be stored in the lake's typed columns, or None if it can."""
    problem = _typed_problem(event, SCHEMA, "$")
    if problem is not None:
        return problem
    path, text = "$.event.timestamp", event["event"]["timestamp"]
    instant = parse_instant(text)
    if instant is None:
        reason = f"{path}: {text!r} is not a real instant (a calendar date and a time of day)"
        return Problem(problems.LAKE_TIMESTAMP_INSTANT.code, path, reason)
    outside = window.violation(instant, now or datetime.now(UTC))
    if outside is None:
        return None
    return Problem(problems.LAKE_TIMESTAMP_WINDOW.code, path, f"{path}: {text!r} {outside}")


def lake_violation(event: dict[str, Any], window: ClockWindow, now: datetime | None = None) -> str | None:
    problem = lake_problem(event, window, now)
    return None if problem is None else problem.reason


def _typed_problem(value: dict[str, Any], schema: dict[str, Any], path: str) -> Problem | None:
    for name, prop in schema.get("properties", {}).items():
        item = value.get(name)
        if item is None:
            continue
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        where = f"{path}.{name}"
        if "object" in kinds and isinstance(item, dict):
            problem = _typed_problem(item, prop, where)
            if problem is not None:
                return problem
        elif "integer" in kinds:
            low, high = integer_range(prop)
            if isinstance(item, float) or not low <= item <= high:
                return Problem(
                    problems.LAKE_INTEGER_RANGE.code,
                    where,
                    f"{where}: {item!r} is not a whole number from {low} to {high}",
                )
        elif "number" in kinds and not math.isfinite(float(item)):
            return Problem(problems.LAKE_NUMBER_FINITE.code, where, f"{where}: {item!r} is not a finite number")
    return None
