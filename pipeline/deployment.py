"""What a deploy recorded, in the runtime folder: the collector's function, its API's URL, the write keys, the shop's
website. `make deploy` writes it; `make run`, the generator, the bench and the tests read it. Standard library only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import Config, load

#: The stage `make deploy` deploys by default; its record is <runtime>/deployment.json.
MAIN_STAGE = "localstack"


def runtime_dir(config: Config | None = None) -> Path:
    """PIDs, logs, services' data and deployment records of a checkout (CLICKSTREAM_RUNTIME)."""
    return Path((config or load()).stack.runtime)


def deployment_file(stage: str = MAIN_STAGE, config: Config | None = None) -> Path:
    """What a stage's deploy recorded: <runtime>/deployment.json for the main stage, deployment-<stage>.json else."""
    return runtime_dir(config) / ("deployment.json" if stage == MAIN_STAGE else f"deployment-{stage}.json")


def read_deployment(stage: str = MAIN_STAGE, config: Config | None = None) -> dict[str, Any] | None:
    """What the last deploy of `stage` recorded, or None if it was never deployed."""
    try:
        return json.loads(deployment_file(stage, config).read_text())
    except FileNotFoundError:
        return None


def deployed_write_key(source: str, stage: str = MAIN_STAGE) -> str | None:
    """The write key `make deploy` made for `source` ("shop", "generator") on `stage`, or None if it made none."""
    return ((read_deployment(stage) or {}).get("write_keys") or {}).get(source)
