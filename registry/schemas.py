"""The schema types the registry takes, each parsed once when registered: AVRO (Apache Avro's own parser), JSON
(a JSON Schema document) and PROTOBUF (the .proto text, kept as written). A schema's canonical text is what two
registrations of "the same schema" share (so the second gets the first's id)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import avro.schema

from registry.errors import RegistryError

AVRO, JSON, PROTOBUF = "AVRO", "JSON", "PROTOBUF"
#: GET /schemas/types, in Confluent's order.
TYPES = (JSON, PROTOBUF, AVRO)


@dataclass(frozen=True)
class ParsedSchema:
    """A schema as registered: its type, its text as sent, its canonical text and (for AVRO) the parsed schema."""

    schema_type: str
    text: str
    canonical: str
    avro: Any = None

    @property
    def identity(self) -> tuple[str, str]:
        """What two registrations of the same schema share."""
        return self.schema_type, self.canonical


def parse(text: Any, schema_type: str | None) -> ParsedSchema:
    """The schema of a request body's `schema` and `schemaType` (AVRO when absent), or a 422 saying why not."""
    kind = (schema_type or AVRO).upper()
    if kind not in TYPES:
        raise RegistryError.invalid_schema(f"unknown schema type {schema_type!r}: one of {', '.join(TYPES)}")
    if not isinstance(text, str) or not text.strip():
        raise RegistryError.invalid_schema("the schema is missing or not a string")
    if kind == PROTOBUF:
        return ParsedSchema(kind, text, text.strip())
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RegistryError.invalid_schema(f"the {kind} schema is not JSON: {exc}") from exc
    if kind == JSON:
        if not isinstance(document, dict | bool):
            raise RegistryError.invalid_schema("a JSON schema is an object (or true/false)")
        return ParsedSchema(kind, text, json.dumps(document, sort_keys=True, separators=(",", ":")))
    try:
        parsed = avro.schema.parse(text)
    except (avro.errors.AvroException, TypeError, ValueError, KeyError) as exc:
        raise RegistryError.invalid_schema(f"the Avro schema does not parse: {exc}") from exc
    return ParsedSchema(kind, text, json.dumps(parsed.to_json(), separators=(",", ":")), parsed)
