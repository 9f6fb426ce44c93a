"""The configuration tree (pipeline/config.py): every setting the code reads is in it, README's table is made from it,
it crosses to a child whole, and a default, a topic's name or a problem code is written in one place only."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pipeline import contract, problems
from pipeline.config import (
    CONFIG_VARIABLE,
    LAKE_STORE_RECORD,
    README,
    Config,
    ConfigError,
    load,
    readme_with_table,
    variables,
)

REPO = Path(__file__).resolve().parents[2]
#: The project's Python, where a setting could be read or a default written.
SOURCES = ["pipeline", "chalice_app", "spark", "lake", "generator", "schemas", "stack", "run", "bench", "localstack"]
#: Variables that are not the pipeline's settings: the Lambda runtime's own (the executor sets them as AWS does),
#: the executor plugin's knobs (its own README), and the machine's.
NOT_SETTINGS = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "LAMBDA_TASK_ROOT", "LD_LIBRARY_PATH", "PATH", "PYENV_ROOT", "HOME",
    "LAMBDA_LOCAL_PYTHON", "LAMBDA_LOCAL_RUNTIME_LIBS", CONFIG_VARIABLE,
}  # fmt: skip


def python_files() -> list[Path]:
    return [p for folder in SOURCES for p in (REPO / folder).rglob("*.py")]


def test_readmes_settings_table_is_the_one_the_tree_makes() -> None:
    readme = README.read_text()
    assert readme_with_table(readme) == readme, "README's settings table is stale: run `make docs`"


def test_every_environment_variable_the_code_reads_is_a_setting_of_the_tree() -> None:
    read = set()
    for path in python_files():
        text = path.read_text()
        read |= set(re.findall(r'environ(?:\.get)?[\[(]"([A-Z_][A-Z0-9_]*)"', text))
        read |= set(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"', text))
    read = {name for name in read if not name.startswith("AWS_LAMBDA_")}
    assert read, "no environment variables found: the pattern is stale"
    settings = {variable.name for _, variable in variables()}
    assert sorted(read - settings - NOT_SETTINGS) == []


def test_the_tree_crosses_to_a_child_whole_as_a_document_or_as_variables() -> None:
    config = Config.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k:1", "LAKE_BUCKET": "b", "CORS_ALLOWED_ORIGINS": "a,b"})
    assert Config.from_json(config.to_json()) == config
    assert Config.from_env(config.environment()) == config
    assert load({CONFIG_VARIABLE: config.to_json(), "KAFKA_BOOTSTRAP_SERVERS": "ignored:2"}) == config
    child = config.child_environment({"PATH": "/bin"})
    assert load(child) == config and child["PATH"] == "/bin"


def test_the_jvm_options_reach_the_driver_and_the_executors_whole() -> None:
    from stack import spark

    options = "-XX:+UseSerialGC -XX:CompileThresholdScaling=3"
    config = Config.from_env({"SPARK_JAVA_OPTIONS": options, "SPARK_MASTER": "spark://127.0.0.1:7077"})
    # PySpark splits PYSPARK_SUBMIT_ARGS as a shell would.
    argv = shlex.split(spark.submit_args(config))
    # Each with its class-data archive's options after them (stack/class_archives.py).
    for jvm in ("driver", "executor"):
        [given] = [arg for arg in argv if arg.startswith(f"spark.{jvm}.extraJavaOptions=")]
        assert given.startswith(f"spark.{jvm}.extraJavaOptions={options} -XX:")
    assert argv[-1] == "pyspark-shell"


def test_a_stacks_lake_writer_keeps_its_latest_checkpoint_on_local_disk_one_per_job_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stack import spark

    monkeypatch.setenv("CLICKSTREAM_RUNTIME", str(tmp_path))
    made = spark.job_config(Config.from_env({"CLICKSTREAM_RUNTIME": str(tmp_path)})).spark.latest_checkpoint
    other = Config.from_env({"CLICKSTREAM_RUNTIME": str(tmp_path), "SPARK_CHECKPOINT": "s3a://b/bench/_checkpoints"})
    assert made.startswith(tmp_path.as_uri() + "/") and made != spark.job_config(other).spark.latest_checkpoint
    chosen = Config.from_env({"CLICKSTREAM_RUNTIME": str(tmp_path), "SPARK_LATEST_CHECKPOINT": "s3a://b/latest"})
    assert spark.job_config(chosen).spark.latest_checkpoint == "s3a://b/latest"


def test_a_derived_default_follows_its_setting_and_an_explicit_value_wins() -> None:
    config = Config.from_env({"LAKE_BUCKET": "other", "GATEWAY_LISTEN": "0.0.0.0:4600"})
    assert config.lake.events_path == "s3a://other/clickstream-data"
    assert config.spark.checkpoint == "s3a://other/_checkpoints/lake-writer"
    assert config.aws.endpoint_url == "http://127.0.0.1:4600" == config.lake.s3_endpoint
    explicit = Config.from_env({"LAKE_PATH": "s3a://x/y/", "LAKE_S3_ENDPOINT": "http://minio:9000"})
    assert explicit.lake.events_path == "s3a://x/y" and explicit.lake.s3_endpoint == "http://minio:9000"
    assert explicit.lake.path(contract.EVENTS_TABLE) == "s3a://x/y"


def test_the_lake_store_decides_the_endpoint_and_what_the_topics_keep(tmp_path: Path) -> None:
    default = Config.from_env({})
    assert default.lake_on_localstack and default.kafka.retention_ms == "-1"  # rebuilt from Kafka: keep everything
    s3proxy = Config.from_env({"LAKE_STORE": "s3proxy"})
    assert s3proxy.lake.s3_endpoint == contract.S3PROXY_ENDPOINT and not s3proxy.lake_on_localstack
    assert s3proxy.kafka.retention_ms == contract.DURABLE_RETENTION_MS == str(7 * 86_400_000)
    minio = Config.from_env({"LAKE_S3_ENDPOINT": "http://minio:9000", "KAFKA_RETENTION_MS": "3600000"})
    assert not minio.lake_on_localstack and minio.kafka.retention_ms == "3600000"
    # `make up` records a store in the runtime folder; every later command follows it unless told otherwise.
    runtime = {"CLICKSTREAM_RUNTIME": str(tmp_path)}
    (tmp_path / LAKE_STORE_RECORD).write_text('{"LAKE_STORE": "s3proxy", "LAKE_S3_ENDPOINT": "http://127.0.0.1:1"}')
    assert load(runtime).lake.s3_endpoint == "http://127.0.0.1:1" and load(runtime).lake.store == "s3proxy"
    assert load({**runtime, "LAKE_STORE": "localstack"}).lake_on_localstack  # a store named: the record is not used


def test_a_value_that_cannot_be_read_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="KAFKA_TOPIC_PARTITIONS='six'"):
        Config.from_env({"KAFKA_TOPIC_PARTITIONS": "six"})
    with pytest.raises(ConfigError, match="IP_MODE='hash': expected one of truncate, full, drop"):
        Config.from_env({"IP_MODE": "hash"})
    with pytest.raises(ConfigError, match="LAKE_ENRICHMENT"):
        Config.from_env({"LAKE_ENRICHMENT": "maybe"})
    lowered = Config.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "LAKE_SESSIONS": "off"})
    assert lowered.kafka.security_protocol == "SASL_SSL" and lowered.sessions.enabled is False


def _literal_places(text: str) -> list[Path]:
    """The project's Python files outside the ground floor with `text` as a string literal."""
    pattern = re.compile(rf"[\"']{re.escape(text)}[\"']")
    return [
        path.relative_to(REPO)
        for path in python_files()
        if path.parts[len(REPO.parts)] != "pipeline" and pattern.search(path.read_text())
    ]


@pytest.mark.parametrize(
    "fact",
    [
        contract.RAW_TOPIC,
        contract.INVALID_TOPIC,
        contract.LATEST_TOPIC,
        contract.LAKE_BUCKET,
        "20 seconds",
        "1 second",
    ],
)
def test_a_topic_a_bucket_and_an_interval_are_written_on_the_ground_floor_only(fact: str) -> None:
    assert _literal_places(fact) == []


def test_every_problem_code_is_written_in_the_table_only() -> None:
    found = {code: _literal_places(code) for code in problems.CODES}
    assert {code: places for code, places in found.items() if places} == {}
