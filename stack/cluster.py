"""`CLUSTER=1`: the scale-out path on one machine, without Docker.

Three Kafka nodes in KRaft mode (each broker and controller, a static quorum of three) with topics replicated
three times and `min.insync.replicas=2`, and a Spark standalone master and worker started from PySpark's own
jars with `spark-class`; the lake writer is submitted to the master unchanged. CLUSTER=1 only changes
defaults (below); an explicit variable still wins. `make up` records the choice in the runtime folder, so
later commands (`make deploy`, `make status`, `make run`, `make down`) follow the running stack without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stack.paths import runtime_dir

#: What CLUSTER=1 changes. Each Kafka node's controller and SASL_SSL listener listen on the ports at its place in
#: the lists.
CLUSTER_DEFAULTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292",
    "KAFKA_CONTROLLER_PORT": "9093,9193,9293",
    "KAFKA_SASL_SSL_PORT": "9094,9194,9294",
    "SPARK_MASTER": "spark://127.0.0.1:7077",
}


def marker() -> Path:
    return runtime_dir() / "cluster.json"


def enabled() -> bool:
    """CLUSTER=1 (or 0) if set, else whether the running stack was started as a cluster."""
    choice = os.environ.get("CLUSTER", "").strip()
    return choice == "1" if choice else marker().exists()


def apply_defaults() -> None:
    """Put the cluster's settings into this process's environment (and its children's), when clustered: those
    the running cluster was started with, else the defaults."""
    if not enabled():
        return
    try:
        values = {**CLUSTER_DEFAULTS, **json.loads(marker().read_text())}
    except (FileNotFoundError, ValueError):
        values = CLUSTER_DEFAULTS
    for name, value in values.items():
        if value:
            os.environ.setdefault(name, value)


def record(clustered: bool) -> None:
    """Remember (at `make up`) or forget (at `make down`) that the stack runs as a cluster."""
    if clustered:
        marker().parent.mkdir(parents=True, exist_ok=True)
        marker().write_text(json.dumps({name: os.environ.get(name, "") for name in CLUSTER_DEFAULTS}) + "\n")
    else:
        marker().unlink(missing_ok=True)
