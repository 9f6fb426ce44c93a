"""The schema registry (registry/, Confluent's REST API on the seed's port 8085), as a service of the stack."""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.request
from typing import Any

from pipeline.config import Config
from pipeline.schema_registry import (
    IncompatibleSchema,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
    pipeline_schemas,
    register_all,
)
from stack.cluster import current
from stack.paths import REPO, runtime_dir
from stack.process import Service, ServiceError, wait_for_port

log = logging.getLogger(__name__)


def service() -> Service:
    return Service("registry", runtime_dir(), marker="-m registry")


def start(config: Config | None = None, timeout_s: float = 60.0) -> None:
    """The registry in the background, once its log is read and its port answers."""
    config = config or current()
    svc = service()
    if svc.pid() is not None:
        return
    started = time.monotonic()
    svc.start([sys.executable, "-m", "registry"], env=config.child_environment(), cwd=REPO)
    if not wait_for_port(config.registry.host, config.registry.port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"registry did not open port {config.registry.port}; last log lines:\n{svc.log_tail()}")
    log.info("registry: %s in %.1fs (pid %s)", config.registry.url, time.monotonic() - started, svc.pid())


def register_schemas(config: Config) -> dict[str, int]:
    """The pipeline's schemas (schemas/) registered under their topics' subjects, and their ids; a ServiceError with
    the registry's reason when it refuses one (an incompatible change) or does not answer."""
    client = RegistryClient(config.registry.url, user_info=config.registry.user_info)
    try:
        return register_all(client, pipeline_schemas(config.kafka))
    except (IncompatibleSchema, RegistryError) as exc:
        raise ServiceError(str(exc)) from exc
    except RegistryUnreachable as exc:
        raise ServiceError(f"{exc}; `make up` starts the embedded one, SCHEMA_REGISTRY_URL names another") from exc


def stop() -> None:
    if service().stop(timeout_s=10):
        log.info("registry: stopped")


def status(config: Config | None = None) -> str:
    config = config or current()
    pid = service().pid()
    if not pid:
        return "registry: not running"
    try:
        subjects, schemas = _get(config, "/subjects"), _get(config, "/schemas")
        ids = {schema["id"] for schema in schemas}
        return f"registry: running (pid {pid}) on {config.registry.url}: {len(subjects)} subjects, {len(ids)} schemas"
    except OSError as exc:
        return f"registry: running (pid {pid}) on {config.registry.url}, not answering ({exc})"


def _get(config: Config, path: str) -> Any:
    with urllib.request.urlopen(f"{config.registry.url}{path}", timeout=5) as answer:
        return json.load(answer)
