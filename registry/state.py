"""The registry's state, made only by applying its log's records in order (at start, the whole `_schemas` topic;
then each record it writes), in the format Confluent's registry keeps there:

  key {"keytype": "SCHEMA", "subject": S, "version": V, "magic": 1}
      value {"subject", "version", "id", "schema", "schemaType" (not for AVRO), "deleted"}; null: purged
  key {"keytype": "CONFIG", "subject": S or null, "magic": 0}   value {"compatibilityLevel": L}; null: unset
  key {"keytype": "ID_WATERMARK", "magic": 0}                    value {"max_id": N}

The watermark is ours: a purged schema's record goes with compaction, and its id must still never be given again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.schemas import AVRO, ParsedSchema, parse


@dataclass(frozen=True)
class Version:
    subject: str
    version: int
    id: int
    schema: ParsedSchema
    deleted: bool = False


@dataclass
class RegistryState:
    versions: dict[str, dict[int, Version]] = field(default_factory=dict)
    schemas: dict[int, ParsedSchema] = field(default_factory=dict)
    levels: dict[str | None, str] = field(default_factory=dict)
    max_id: int = 0

    def apply(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        kind = key.get("keytype")
        if kind == "SCHEMA":
            self._apply_schema(key, value)
        elif kind == "CONFIG":
            if value is None:
                self.levels.pop(key.get("subject"), None)
            else:
                self.levels[key.get("subject")] = value["compatibilityLevel"]
        elif kind == "ID_WATERMARK" and value is not None:
            self.max_id = max(self.max_id, int(value["max_id"]))
        # NOOP, DELETE_SUBJECT and keys of later formats change nothing here.

    def _apply_schema(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        subject, number = key["subject"], int(key["version"])
        if value is None:
            self.versions.get(subject, {}).pop(number, None)
            if not self.versions.get(subject):
                self.versions.pop(subject, None)
            return
        schema_id = int(value["id"])
        schema = self.schemas.get(schema_id) or parse(value["schema"], value.get("schemaType", AVRO))
        self.schemas[schema_id] = schema
        self.max_id = max(self.max_id, schema_id)
        entry = Version(subject, number, schema_id, schema, bool(value.get("deleted", False)))
        self.versions.setdefault(subject, {})[number] = entry

    def live(self, subject: str) -> list[Version]:
        """The subject's versions not soft-deleted, oldest first."""
        return [v for _, v in sorted(self.versions.get(subject, {}).items()) if not v.deleted]

    def all_versions(self, subject: str) -> list[Version]:
        return [v for _, v in sorted(self.versions.get(subject, {}).items())]

    def listed(self, subject: str, deleted: bool) -> list[Version]:
        """The subject's versions a request sees: the soft-deleted ones too with `?deleted=true`."""
        return self.all_versions(subject) if deleted else self.live(subject)

    def id_of(self, schema: ParsedSchema) -> int | None:
        """The id a schema of the same type and canonical text already has, if any."""
        for schema_id, known in self.schemas.items():
            if known.identity == schema.identity:
                return schema_id
        return None


def schema_record(entry: Version) -> tuple[dict[str, Any], dict[str, Any]]:
    """The SCHEMA record of a version (soft-deleted or not)."""
    key = {"keytype": "SCHEMA", "subject": entry.subject, "version": entry.version, "magic": 1}
    value: dict[str, Any] = {
        "subject": entry.subject,
        "version": entry.version,
        "id": entry.id,
        "schema": entry.schema.text,
        "deleted": entry.deleted,
    }
    if entry.schema.schema_type != AVRO:
        value["schemaType"] = entry.schema.schema_type
    return key, value


def config_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}


WATERMARK_KEY = {"keytype": "ID_WATERMARK", "magic": 0}
