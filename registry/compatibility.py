"""Compatibility levels, checked for AVRO schemas with Apache Avro's own ReaderWriterCompatibilityChecker.

BACKWARD: the new schema reads data written with the last one; FORWARD: the last reads the new one's; FULL: both.
Their _TRANSITIVE forms check against every live version, not only the last. NONE checks nothing. JSON and
PROTOBUF schemas are stored and served under any level, unchecked (README says so)."""

from __future__ import annotations

from collections.abc import Sequence

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from registry.schemas import AVRO, ParsedSchema

BACKWARD, FORWARD, FULL, NONE = "BACKWARD", "FORWARD", "FULL", "NONE"
LEVELS = (BACKWARD, f"{BACKWARD}_TRANSITIVE", FORWARD, f"{FORWARD}_TRANSITIVE", FULL, f"{FULL}_TRANSITIVE", NONE)
DEFAULT_LEVEL = BACKWARD


def problems(level: str, new: ParsedSchema, existing: Sequence[ParsedSchema]) -> list[str]:
    """Why `new` is not compatible under `level` with `existing` (the subject's live versions, oldest first);
    empty when it is."""
    if level == NONE or not existing or new.schema_type != AVRO:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    directions = {BACKWARD: ("new", "old"), FORWARD: ("old", "new"), FULL: ("new", "old", "old", "new")}
    pairs = directions[level.removesuffix("_TRANSITIVE")]
    found: list[str] = []
    for old in against:
        if old.schema_type != AVRO:
            continue
        for reader_name, writer_name in zip(pairs[::2], pairs[1::2], strict=True):
            reader, writer = (new if reader_name == "new" else old), (new if writer_name == "new" else old)
            result = ReaderWriterCompatibilityChecker().get_compatibility(reader.avro, writer.avro)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                kinds = ", ".join(sorted(str(kind.value) for kind in result.incompatibilities))
                where = ", ".join(sorted(result.locations))
                found.append(f"{kinds} at {where} ({reader_name} schema reading {writer_name} data, {level})")
    return found
