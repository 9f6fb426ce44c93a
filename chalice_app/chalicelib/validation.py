"""Validation of one event against the event schema (the collector's copy of schemas/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs

SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "event_schema.json").read_text(encoding="utf-8"))
SCHEMA_ID: str = SCHEMA["$id"]
SCHEMA_VERSION: str = SCHEMA["self"]["version"]

# Built once per process. jsonschema-rs validates an event in ~2 us, a sixth of a Python validator's time,
# which matters at a thousand events per request; the test suite checks it against the reference
# implementation (jsonschema).
_validator = jsonschema_rs.Draft7Validator(SCHEMA)


def schema_violation(event: Any) -> str | None:
    """Why `event` breaks the schema (its first error, with the JSON path), or None if it is valid."""
    if _validator.is_valid(event):
        return None
    error = next(iter(_validator.iter_errors(event)))
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
    if isinstance(
        error.kind, (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid)
    ):
        # The library's message repeats the whole value; the rule's own description says what is wanted.
        return f"{path}: {_rule_description(error.schema_path)}"
    return f"{path}: {error.message}"


def _rule_description(schema_path: list[str | int]) -> str:
    """The description of the innermost schema rule on `schema_path` that has one."""
    node: Any = SCHEMA
    description = "matches none of the allowed forms"
    for step in schema_path:
        node = node[step]
        if isinstance(node, dict) and "description" in node:
            description = node["description"]
    return description
