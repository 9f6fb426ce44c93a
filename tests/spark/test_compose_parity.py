"""Compose's `spark-job`, run as compose runs it, against the embedded services.

The command line and environment are read from docker-compose.yaml; only what names the compose network
(hosts, the image's and the volumes' paths) is mapped onto this machine:
- the image's /opt/spark is PySpark's own distribution (the same Spark version, its bin/spark-submit);
- /app holds exactly the three folders compose mounts there (spark/, schemas/, pipeline/);
- python3 is the image's Python with only spark/requirements.txt installed, as spark/Dockerfile builds it
  (apache/spark's python3 variant is Ubuntu 22.04 with its python3 from apt, and no pip packages), kept in the
  download cache by the hash of spark/requirements.txt, as Docker keeps an image's layer;
- spark-master, kafka and localstack are a standalone master and worker, the suite's broker and LocalStack.
No other variable of this process reaches the job. The lake is read back with delta-rs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.kafka import KafkaSink
from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX, read
from pipeline.config import Config
from stack import kafka, localstack, spark
from stack.paths import REPO, cache_dir
from stack.process import free_port
from stack.venvs import UV
from tests.compose_file import command, environment, load_compose, service

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: The Python of the compose image (Ubuntu 22.04's python3).
IMAGE_PYTHON = "3.10"
#: compose's volumes of the Spark services: the image's /app/<name> is the repository's <path>.
APP_VOLUMES = {"spark": "spark", "schemas": "schemas", "pipeline": "pipeline"}
PARITY_BUCKET = "acme.eu-west-1.parity.data.lake"
PARITY_TOPICS = {
    "raw_topic": "parity.clickstream.raw.events",
    "invalid_topic": "parity.clickstream.invalid.events",
    "latest_topic": "parity.clickstream.latest.events",
}
TOPIC_VARIABLES = {
    "raw_topic": "KAFKA_RAW_TOPIC",
    "invalid_topic": "KAFKA_INVALID_TOPIC",
    "latest_topic": "KAFKA_LATEST_TOPIC",
}


def image_python() -> Path:
    """A virtualenv of the image's Python holding only the lake writer's packages: python3 as the image has it. Made
    once per content of spark/requirements.txt, in the download cache (as Docker caches the image's layer)."""
    requirements = REPO / "spark" / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / "venvs" / f"compose-spark-{IMAGE_PYTHON}-{digest}"
    if (venv / ".complete").exists():
        return venv / "bin"
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(versions.glob(f"{IMAGE_PYTHON}.*/bin/python{IMAGE_PYTHON}"))
    if not found:
        pytest.fail(f"no Python {IMAGE_PYTHON} under {versions}: the parity test needs the compose image's Python")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(found[-1]), "-m", "venv", "--without-pip", str(venv)], check=True)
    install = ["install", "--python", str(venv / "bin" / "python"), "--quiet", "-r", str(requirements)]
    subprocess.run([str(UV), "pip", *install], check=True)
    (venv / ".complete").touch()
    return venv / "bin"


@pytest.fixture(scope="module")
def image_bin() -> Path:
    """The image's python3, for the job and for the worker's executors alike (one image runs both)."""
    return image_python()


@pytest.fixture(scope="module")
def standalone_master(config: Config, image_bin: Path) -> Iterator[str]:
    """A Spark standalone master and worker (as CLUSTER=1 starts them) in the place of compose's."""
    standalone = config.replace(
        spark={
            "master": f"spark://127.0.0.1:{free_port()}",
            "master_webui_port": free_port(),
            "worker_webui_port": free_port(),
        }
    )
    try:
        with pytest.MonkeyPatch.context() as environment:
            # The executors run the enrichment's UDFs with the `python3` the driver names: the image's, on the
            # worker's PATH as in the image.
            environment.setenv("PATH", f"{image_bin}:{os.environ['PATH']}")
            spark.start_master(standalone)
            spark.start_worker(standalone)
        yield standalone.spark.master
    finally:
        spark.stop_cluster(standalone)


def compose_job(
    master: str, bootstrap: str, s3_endpoint: str, registry_url: str, app: Path, bin_dir: Path
) -> tuple[list[str], dict[str, str]]:
    """spark-job's command and environment from docker-compose.yaml, its names mapped onto this machine."""
    job = service(load_compose(), "spark-job")
    # Variables a compose user sets in the shell: here, a lake and topics of the test's own, and the suite's commit
    # interval, trigger (a test waits seconds for a commit, not the default half a minute) and sessions (off).
    shell = {
        "LAKE_BUCKET": PARITY_BUCKET,
        **{TOPIC_VARIABLES[name]: topic for name, topic in PARITY_TOPICS.items()},
        **{name: os.environ[name] for name in ("LAKE_COMMIT_INTERVAL", "SPARK_TRIGGER", "LAKE_SESSIONS")},
    }
    names = {
        "/opt/spark": str(spark.spark_home()),
        "/app": str(app),
        "spark://spark-master:7077": master,
        "kafka:29092": bootstrap,
        "http://localstack:4566": s3_endpoint,
        "http://schema-registry:8085": registry_url,
        # Ivy's cache of --packages, kept between runs (it copies the jars from ~/.m2, where mvn put them).
        "/tmp/.ivy2": str(cache_dir() / "compose-ivy2"),
    }

    def mapped(value: str) -> str:
        for name, here in names.items():
            value = value.replace(name, here)
        return value

    argv = [mapped(part) for part in command(job, shell)]
    env = {key: mapped(value) for key, value in environment(job, shell).items()}
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        HOME=str(app),
        # The container's own address; on this machine, loopback (as the embedded stack binds it).
        SPARK_LOCAL_IP="127.0.0.1",
    )
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return argv, env


def post(settings: Config, events: list[dict[str, Any]]) -> set[str]:
    collector = Collector(settings, KafkaSink(settings.kafka))
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "pytest"))
    assert outcome.status_code == 200, outcome.body
    return {e["id"] for e in events} - {e["id"] for e in outcome.body["errors"]}


def test_compose_spark_job_runs_as_compose_gives_it(
    config: Config, localstack_endpoint: str, standalone_master: str, image_bin: Path, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for name, path in APP_VOLUMES.items():
        (app / name).symlink_to(REPO / path)
    bin_dir = image_bin
    localstack.ensure_bucket(PARITY_BUCKET)
    parity = config.replace(kafka=PARITY_TOPICS)
    kafka.create_topics(parity)
    argv, env = compose_job(
        standalone_master, config.kafka.bootstrap_servers, localstack_endpoint, config.registry.url, app, bin_dir
    )
    assert shutil.which("python3", path=env["PATH"]) == str(bin_dir / "python3")

    log = tmp_path / "spark-job.log"
    with log.open("wb") as out:
        job = subprocess.Popen(argv, env=env, cwd=app, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        accepted = post(parity, synthetic_events(200, seed=77, invalid_share=0.0))
        deadline = time.monotonic() + 420
        found: Counter[str] = Counter()
        while time.monotonic() < deadline and set(found) < accepted and job.poll() is None:
            time.sleep(2)
            table = read(LAKE_PREFIX, bucket=PARITY_BUCKET, columns=["id"])
            found = Counter(i for i in (table.column("id").to_pylist() if table.num_rows else []) if i in accepted)
        assert job.poll() is None, "the job exited:\n" + log.read_text(errors="replace")[-4000:]
        assert found == Counter(dict.fromkeys(accepted, 1)), log.read_text(errors="replace")[-4000:]
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited by itself
            os.killpg(job.pid, 15)
        job.wait(timeout=120)
