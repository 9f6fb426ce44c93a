"""Confluent Schema Registry's errors: an HTTP status and a body `{"error_code": N, "message": "..."}`, the codes
its clients act on (confluent-kafka's SchemaRegistryError carries both)."""

from __future__ import annotations

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_CONFIG_NOT_FOUND = 40408
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_SUBJECT = 42208
UNPROCESSABLE = 422
NOT_FOUND = 404
STORE_ERROR = 50001


class RegistryError(Exception):
    """An answer that is not a success, in Confluent's shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, object]:
        return {"error_code": self.code, "message": self.message}

    @classmethod
    def subject_not_found(cls, subject: str) -> RegistryError:
        return cls(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")

    @classmethod
    def version_not_found(cls, subject: str, version: object) -> RegistryError:
        return cls(404, VERSION_NOT_FOUND, f"Version {version} not found for subject '{subject}'.")

    @classmethod
    def schema_not_found(cls, detail: str = "Schema not found") -> RegistryError:
        return cls(404, SCHEMA_NOT_FOUND, detail)

    @classmethod
    def invalid_schema(cls, detail: str) -> RegistryError:
        return cls(422, INVALID_SCHEMA, f"Invalid schema: {detail}")

    @classmethod
    def invalid_version(cls, version: object) -> RegistryError:
        return cls(422, INVALID_VERSION, f"The specified version '{version}' is not a valid version id.")

    @classmethod
    def invalid_level(cls, level: object) -> RegistryError:
        return cls(422, INVALID_COMPATIBILITY_LEVEL, f"Invalid compatibility level: {level!r}")

    @classmethod
    def unprocessable(cls, detail: str) -> RegistryError:
        return cls(422, UNPROCESSABLE, detail)
