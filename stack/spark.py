"""The lake writer (spark/lake_writer.py) as a background PySpark job on local[*] (or, with CLUSTER=1, a standalone
master and worker started here from PySpark's jars), against LocalStack's S3.

Jars beside PySpark's own (the Kafka connector, hadoop-aws and the AWS SDK) are resolved by mvn from
spark/pom.xml into the cache once. s3a reaches LocalStack by default; MinIO (or AWS) by setting
LAKE_S3_ENDPOINT and the AWS credentials.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from chalicelib.settings import Settings
from chalicelib.sinks.kafka import sasl_credentials
from stack import localstack
from stack.paths import REPO, cache_dir, runtime_dir
from stack.process import Service, ServiceError, wait_for_port

POM = REPO / "spark" / "pom.xml"
JOB = REPO / "spark" / "lake_writer.py"
MAINTENANCE = REPO / "spark" / "lake_tables.py"


def jars_dir() -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"spark-jars-{digest}"


def fetch_jars() -> Path:
    """Resolve the connector, hadoop-aws and the AWS SDK bundle (~700 MB) with mvn, once per pom content."""
    jars = jars_dir()
    if (jars / ".complete").exists():
        return jars
    print(f"spark: resolving the Kafka connector and s3a jars (~700 MB, once) into {jars}", flush=True)
    staging = jars.with_name(jars.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # On a terminal mvn shows download progress; in batch mode (logs, CI) one line per artifact.
    batch = [] if sys.stdout.isatty() else ["-B"]
    subprocess.run(
        ["mvn", *batch, "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"], check=True
    )
    (staging / ".complete").touch()
    shutil.rmtree(jars, ignore_errors=True)
    staging.rename(jars)
    return jars


def ui_port(environ: Mapping[str, str] | None = None) -> int:
    """The lake writer's Spark UI port: SPARK_UI_PORT, default 4040 (Spark's)."""
    return int((os.environ if environ is None else environ).get("SPARK_UI_PORT") or "4040")


def ui_url(environ: Mapping[str, str] | None = None) -> str:
    return f"http://127.0.0.1:{ui_port(environ)}"


def submit_args(environ: Mapping[str, str]) -> str:
    """PYSPARK_SUBMIT_ARGS for local mode: what `spark-submit` would take on a cluster."""
    aws = localstack.aws_environment()
    conf = {
        "spark.driver.memory": environ.get("SPARK_DRIVER_MEMORY") or "1g",
        # local mode: the jars on the driver's classpath (--jars would copy 700 MB on every start)
        "spark.driver.extraClassPath": f"{jars_dir()}/*",
        # One per core of a laptop. 1 cut the p50 latency at 1k events/s from 5.1 s to 3.9 s here, but also the
        # catch-up rate from ~24k to ~7k events/s: one core deduplicated and wrote everything.
        "spark.sql.shuffle.partitions": environ.get("SPARK_SHUFFLE_PARTITIONS") or "2",
        # Delta's VACUUM lists a table's folders in this many tasks (Spark's default, 10,000, made a vacuum of a
        # lake with a few thousand day partitions take ~100 s of a 2-core machine, in 10,000 tasks of a few ms).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
        "spark.ui.port": str(ui_port(environ)),
        "spark.hadoop.fs.s3a.endpoint": environ.get("LAKE_S3_ENDPOINT") or aws["AWS_ENDPOINT_URL"],
        "spark.hadoop.fs.s3a.endpoint.region": aws["AWS_DEFAULT_REGION"],
        # Bucket names with dots need path-style URLs; the local endpoints speak plain HTTP.
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": aws["AWS_ACCESS_KEY_ID"],
        "spark.hadoop.fs.s3a.secret.key": aws["AWS_SECRET_ACCESS_KEY"],
    }
    master = environ.get("SPARK_MASTER") or "local[*]"
    if master.startswith("spark://"):
        conf.update(
            {
                # The worker is on this machine: its executors take the jars from the same folder.
                "spark.executor.extraClassPath": f"{jars_dir()}/*",
                "spark.executor.memory": environ.get("SPARK_EXECUTOR_MEMORY") or "1g",
                "spark.cores.max": environ.get("SPARK_CORES_MAX") or "2",
            }
        )
    return " ".join(["--master", master, *[f"--conf {k}={v}" for k, v in conf.items()], "pyspark-shell"])


# --- the standalone cluster (CLUSTER=1) -----------------------------------------------------------------


def spark_home() -> Path:
    """PySpark's own distribution: its jars and bin/spark-class start the master and the worker."""
    import pyspark

    return Path(pyspark.__file__).parent


def master_address(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    url = (os.environ if environ is None else environ).get("SPARK_MASTER") or ""
    if not url.startswith("spark://"):
        raise ServiceError(f"spark: SPARK_MASTER={url!r} names no standalone master (spark://host:port)")
    host, _, port = url.removeprefix("spark://").rpartition(":")
    return host, int(port)


def _webui_port(variable: str, default: int) -> int:
    # Spark's own variable names; the defaults are Spark's too.
    return int(os.environ.get(variable) or default)


def master_service() -> Service:
    host, port = master_address()
    return Service("spark-master", runtime_dir(), marker=f"deploy.master.Master --host {host} --port {port}")


def _worker_dir() -> Path:
    return runtime_dir() / "spark-worker"


def _spark_class() -> str:
    return str(spark_home() / "bin" / "spark-class")


def worker_service() -> Service:
    return Service("spark-worker", runtime_dir(), marker=f"deploy.worker.Worker --work-dir {_worker_dir()}")


def _daemon_env() -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        # The worker's executors start Python workers with the project's interpreter (same machine).
        "PYSPARK_PYTHON": sys.executable,
    }


def start_master(timeout_s: float = 60) -> None:
    svc = master_service()
    if svc.pid() is not None:
        return
    host, port = master_address()
    ui = _webui_port("SPARK_MASTER_WEBUI_PORT", 8080)
    options = ["--host", host, "--port", str(port), "--webui-port", str(ui)]
    svc.start([_spark_class(), "org.apache.spark.deploy.master.Master", *options], env=_daemon_env(), cwd=runtime_dir())
    if not wait_for_port(host, port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"spark: the master did not open {host}:{port}; last log lines:\n{svc.log_tail()}")
    print(f"spark-master: spark://{host}:{port} (pid {svc.pid()}, UI http://{host}:{ui})", flush=True)


def start_worker(timeout_s: float = 60) -> None:
    svc = worker_service()
    if svc.pid() is not None:
        return
    host, port = master_address()
    _worker_dir().mkdir(parents=True, exist_ok=True)
    cores = os.environ.get("SPARK_WORKER_CORES") or "2"
    memory = os.environ.get("SPARK_WORKER_MEMORY") or "2g"
    options = ["--work-dir", str(_worker_dir()), "--host", "127.0.0.1", "--cores", cores, "--memory", memory]
    options += ["--webui-port", str(_webui_port("SPARK_WORKER_WEBUI_PORT", 8081)), f"spark://{host}:{port}"]
    svc.start([_spark_class(), "org.apache.spark.deploy.worker.Worker", *options], env=_daemon_env(), cwd=_worker_dir())
    deadline = time.monotonic() + timeout_s
    while "Successfully registered with master" not in svc.log_tail(200):
        if svc.pid() is None or time.monotonic() > deadline:
            raise ServiceError(f"spark: the worker did not register with the master; last log lines:\n{svc.log_tail()}")
        time.sleep(0.5)
    print(f"spark-worker: {cores} cores, {memory} (pid {svc.pid()}), registered with spark://{host}:{port}", flush=True)


def stop_cluster() -> None:
    for name, svc in (("spark-worker", worker_service()), ("spark-master", master_service())):
        if svc.stop(timeout_s=30):
            print(f"{name}: stopped", flush=True)


def cluster_status() -> str:
    parts = []
    for name, svc in (("master", master_service()), ("worker", worker_service())):
        pid = svc.pid()
        parts.append(f"{name} running (pid {pid})" if pid else f"{name} not running")
    host, port = master_address()
    return f"spark cluster: spark://{host}:{port}: " + ", ".join(parts)


# --- the lake writer ------------------------------------------------------------------------------------


def status_file(name: str = "spark") -> Path:
    return runtime_dir() / f"{name}-progress.json"


def service(name: str = "spark") -> Service:
    return Service(name, runtime_dir(), marker=str(JOB))


def _sasl_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The SASL user and password of KAFKA_SASL_SECRET_ARN's secret, for a job that reaches Kafka over SASL: read
    here, as a cluster's platform would inject them, so the job needs no AWS client of its own."""
    settings = Settings.from_env(env)
    if not settings.kafka_security_protocol.startswith("SASL_") or not settings.kafka_sasl_secret_arn:
        return {}
    username, password = sasl_credentials(settings, localstack.client)()
    return {"KAFKA_SASL_USERNAME": username, "KAFKA_SASL_PASSWORD": password}


def start(timeout_s: float = 120.0, name: str = "spark", overrides: Mapping[str, str] | None = None) -> None:
    """Start the job in the background and wait until its three queries have started.

    `name` and `overrides` (environment variables) run a second instance, as the benchmark does.
    """
    fetch_jars()
    svc = service(name)
    if svc.pid() is not None:
        return
    status_file(name).unlink(missing_ok=True)
    env = {**os.environ, **(overrides or {})}
    env.update(_sasl_environment(env))
    env.update(
        PYSPARK_SUBMIT_ARGS=submit_args(env),
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_STATUS_FILE=str(status_file(name)),
        LAKE_MAINTENANCE_REQUEST=str(maintenance_request(name)),
    )
    started = time.monotonic()
    svc.start([sys.executable, str(JOB)], env=env, cwd=runtime_dir())
    while len(_started_queries(svc)) < 3:
        if svc.pid() is None or time.monotonic() - started > timeout_s:
            tail = svc.log_tail(40)
            stop(name)
            raise ServiceError(f"spark: the lake writer did not start; last log lines:\n{tail}")
        time.sleep(0.5)
    print(
        f"spark: lake writer running in {time.monotonic() - started:.0f}s (pid {svc.pid()}, "
        f"UI {ui_url(env)}, log {svc.logfile})",
        flush=True,
    )


def _started_queries(svc: Service) -> set[str]:
    try:
        lines = svc.logfile.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return set()
    # Only this run's lines: Service.start writes a "--- ... starting" marker before each run.
    run = lines[max((i for i, line in enumerate(lines) if line.startswith("--- ")), default=0) :]
    return {json.loads(line)["query_started"] for line in run if line.startswith('{"query_started"')}


def stop(name: str = "spark", timeout_s: float = 150) -> None:
    """SIGTERM to the driver: it lets the running micro-batch finish, then stops Spark; killed after `timeout_s`."""
    if service(name).stop(timeout_s=timeout_s):
        print(f"{name}: stopped", flush=True)


def maintenance_request(name: str = "spark") -> Path:
    """The file `make compact` writes to ask the running lake writer for a compaction and vacuum now."""
    return runtime_dir() / f"{name}-maintenance-request.json"


def compact(timeout_s: float = 900) -> None:
    """Compact and vacuum both lake tables: by the running lake writer (Delta on S3 takes one writing driver per
    table), else by a short Spark application of its own."""
    from chalicelib.settings import LAKE_TABLES, lake_url

    svc = service()
    if svc.pid() is None:
        fetch_jars()
        env = {**os.environ, "PYSPARK_SUBMIT_ARGS": submit_args(os.environ), "SPARK_LOCAL_IP": "127.0.0.1"}
        tables = [lake_url(table) for table in LAKE_TABLES]
        subprocess.run([sys.executable, str(MAINTENANCE), "maintain", *tables], env=env, check=True, cwd=runtime_dir())
        return
    request = maintenance_request()
    asked_at = time.time()
    request.write_text(json.dumps({"at": asked_at}))
    # Each table answers in a file named after the last segment of its path (lake_tables.Maintenance).
    done = [request.with_name(f"{request.stem}.{lake_url(table).rsplit('/', 1)[-1]}.done") for table in LAKE_TABLES]
    deadline = time.monotonic() + timeout_s
    # Each table answers after its next batch (within LAKE_COMMIT_INTERVAL) and its compaction.
    while not all(_answered_since(path, asked_at) for path in done):
        if svc.pid() is None or time.monotonic() > deadline:
            raise ServiceError(f"spark: the lake writer did not compact within {timeout_s:.0f}s; see {svc.logfile}")
        time.sleep(1)
    print(f"spark: both tables compacted and vacuumed by the lake writer (log {svc.logfile})", flush=True)


def _answered_since(path: Path, asked_at: float) -> bool:
    try:
        return json.loads(path.read_text())["at"] >= asked_at
    except (FileNotFoundError, ValueError, KeyError):
        return False


def progress(name: str = "spark") -> dict[str, dict]:
    try:
        return json.loads(status_file(name).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def status() -> str:
    pid = service().pid()
    if pid is None:
        return "spark: not running"
    parts = [f"{name} batch {p['batch']} ({p['rows']} rows, lag {p['lag']})" for name, p in sorted(progress().items())]
    master = os.environ.get("SPARK_MASTER") or "local[*]"
    return f"spark: lake writer running on {master} (pid {pid}); " + ("; ".join(parts) or "no batch yet")
