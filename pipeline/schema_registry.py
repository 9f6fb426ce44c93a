"""What the stages ask of a schema registry that speaks Confluent's REST API (ours, Confluent's, Apicurio's ccompat,
Redpanda's), and Confluent's wire format. Standard library only: the collector's Lambda ships it.

Subjects follow Confluent's default TopicNameStrategy: a topic's values are `<topic>-value`.
"""

from __future__ import annotations

import base64
import json
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pipeline.config import REPO
from pipeline.config_sections import KafkaConfig
from pipeline.contract import LATEST_VALUE_SCHEMA_FILE, METADATA_FIELDS, RAW_VALUE_SCHEMA_FILE

#: Confluent's wire format: the magic byte 0, the schema's id as a 4-byte big-endian integer, then the payload.
MAGIC_BYTE = 0
HEADER_BYTES = 5
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def value_subject(topic: str) -> str:
    """The subject of a topic's values under Confluent's default naming."""
    return f"{topic}-value"


def framed(schema_id: int, payload: bytes) -> bytes:
    """`payload` in Confluent's wire format, as its serializers write it."""
    return struct.pack(">bI", MAGIC_BYTE, schema_id) + payload


def unframed(value: bytes) -> tuple[int | None, bytes]:
    """The schema id and the payload of a record in the wire format; (None, value) for a record without its
    header (plain JSON)."""
    if len(value) >= HEADER_BYTES and value[0] == MAGIC_BYTE:
        return struct.unpack_from(">I", value, 1)[0], value[HEADER_BYTES:]
    return None, value


class RegistryError(Exception):
    """The registry answered with an error (Confluent's shape: an HTTP status, an error code and a message)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, error code {error_code})")
        self.status, self.error_code, self.message = status, error_code, message


class RegistryUnreachable(OSError):
    """No answer from the registry: refused, timed out, or not HTTP."""


@dataclass(frozen=True)
class RegistryClient:
    """A few of Confluent's REST calls, each with a bounded wait. `user_info` is "user:password" for a registry
    that asks for basic authentication (Confluent's `basic.auth.user.info`)."""

    url: str
    timeout_s: float = 5.0
    user_info: str = ""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url.rstrip("/") + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        if self.user_info:
            request.add_header("Authorization", "Basic " + base64.b64encode(self.user_info.encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())
                code, message = int(error["error_code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = exc.code, exc.reason
            raise RegistryError(exc.code, code, message) from None
        except (OSError, ValueError) as exc:  # URLError, refused, timed out, an answer that is not JSON
            raise RegistryUnreachable(f"the schema registry at {self.url} did not answer: {exc}") from exc

    @staticmethod
    def _schema(schema: str, schema_type: str) -> dict[str, Any]:
        # Confluent's registry takes AVRO when no type is given, and some registries refuse the field for it.
        return {"schema": schema} if schema_type == "AVRO" else {"schema": schema, "schemaType": schema_type}

    def register(self, subject: str, schema: str, schema_type: str) -> int:
        """The id of `schema` under `subject`, registered unless it is there already (409 with the registry's reason
        when the subject's compatibility level refuses it)."""
        path = f"/subjects/{urllib.request.quote(subject, safe='')}/versions"
        return int(self._call("POST", path, self._schema(schema, schema_type))["id"])

    def lookup(self, subject: str, schema: str, schema_type: str) -> int | None:
        """The id of `schema` if `subject` has it as a version, else None."""
        try:
            answer = self._call(
                "POST", f"/subjects/{urllib.request.quote(subject, safe='')}", self._schema(schema, schema_type)
            )
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return int(answer["id"])

    def incompatibilities(self, subject: str, schema: str, schema_type: str) -> list[str]:
        """Why the subject's latest version and its compatibility level refuse `schema`: empty when it is taken
        (or the subject has no version yet)."""
        path = f"/compatibility/subjects/{urllib.request.quote(subject, safe='')}/versions/latest?verbose=true"
        try:
            answer = self._call("POST", path, self._schema(schema, schema_type))
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        if answer.get("is_compatible", True):
            return []
        return [str(m) for m in answer.get("messages") or ["incompatible with the latest version"]]

    def subjects_of(self, schema_id: int) -> list[str]:
        """The subjects that have the schema of `schema_id` as a version; empty for an id the registry never gave."""
        try:
            versions = self._call("GET", f"/schemas/ids/{schema_id}/versions")
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        return [str(v["subject"]) for v in versions]


@dataclass(frozen=True)
class SubjectSchema:
    """A schema of schemas/ and the subject it is registered under."""

    subject: str
    schema: str
    schema_type: str


def raw_value_schema(event_schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a raw record: the event, with the object of metadata the collector adds (its fields in
    contract.METADATA_FIELDS, text or null). The collector asks the registry for this schema's id."""
    metadata = {name: {"type": ["string", "null"]} for name in METADATA_FIELDS}
    collector = {
        "description": "What the collector adds: the request's correlation id, time, address and user agent, and "
        "the event schema's id and version.",
        "type": "object",
        "additionalProperties": False,
        "required": list(METADATA_FIELDS),
        "properties": metadata,
    }
    return {
        **event_schema,
        "$id": event_schema["$id"] + "#raw-record",
        "title": "ClickstreamRecord",
        "description": "A record of the raw topic: an accepted event and what the collector adds to it.",
        "required": [*event_schema["required"], "collector"],
        "properties": {**event_schema["properties"], "collector": collector},
    }


def pipeline_schemas(kafka: KafkaConfig) -> tuple[SubjectSchema, SubjectSchema]:
    """The raw topic's JSON Schema and the latest topic's Avro schema, under their topics' subjects."""
    return (
        SubjectSchema(value_subject(kafka.raw_topic), (REPO / RAW_VALUE_SCHEMA_FILE).read_text(), "JSON"),
        SubjectSchema(value_subject(kafka.latest_topic), (REPO / LATEST_VALUE_SCHEMA_FILE).read_text(), "AVRO"),
    )


class IncompatibleSchema(Exception):
    """The registry's compatibility level refuses a schema of schemas/ (the message gives its reasons)."""


def refusals(client: RegistryClient, schemas: tuple[SubjectSchema, ...]) -> list[str]:
    """Why the registry would refuse each schema that it would refuse, one line per schema."""
    found = [(s.subject, client.incompatibilities(s.subject, s.schema, s.schema_type)) for s in schemas]
    return [f"{subject}: {'; '.join(reasons)}" for subject, reasons in found if reasons]


def register_all(client: RegistryClient, schemas: tuple[SubjectSchema, ...]) -> dict[str, int]:
    """Each schema's id under its subject, registered unless it is there; nothing is registered when the registry
    would refuse any of them (IncompatibleSchema)."""
    refused = refusals(client, schemas)
    if refused:
        raise IncompatibleSchema("the schema registry refuses schemas/: " + " | ".join(refused))
    return {s.subject: client.register(s.subject, s.schema, s.schema_type) for s in schemas}
