"""What the registry does, behind its HTTP routes: every change written to its log (and acknowledged there) before
it is applied and answered, so an answer tells the truth after a restart too."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from registry import compatibility
from registry.errors import (
    INCOMPATIBLE,
    INVALID_SUBJECT,
    SUBJECT_CONFIG_NOT_FOUND,
    SUBJECT_NOT_SOFT_DELETED,
    SUBJECT_SOFT_DELETED,
    VERSION_NOT_SOFT_DELETED,
    VERSION_SOFT_DELETED,
    RegistryError,
)
from registry.schemas import ParsedSchema, parse
from registry.state import WATERMARK_KEY, RegistryState, Version, config_key, schema_record

#: Longer names are refused: a topic's name (249 characters at most) and "-value".
MAX_SUBJECT = 255


class SchemaLog(Protocol):
    """Where the registry's records live: read whole at start, appended to durably."""

    def read_all(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]: ...

    def append(self, key: dict[str, Any], value: dict[str, Any] | None) -> None: ...


class SchemaRegistry:
    def __init__(self, log: SchemaLog) -> None:
        self.log = log
        self.state = RegistryState()
        for key, value in log.read_all():
            self.state.apply(key, value)
        #: Held by each request (registry/http_api.py) and each change: no answer reads a state half changed.
        self.lock = threading.RLock()

    def _write(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        self.log.append(key, value)
        self.state.apply(key, value)

    # Subjects and versions

    def register(self, subject: str, body: dict[str, Any]) -> int:
        check_subject(subject)
        schema = schema_of(body)
        with self.lock:
            live = self.state.live(subject)
            same = [v for v in live if v.schema.identity == schema.identity]
            if same:
                return same[0].id
            found = compatibility.problems(self.level(subject), schema, [v.schema for v in live])
            if found:
                raise RegistryError(
                    409, INCOMPATIBLE,
                    f"Schema being registered is incompatible with an earlier schema for subject \"{subject}\", "
                    f"details: {found}",
                )  # fmt: skip
            schema_id = self.state.id_of(schema) or self.state.max_id + 1
            number = max((v.version for v in self.state.all_versions(subject)), default=0) + 1
            self._write(*schema_record(Version(subject, number, schema_id, schema)))
            return schema_id

    def lookup(self, subject: str, body: dict[str, Any], deleted: bool = False) -> Version:
        schema = schema_of(body)
        versions = self.state.listed(subject, deleted)
        if not versions:
            raise RegistryError.subject_not_found(subject)
        for entry in versions:
            if entry.schema.identity == schema.identity:
                return entry
        raise RegistryError.schema_not_found()

    def subjects(self, deleted: bool = False) -> list[str]:
        return sorted(s for s in self.state.versions if deleted or self.state.live(s))

    def version_numbers(self, subject: str, deleted: bool = False) -> list[int]:
        versions = self.state.listed(subject, deleted)
        if not versions:
            raise RegistryError.subject_not_found(subject)
        return [v.version for v in versions]

    def version(self, subject: str, version: str, deleted: bool = False) -> Version:
        versions = self.state.listed(subject, deleted)
        if not versions:
            raise RegistryError.subject_not_found(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        number = version_number(version)
        for entry in versions:
            if entry.version == number:
                return entry
        raise RegistryError.version_not_found(subject, number)

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        with self.lock:
            every, live = self.state.all_versions(subject), self.state.live(subject)
            if not every:
                raise RegistryError.subject_not_found(subject)
            if not permanent:
                if not live:
                    raise RegistryError(404, SUBJECT_SOFT_DELETED, f"Subject '{subject}' was soft deleted.")
                for entry in live:
                    self._write(*schema_record(_deleted(entry)))
                return [v.version for v in live]
            if live:
                raise RegistryError(
                    404, SUBJECT_NOT_SOFT_DELETED,
                    f"Subject '{subject}' was not deleted first before being permanently deleted",
                )  # fmt: skip
            self._purge(every)
            return [v.version for v in every]

    def delete_version(self, subject: str, version: str, permanent: bool = False) -> int:
        with self.lock:
            entry = self.version(subject, version, deleted=True)
            if not permanent:
                if entry.deleted:
                    raise RegistryError(404, VERSION_SOFT_DELETED, f"Version {entry.version} was soft deleted.")
                self._write(*schema_record(_deleted(entry)))
            elif not entry.deleted:
                raise RegistryError(
                    404, VERSION_NOT_SOFT_DELETED,
                    f"Version {entry.version} was not deleted first before being permanently deleted",
                )  # fmt: skip
            else:
                self._purge([entry])
            return entry.version

    def _purge(self, versions: list[Version]) -> None:
        # The watermark first: the highest id stays given even once its last record is compacted away.
        self._write(WATERMARK_KEY, {"max_id": self.state.max_id})
        for entry in versions:
            self._write(schema_record(entry)[0], None)

    # Schemas by id

    def schema(self, schema_id: int) -> ParsedSchema:
        found = self.state.schemas.get(schema_id)
        if found is None:
            raise RegistryError.schema_not_found(f"Schema {schema_id} not found")
        return found

    def versions_of(self, schema_id: int, deleted: bool = False) -> list[Version]:
        self.schema(schema_id)
        return [
            entry
            for subject in sorted(self.state.versions)
            for entry in self.state.all_versions(subject)
            if entry.id == schema_id and (deleted or not entry.deleted)
        ]

    # Compatibility

    def level(self, subject: str | None = None) -> str:
        levels = self.state.levels
        return levels.get(subject) or levels.get(None) or compatibility.DEFAULT_LEVEL

    def subject_level(self, subject: str, default_to_global: bool) -> str:
        if subject in self.state.levels:
            return self.state.levels[subject]
        if default_to_global:
            return self.level(None)
        raise RegistryError(
            404, SUBJECT_CONFIG_NOT_FOUND, f"Subject '{subject}' does not have subject-level compatibility configured"
        )

    def set_level(self, subject: str | None, body: dict[str, Any]) -> str:
        level = body.get("compatibility") if isinstance(body, dict) else None
        if not isinstance(level, str) or level.upper() not in compatibility.LEVELS:
            raise RegistryError.invalid_level(level)
        if subject is not None:
            check_subject(subject)
        with self.lock:
            self._write(config_key(subject), {"compatibilityLevel": level.upper()})
        return level.upper()

    def unset_level(self, subject: str) -> str:
        with self.lock:
            if subject not in self.state.levels:
                raise RegistryError.subject_not_found(subject)
            level = self.state.levels[subject]
            self._write(config_key(subject), None)
            return level

    def compatible(self, subject: str, version: str, body: dict[str, Any]) -> list[str]:
        """Why the body's schema could not be registered against `version` of the subject (empty: it could)."""
        schema = schema_of(body)
        level = self.level(subject)
        if version in ("latest", "-1"):
            live = self.state.live(subject)
            if not live:
                raise RegistryError.subject_not_found(subject)
            return compatibility.problems(level, schema, [v.schema for v in live])
        entry = self.version(subject, version)
        return compatibility.problems(level.removesuffix("_TRANSITIVE"), schema, [entry.schema])


def schema_of(body: Any) -> ParsedSchema:
    if not isinstance(body, dict):
        raise RegistryError.unprocessable("the request body is not a JSON object with a schema")
    if body.get("references"):
        raise RegistryError.invalid_schema("schema references are not supported by this registry")
    return parse(body.get("schema"), body.get("schemaType"))


def check_subject(subject: str) -> None:
    if not subject or len(subject) > MAX_SUBJECT or any(ord(c) < 32 for c in subject):
        raise RegistryError(
            422, INVALID_SUBJECT, f"Invalid subject: 1 to {MAX_SUBJECT} characters, no control characters"
        )


def version_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise RegistryError.invalid_version(text) from None
    if number < 1 or number > 2**31 - 1:
        raise RegistryError.invalid_version(text)
    return number


def _deleted(entry: Version) -> Version:
    return Version(entry.subject, entry.version, entry.id, entry.schema, deleted=True)
