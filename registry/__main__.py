"""`python -m registry`: the schema registry on SCHEMA_REGISTRY_HOST:SCHEMA_REGISTRY_PORT, its log the
SCHEMA_REGISTRY_TOPIC of KAFKA_BOOTSTRAP_SERVERS, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from pipeline.config import load
from registry.http_api import server
from registry.kafka_log import KafkaSchemaLog
from registry.service import SchemaRegistry


def main() -> int:
    config = load()
    log = KafkaSchemaLog(config.kafka.servers, config.registry.topic)
    registry = SchemaRegistry(log)
    httpd = server(registry, config.registry.host, config.registry.port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    print(
        f"registry: {len(registry.subjects())} subjects, {len(registry.state.schemas)} schemas from "
        f"{config.registry.topic}; serving on http://{config.registry.host}:{config.registry.port}",
        flush=True,
    )
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
