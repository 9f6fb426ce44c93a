"""The problem codes, in the spirit of Snowplow's typed bad rows: every invalid event, refused request and unfileable
record carries one beside its human reason. The collector, the lake writer and the report all take them from this
table; the wording of a reason may change, a code does not. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """One kind of problem: its code, the report's name for its kind, and the HTTP status when it refuses a whole
    request (None for a problem of one event or record, answered per event)."""

    code: str
    kind: str
    status: int | None = None

    def __str__(self) -> str:
        return self.code


# An event: the schema's keyword at the offending value's path (schema.<keyword>, snake_case), then the lake's types.
SCHEMA_REQUIRED = Code("schema.required", "missing")
SCHEMA_ADDITIONAL_PROPERTIES = Code("schema.additional_properties", "unexpected property")
SCHEMA_ENUM = Code("schema.enum", "not an allowed value")
SCHEMA_CONST = Code("schema.const", "not an allowed value")
SCHEMA_ANY_OF = Code("schema.any_of", "fits none of the allowed shapes")
SCHEMA_ONE_OF = Code("schema.one_of_not_valid", "fits none of the allowed shapes")
SCHEMA_TYPE = Code("schema.type", "wrong type")
SCHEMA_MINIMUM = Code("schema.minimum", "out of range")
SCHEMA_MAXIMUM = Code("schema.maximum", "out of range")
SCHEMA_EXCLUSIVE_MINIMUM = Code("schema.exclusive_minimum", "out of range")
SCHEMA_EXCLUSIVE_MAXIMUM = Code("schema.exclusive_maximum", "out of range")
SCHEMA_MIN_LENGTH = Code("schema.min_length", "wrong length")
SCHEMA_MAX_LENGTH = Code("schema.max_length", "wrong length")
#: schema.format.<field>: the schema's only patterns are formats, named by their field (schema.format.timestamp).
SCHEMA_FORMAT_PREFIX = "schema.format."
SCHEMA_FORMAT_KIND = "wrong format"
#: Every schema problem's code starts so; a keyword this table lacks is still a code.
SCHEMA_PREFIX = "schema."

LAKE_TIMESTAMP_INSTANT = Code("lake.timestamp.instant", "not a real instant")
LAKE_TIMESTAMP_WINDOW = Code("lake.timestamp.window", "outside the clock window")
LAKE_INTEGER_RANGE = Code("lake.integer.range", "not a whole number in range")
LAKE_NUMBER_FINITE = Code("lake.number.finite", "not a finite number")
EVENT_SHAPE = Code("event.shape", "not a JSON object")
AUTH_PACKAGE = Code("auth.package", "a package the write key may not write")

# A whole request.
AUTH_WRITE_KEY = Code("auth.write_key", "no or an unknown write key", 401)
RATE_LIMIT = Code("rate.limit", "past the write key's rate", 429)
BODY_CONTENT_TYPE = Code("body.content_type", "content type not accepted", 415)
BODY_SIZE = Code("body.size", "body too large", 413)
BODY_MALFORMED = Code("body.malformed", "body is not valid JSON", 400)
BODY_ENCODING = Code("body.encoding", "body is not UTF-8", 400)
BODY_DEPTH = Code("body.depth", "body is nested too deeply", 400)
BODY_SHAPE = Code("body.shape", "body is not an event or an array", 400)
BATCH_EMPTY = Code("batch.empty", "empty array", 400)
BATCH_SIZE = Code("batch.size", "too many events in one batch", 413)
SIZE_EVENT = Code("size.event", "an event too large", 413)

# A topic record the lake writer can make no row of (any producer's).
RECORD_EMPTY = Code("record.empty", "an empty record")
RECORD_SHAPE = Code("record.shape", "not an event record")
RECORD_REQUIRED = Code("record.required", "missing")
# A raw record in Confluent's wire format that the registry cannot vouch for.
RECORD_WIRE_FORMAT = Code("record.wire_format", "a wire-format header cut short")
RECORD_SCHEMA_ID = Code("record.schema_id", "a schema id the registry does not know")

CODES: dict[str, Code] = {c.code: c for c in list(globals().values()) if isinstance(c, Code)}


def kind(code: str) -> str | None:
    """The report's kind of a code; None for a code this table does not know."""
    if code.startswith(SCHEMA_FORMAT_PREFIX):
        return SCHEMA_FORMAT_KIND
    found = CODES.get(code)
    return None if found is None else found.kind


def schema_code(keyword: str) -> str:
    """The code of a JSON Schema keyword's violation (its snake_case name: schema.additional_properties)."""
    return SCHEMA_PREFIX + "".join(f"_{c.lower()}" if c.isupper() else c for c in keyword).lstrip("_")
