"""What every stage agrees on about a record, in the standard library only: the collector writes it, the lake
writer (which must not need the Lambda's packages), the readers and the schema generator read it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: The "collector" object added to every raw record, in this order (all strings; received_at is ISO-8601 UTC).
METADATA_FIELDS = ("correlation_id", "received_at", "source_ip", "user_agent", "schema_id", "schema_version")

INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)


def is_int32(prop: dict[str, Any]) -> bool:
    """Whether a JSON Schema integer's bounds fit 32 bits: its lake column (and Avro/Protobuf field) is then
    32-bit, else 64-bit."""
    low, high = INT32_RANGE
    return prop.get("maximum", high + 1) <= high and prop.get("minimum", low - 1) >= low


def integer_range(prop: dict[str, Any]) -> tuple[int, int]:
    """The values the lake column of a JSON Schema integer holds."""
    return INT32_RANGE if is_int32(prop) else INT64_RANGE


#: The stage `make deploy` deploys by default; its record is <runtime>/deployment.json.
MAIN_STAGE = "localstack"


def runtime_dir() -> Path:
    """PIDs, logs, service data and deployment records of a checkout: $CLICKSTREAM_RUNTIME, default <repo>/.runtime
    (this file is <repo>/chalice_app/chalicelib/contract.py in a checkout)."""
    return Path(os.environ.get("CLICKSTREAM_RUNTIME") or Path(__file__).resolve().parents[2] / ".runtime")


def deployment_file(stage: str = MAIN_STAGE) -> Path:
    """What a stage's deploy recorded: <runtime>/deployment.json for the main stage, deployment-<stage>.json else."""
    return runtime_dir() / ("deployment.json" if stage == MAIN_STAGE else f"deployment-{stage}.json")


def read_deployment(stage: str = MAIN_STAGE) -> dict[str, Any] | None:
    """What the last deploy of `stage` recorded (function, API id and URL, write keys, website), or None if never
    deployed."""
    try:
        return json.loads(deployment_file(stage).read_text())
    except FileNotFoundError:
        return None


def deployed_write_key(source: str, stage: str = MAIN_STAGE) -> str | None:
    """The write key `make deploy` made for `source` ("shop", "generator") on `stage`, or None if it made none."""
    return ((read_deployment(stage) or {}).get("write_keys") or {}).get(source)
