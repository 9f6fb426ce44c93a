"""The Kafka UIs, in a virtualenv of their own (kafka_ui/requirements.txt): kafka-viewer, a Streamlit page on the seed's
port 8080 started by `make up`, and kaskade, a terminal UI (`make kafka-tui`); both pointed at the broker and the
schema registry, so the latest topic's Avro records show decoded."""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from pathlib import Path

from pipeline.config import Config
from stack.cluster import current
from stack.paths import REPO, runtime_dir
from stack.process import Service, ServiceError, wait_for_port
from stack.venvs import Virtualenv, requirements

log = logging.getLogger(__name__)

REQUIREMENTS = REPO / "kafka_ui" / "requirements.txt"
HOST = "127.0.0.1"


def venv() -> Virtualenv:
    return Virtualenv("kafka-ui", (REQUIREMENTS,))


def install() -> None:
    venv().ensure(requirements(REQUIREMENTS), what="kafka-viewer and kaskade")


def url(config: Config) -> str:
    return f"http://{HOST}:{config.kafka_ui.port}"


def service() -> Service:
    return Service("kafka-ui", runtime_dir(), marker="kafka-viewer")


def viewer_properties(config: Config) -> Path:
    """kafka-viewer's properties file, in the runtime folder: the broker and the registry (SASL_SSL settings are
    not passed: the embedded stack's plaintext listener is the UI's)."""
    path = runtime_dir() / "kafka-ui.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"kafka.bootstrap.servers={config.kafka.bootstrap_servers}\nschema.registry.url={config.registry.url}\n"
    )
    return path


def start(config: Config | None = None, timeout_s: float = 60.0) -> None:
    """kafka-viewer in the background, once its health answers; nothing when KAFKA_UI_PORT is 0."""
    config = config or current()
    svc = service()
    if not config.kafka_ui.port or svc.pid() is not None:
        return
    install()
    started = time.monotonic()
    env = {
        **os.environ,
        "STREAMLIT_SERVER_PORT": str(config.kafka_ui.port),
        "STREAMLIT_SERVER_ADDRESS": HOST,
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    command = [str(venv().path / "bin" / "kafka-viewer"), "--config", str(viewer_properties(config))]
    svc.start(command, env=env, cwd=runtime_dir())
    if not wait_for_port(HOST, config.kafka_ui.port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"kafka-ui did not open port {config.kafka_ui.port}; last log lines:\n{svc.log_tail()}")
    log.info("kafka-ui: %s in %.1fs (pid %s)", url(config), time.monotonic() - started, svc.pid())


def stop() -> None:
    if service().stop(timeout_s=10):
        log.info("kafka-ui: stopped")


def status(config: Config | None = None) -> str:
    config = config or current()
    pid = service().pid()
    if not pid:
        return "kafka-ui: not running" + ("" if config.kafka_ui.port else " (KAFKA_UI_PORT=0)")
    try:
        with urllib.request.urlopen(f"{url(config)}/_stcore/health", timeout=5) as answer:
            health = answer.read().decode().strip()
    except OSError as exc:
        health = f"not answering ({exc})"
    return f"kafka-ui: running (pid {pid}) on {url(config)} (kafka-viewer): {health}"


def terminal_command(config: Config | None = None, topic: str = "") -> list[str]:
    """kaskade's command line: its admin mode (topics, partitions, consumer groups and their lag), or with `topic`
    its consumer mode on that topic from the first offset, decoding values through the registry."""
    config = config or current()
    kaskade = [str(venv().path / "bin" / "kaskade")]
    if not topic:
        return [*kaskade, "admin", "-b", config.kafka.bootstrap_servers]
    registry = ["-v", "registry", "--registry", f"url={config.registry.url}"]
    return [*kaskade, "consumer", "-b", config.kafka.bootstrap_servers, "-t", topic, "--earliest", *registry]
