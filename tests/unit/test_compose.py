"""docker-compose.yaml is a valid Compose file and agrees with the project's defaults and version pins.

No Docker needed: the file is checked against the Compose Specification's JSON Schema (vendored under
tests/vendor/compose-spec/) and read as data. `${VAR:-default}` values are read with an empty environment,
so what is checked is what a fresh `docker compose up` gets.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from pipeline.config import Config
from tests.compose_file import command, environment, load_compose, service
from tests.versions import pinned_kafka_version, pinned_localstack_version, pinned_pyspark_version

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "tests" / "vendor" / "compose-spec" / "compose-spec.json"

# The PySpark version the lake writer runs on (pyproject.toml pins it; tests/unit/test_versions.py checks
# spark/pom.xml against it): the connector and the Spark image must be the same version.
PYSPARK_VERSION = pinned_pyspark_version()
SPARK_KAFKA_CONNECTOR = "org.apache.spark:spark-sql-kafka-0-10_2.13"

TOPIC_SETTINGS = ("KAFKA_RAW_TOPIC", "KAFKA_INVALID_TOPIC", "KAFKA_LATEST_TOPIC")


# --- reading the file -------------------------------------------------------------------------------------


def schema_errors(document: Any) -> list[str]:
    validator = Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document))


#: Every setting's default, whatever the developer's environment holds.
DEFAULTS = Config.defaults().environment()


def default(name: str) -> str:
    return DEFAULTS[name]


def published_ports(svc: dict[str, Any]) -> set[int]:
    """Host ports of a service, from the short (`[ip:]host:container`) and the long syntax."""
    ports = set()
    for port in svc.get("ports", []):
        if isinstance(port, dict):
            published = port.get("published")
        else:
            parts = str(port).split("/")[0].split(":")
            published = parts[-2] if len(parts) > 1 else None
        if published:
            ports.add(int(published))
    return ports


def image_tag(svc: dict[str, Any]) -> str:
    return svc["image"].rpartition(":")[2]


def option_values(tokens: list[str], option: str) -> list[str]:
    return [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token == option]


def created_topics(compose: dict[str, Any]) -> dict[str, int]:
    """Topic -> partitions, for each `kafka-topics.sh --create` kafka-init runs."""
    script = " ".join(command(service(compose, "kafka-init")))
    topics = {}
    for call in re.split(r"\S*kafka-topics\.sh", script)[1:]:
        tokens = shlex.split(call.split("&&")[0])
        assert "--create" in tokens, call
        [topic] = option_values(tokens, "--topic")
        [partitions] = option_values(tokens, "--partitions")
        topics[topic] = int(partitions)
    return topics


# --- the schema -------------------------------------------------------------------------------------------


def test_vendored_schema_is_a_valid_draft_7_schema() -> None:
    Draft7Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_compose_file_matches_the_compose_specification() -> None:
    assert schema_errors(load_compose()) == []


def _ports_as_a_number(compose: dict[str, Any]) -> None:
    service(compose, "kafka")["ports"] = 9092


def _unknown_top_level_key(compose: dict[str, Any]) -> None:
    compose["service"] = compose["services"]


def _misspelt_service_key(compose: dict[str, Any]) -> None:
    service(compose, "kafka")["imagee"] = service(compose, "kafka").pop("image")


def _bad_depends_on_condition(compose: dict[str, Any]) -> None:
    service(compose, "kafka-init")["depends_on"]["kafka"]["condition"] = "service_ready"


@pytest.mark.parametrize(
    "breakage", [_ports_as_a_number, _unknown_top_level_key, _misspelt_service_key, _bad_depends_on_condition]
)
def test_schema_rejects_a_broken_copy(breakage: Any) -> None:
    broken = copy.deepcopy(load_compose())
    breakage(broken)
    assert schema_errors(broken) != []


# --- what the schema cannot see ---------------------------------------------------------------------------


def test_every_image_is_pinned() -> None:
    for name, svc in load_compose()["services"].items():
        image = svc.get("image", "")
        assert ":" in image and image_tag(svc) not in ("", "latest"), f"{name}: {image!r} is not pinned"


def test_dependencies_exist_and_can_be_waited_for() -> None:
    services = load_compose()["services"]
    for name, svc in services.items():
        for target, dependency in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on an undefined service {target}"
            if dependency.get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"


def test_lambda_containers_join_the_compose_network() -> None:
    compose = load_compose()
    network = compose["networks"]["default"]["name"]
    assert environment(service(compose, "localstack"))["LAMBDA_DOCKER_NETWORK"] == network


# --- agreement with the project's defaults and pins -------------------------------------------------------


def test_kafka_init_creates_the_pipeline_topics_with_their_partitions() -> None:
    topics = created_topics(load_compose())
    forgotten = default("KAFKA_FORGOTTEN_TOPIC")
    assert topics.pop(forgotten) == 1  # the list of the forgotten customers: one partition, read whole
    assert sorted(topics) == sorted(default(name) for name in TOPIC_SETTINGS)
    assert set(topics.values()) == {int(default("KAFKA_TOPIC_PARTITIONS"))}


def test_kafka_publishes_the_default_bootstrap_port() -> None:
    port = int(DEFAULTS["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2])
    assert port == 9092
    assert port in published_ports(service(load_compose(), "kafka"))


def test_localstack_publishes_4566_and_runs_the_pinned_version() -> None:
    localstack = service(load_compose(), "localstack")
    assert 4566 in published_ports(localstack)
    assert localstack["image"].startswith("localstack/localstack:")
    assert image_tag(localstack) == pinned_localstack_version()


def test_kafka_images_run_the_pinned_kafka_version() -> None:
    kafka_images = [svc for svc in load_compose()["services"].values() if svc["image"].startswith("apache/kafka:")]
    assert len(kafka_images) >= 2  # the broker and kafka-init
    assert {image_tag(svc) for svc in kafka_images} == {pinned_kafka_version()}


def test_spark_job_writes_to_the_default_lake_bucket() -> None:
    job = service(load_compose(), "spark-job")
    bucket = DEFAULTS["LAKE_BUCKET"]
    assert environment(job).get("LAKE_BUCKET") == bucket or bucket in " ".join(command(job))


def test_init_services_create_the_default_lake_bucket() -> None:
    compose = load_compose()
    for name in ("lake-init", "minio-init"):
        assert command(service(compose, name))[-1].endswith("/" + DEFAULTS["LAKE_BUCKET"]), name


def test_spark_connector_and_image_match_the_pyspark_version() -> None:
    compose = load_compose()
    [packages] = option_values(command(service(compose, "spark-job")), "--packages")
    versions = {c.rpartition(":")[2] for c in packages.split(",") if c.startswith(SPARK_KAFKA_CONNECTOR + ":")}
    assert versions == {PYSPARK_VERSION}
    for name in ("spark-master", "spark-worker", "spark-job"):
        assert image_tag(service(compose, name)).split("-")[0] == PYSPARK_VERSION, name
        assert service(compose, name)["build"]["dockerfile"] == "spark/Dockerfile", name


def test_the_spark_image_is_apache_sparks_with_the_lake_writers_packages() -> None:
    dockerfile = (REPO / "spark" / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base == f"apache/spark:{PYSPARK_VERSION}-python3"
    assert "pip install --no-cache-dir -r /tmp/lake-writer-requirements.txt" in dockerfile
    assert "COPY spark/requirements.txt /tmp/lake-writer-requirements.txt" in dockerfile


def test_spark_job_takes_the_delta_lake_version_spark_pom_pins() -> None:
    [packages] = option_values(command(service(load_compose(), "spark-job")), "--packages")
    pinned = re.search(r"<delta.version>([^<]+)</delta.version>", (REPO / "spark" / "pom.xml").read_text())
    assert pinned is not None
    assert f"io.delta:delta-spark_{PYSPARK_VERSION.rsplit('.', 1)[0]}_2.13:{pinned[1]}" in packages.split(",")
