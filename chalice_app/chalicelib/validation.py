"""Validation of one event against the event schema (the collector's copy of schemas/*.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema

SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "event_schema.json").read_text(encoding="utf-8"))
SCHEMA_ID: str = SCHEMA["$id"]
SCHEMA_VERSION: str = SCHEMA["self"]["version"]

# Compiled once per process: fastjsonschema turns the schema into Python code, ~20x faster than
# interpreting it, which matters at a thousand events per request.
_validate = fastjsonschema.compile(SCHEMA)


def schema_violation(event: Any) -> str | None:
    """Why `event` breaks the schema, or None if it is valid."""
    try:
        _validate(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        # fastjsonschema names the root "data"; "$" is the usual JSONPath spelling.
        message = exc.message
        return "$" + message[4:] if message.startswith("data") else message
    return None
