"""The lake writer (spark/lake_writer.py) as a background PySpark job on local[*] (or, with CLUSTER=1, a standalone
master and worker started here from PySpark's jars), against LocalStack's S3.

Jars beside PySpark's own (the Kafka connector, hadoop-aws and the AWS SDK) are resolved by mvn from
spark/pom.xml into the cache once. s3a reaches LocalStack by default; MinIO (or AWS) by setting
LAKE_S3_ENDPOINT and the AWS credentials.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.contract import maintenance_answer, table_name
from stack import localstack, maven
from stack.class_archives import ClassArchive
from stack.cluster import current
from stack.paths import REPO, cache_dir, runtime_dir
from stack.process import Service, ServiceError, wait_for_port
from stack.spark_home import spark_home

log = logging.getLogger(__name__)
POM = REPO / "spark" / "pom.xml"
JOB = REPO / "spark" / "lake_writer.py"
MAINTENANCE = REPO / "spark" / "maintenance.py"


def jars_dir() -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"spark-jars-{digest}"


def fetch_jars() -> Path:
    """The Kafka connector, spark-avro, Delta, hadoop-aws and the AWS SDK bundle (~700 MB), resolved with mvn into
    the cache once per pom content."""
    return maven.fetch_classpath(POM, jars_dir(), "spark: the Kafka connector, Delta and s3a jars (~700 MB, once)")


def ui_url(config: Config | None = None) -> str:
    return f"http://127.0.0.1:{(config or current()).spark.ui_port}"


CHECKPOINTS_ON_FILESYSTEM_API = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)


def submit_args(config: Config) -> str:
    """PYSPARK_SUBMIT_ARGS: what `spark-submit` would take on a cluster."""
    spark, aws = config.spark, config.aws
    conf = {
        "spark.driver.memory": spark.driver_memory,
        "spark.driver.extraJavaOptions": " ".join([spark.java_options, *driver_archive(config).options()]),
        # local mode: the jars on the driver's classpath (--jars would copy 700 MB on every start)
        "spark.driver.extraClassPath": f"{jars_dir()}/*",
        # Delta's VACUUM lists a table's folders in this many tasks (Spark's default, 10,000, made a vacuum of a
        # lake with a few thousand day partitions take ~100 s of a 2-core machine, in 10,000 tasks of a few ms).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
        "spark.ui.port": str(spark.ui_port),
        # The job's log is its JSON lines and Spark's warnings, not a progress bar redrawn for every stage.
        "spark.ui.showConsoleProgress": "false",
        "spark.hadoop.fs.s3a.endpoint": config.lake.s3_endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": aws.region,
        # Bucket names with dots need path-style URLs; the local endpoints speak plain HTTP.
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.access.key": aws.access_key_id,
        "spark.hadoop.fs.s3a.secret.key": aws.secret_access_key,
    }
    if config.lake.store == "s3proxy":
        # S3Proxy's filesystem backend lists no directory marker under its own prefix, so a checkpoint folder s3a
        # made looks missing to FileContext's check of a new file's parent; the FileSystem API does not check.
        conf["spark.sql.streaming.checkpointFileManagerClass"] = CHECKPOINTS_ON_FILESYSTEM_API
    if spark.master.startswith("spark://"):
        conf.update(
            {
                # The worker is on this machine: its executors take the jars from the same folder.
                "spark.executor.extraClassPath": f"{jars_dir()}/*",
                "spark.executor.memory": spark.executor_memory,
                "spark.executor.extraJavaOptions": " ".join([spark.java_options, *executor_archive(config).options()]),
                "spark.cores.max": str(spark.cores_max),
            }
        )
    # PySpark splits the line as a shell would: a value with spaces (the JVM options) is quoted.
    confs = [f"--conf {shlex.quote(f'{k}={v}')}" for k, v in conf.items()]
    return " ".join(["--master", spark.master, *confs, "pyspark-shell"])


def job_environment(config: Config) -> dict[str, str]:
    """What a PySpark application of the stack's (the lake writer, a maintenance run, a test's session) takes from
    its environment to start its JVM: spark-submit's arguments, the Spark home, Python workers of this virtualenv."""
    return {"PYSPARK_SUBMIT_ARGS": submit_args(config), **_on_this_machine()}


def _on_this_machine() -> dict[str, str]:
    """What every Spark process of the stack takes: the Spark home, the loopback address, and Python workers with
    the project's interpreter (the enrichment's UDFs need its packages)."""
    return {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}


def driver_archive(config: Config) -> ClassArchive:
    """The class-data archive of a driver's JVM (class_archives.py): the cache's jars, then the Spark home's."""
    classpath = (f"{jars_dir()}/*", f"{spark_home()}/jars/*")
    return ClassArchive("spark-driver", "org.apache.spark.deploy.SparkSubmit", maven.java(config), classpath)


def executor_archive(config: Config) -> ClassArchive:
    """The class-data archive of an executor's JVM on the worker (the same jars as the driver's)."""
    main = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
    return ClassArchive("spark-executor", main, maven.java(config), driver_archive(config).classpath)


# --- the standalone cluster (CLUSTER=1) -----------------------------------------------------------------


def master_address(config: Config | None = None) -> tuple[str, int]:
    url = (config or current()).spark.master
    if not url.startswith("spark://"):
        raise ServiceError(f"spark: SPARK_MASTER={url!r} names no standalone master (spark://host:port)")
    host, _, port = url.removeprefix("spark://").rpartition(":")
    return host, int(port)


def master_service(config: Config | None = None) -> Service:
    host, port = master_address(config)
    return Service("spark-master", runtime_dir(), marker=f"deploy.master.Master --host {host} --port {port}")


def _worker_dir() -> Path:
    return runtime_dir() / "spark-worker"


def _spark_class() -> str:
    return str(spark_home() / "bin" / "spark-class")


def worker_service() -> Service:
    return Service("spark-worker", runtime_dir(), marker=f"deploy.worker.Worker --work-dir {_worker_dir()}")


def _daemon_env(config: Config) -> dict[str, str]:
    return {**config.child_environment(), **_on_this_machine()}


def start_master(config: Config | None = None, timeout_s: float = 60) -> None:
    config = config or current()
    svc = master_service(config)
    if svc.pid() is not None:
        return
    host, port = master_address(config)
    options = ["--host", host, "--port", str(port), "--webui-port", str(config.spark.master_webui_port)]
    argv = [_spark_class(), "org.apache.spark.deploy.master.Master", *options]
    svc.start(argv, env=_daemon_env(config), cwd=runtime_dir())
    if not wait_for_port(host, port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"spark: the master did not open {host}:{port}; last log lines:\n{svc.log_tail()}")
    log.info("spark-master: spark://%s:%s (pid %s, UI %s)", host, port, svc.pid(), master_ui(config))


def master_ui(config: Config) -> str:
    return f"http://{master_address(config)[0]}:{config.spark.master_webui_port}"


def alive_workers(config: Config | None = None) -> int:
    """Workers the master counts as alive (its UI's JSON), 0 if it does not answer."""
    try:
        with urllib.request.urlopen(f"{master_ui(config or current())}/json/", timeout=2) as answer:
            return sum(w.get("state") == "ALIVE" for w in json.load(answer).get("workers", []))
    except (OSError, ValueError):
        return 0


def start_worker(config: Config | None = None, timeout_s: float = 60) -> None:
    config = config or current()
    svc = worker_service()
    if svc.pid() is not None:
        return
    host, port = master_address(config)
    _worker_dir().mkdir(parents=True, exist_ok=True)
    spark = config.spark
    options = ["--work-dir", str(_worker_dir()), "--host", "127.0.0.1", "--cores", str(spark.worker_cores)]
    options += ["--memory", spark.worker_memory, "--webui-port", str(spark.worker_webui_port), f"spark://{host}:{port}"]
    argv = [_spark_class(), "org.apache.spark.deploy.worker.Worker", *options]
    svc.start(argv, env=_daemon_env(config), cwd=_worker_dir())
    deadline = time.monotonic() + timeout_s
    while not alive_workers(config):
        if svc.pid() is None or time.monotonic() > deadline:
            raise ServiceError(f"spark: the worker did not register with the master; last log lines:\n{svc.log_tail()}")
        time.sleep(0.5)
    log.info("spark-worker: %s cores, %s (pid %s), registered with spark://%s:%s", spark.worker_cores,
             spark.worker_memory, svc.pid(), host, port)  # fmt: skip


def stop_cluster(config: Config | None = None) -> None:
    for name, svc in (("spark-worker", worker_service()), ("spark-master", master_service(config))):
        if svc.stop(timeout_s=30):
            log.info("%s: stopped", name)


def cluster_status(config: Config | None = None) -> str:
    parts = []
    for name, svc in (("master", master_service(config)), ("worker", worker_service())):
        pid = svc.pid()
        parts.append(f"{name} running (pid {pid})" if pid else f"{name} not running")
    host, port = master_address(config)
    return f"spark cluster: spark://{host}:{port}: " + ", ".join(parts)


# --- the lake writer ------------------------------------------------------------------------------------


def status_file(name: str = "spark") -> Path:
    return runtime_dir() / f"{name}-status.json"


def service(name: str = "spark") -> Service:
    return Service(name, runtime_dir(), marker=f"{JOB} {name}")


def _with_sasl_credentials(config: Config) -> Config:
    """The SASL user and password of KAFKA_SASL_SECRET_ARN's secret, for a job that reaches Kafka over SASL: read
    here, as a cluster's platform would inject them, so the job needs no AWS client of its own."""
    kafka = config.kafka
    if not kafka.security_protocol.startswith("SASL_") or not kafka.sasl_secret_arn:
        return config
    secret = localstack.client("secretsmanager", config).get_secret_value(SecretId=kafka.sasl_secret_arn)
    credentials = json.loads(secret["SecretString"])
    return config.replace(kafka={"sasl_username": credentials["username"], "sasl_password": credentials["password"]})


def latest_checkpoint(config: Config) -> Path:
    """The latest topic's query's checkpoint on local disk: a folder of the runtime per job checkpoint, so a job
    on a checkpoint of its own (the bench's, a test's) starts its latest query afresh too. It outlives LocalStack's
    restart, after which only the lake is rebuilt; the latest topic goes on from where it was."""
    digest = hashlib.sha256(config.spark.checkpoint.encode()).hexdigest()[:16]
    return runtime_dir(config) / "latest-checkpoints" / digest


def job_config(config: Config, name: str = "spark") -> Config:
    """The tree the job named `name` runs with: `config`, with its status file and maintenance request here, and
    the latest topic's checkpoint on local disk unless SPARK_LATEST_CHECKPOINT puts it elsewhere."""
    return _with_sasl_credentials(config).replace(
        spark={
            "status_file": str(status_file(name)),
            "latest_checkpoint": config.spark.latest_checkpoint or latest_checkpoint(config).as_uri(),
        },
        maintenance={"request_file": str(maintenance_request(name))},
    )


def start(config: Config | None = None, name: str = "spark", timeout_s: float = 180.0) -> None:
    """Start the job in the background and wait until its three queries have started (its status file says so).

    `name` and a `config` of its own run a second instance (other tables and checkpoint), as the bench and the tests'
    variants do.
    """
    config = job_config(config or current(), name)
    fetch_jars()
    svc = service(name)
    if svc.pid() is not None:
        return
    status_file(name).unlink(missing_ok=True)
    env = config.child_environment() | job_environment(config)
    started = time.monotonic()
    svc.start([sys.executable, str(JOB), name], env=env, cwd=runtime_dir())
    while len(queries_started(name)) < QUERIES:
        if svc.pid() is None or time.monotonic() - started > timeout_s:
            tail = svc.log_tail(40)
            stop(name)
            raise ServiceError(f"spark: the lake writer did not start; last log lines:\n{tail}")
        time.sleep(0.2)
    log.info("spark: lake writer %s running in %.0fs (pid %s, UI %s, log %s)", name, time.monotonic() - started,
             svc.pid(), ui_url(config), svc.logfile)  # fmt: skip


#: The job's streaming queries: lake, invalid, latest.
QUERIES = 3


def queries_started(name: str = "spark") -> set[str]:
    """The job's queries that started and did not end, from its status file."""
    return {q for q, state in job_status(name).get("queries", {}).items() if state.get("state") != "terminated"}


def stop(name: str = "spark", timeout_s: float = 150) -> None:
    """SIGTERM to the driver: it ends its threads and queries between commits, then Spark; killed after `timeout_s`.
    The first time, its JVM's classes go into the drivers' archive before (and its executor's, on a cluster)."""
    config = current()
    driver_archive(config).record(service(name).pid())
    if config.spark.master.startswith("spark://"):
        executor_archive(config).record(worker_service().pid())
    if service(name).stop(timeout_s=timeout_s):
        log.info("%s: stopped", name)


def instances() -> list[str]:
    """The names of the lake writers running in this runtime folder: `make up`'s, and any named one (the bench's).
    Read from the pidfiles and the processes' command lines, leaving every other service's pidfile alone."""
    found = []
    for pidfile in runtime_dir().glob("*.pid"):
        try:
            command = Path(f"/proc/{int(pidfile.read_text().strip())}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"{JOB}\0{pidfile.stem}\0".encode() in command:
            found.append(pidfile.stem)
    return sorted(found)


def stop_all(timeout_s: float = 150) -> None:
    """Every lake writer of this runtime folder stopped, at once."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda name: stop(name, timeout_s), instances()))


def maintenance_request(name: str = "spark") -> Path:
    """The file `make compact` writes to ask the running lake writer for a sweep, compaction and vacuum now."""
    return runtime_dir() / f"{name}-maintenance-request.json"


def compact(config: Config | None = None, timeout_s: float = 900, name: str = "spark") -> str:
    """Sweep, compact and vacuum the lake's tables: by the running lake writer `name` (Delta on S3 takes one writing
    driver per table), else by a short Spark application of its own. Says which did."""
    config = config or current()
    svc = service(name)
    if svc.pid() is None:
        run_maintenance(config, "maintain")
        return "spark: the tables swept, compacted and vacuumed by a Spark application of their own"
    ask_tables(config, {}, timeout_s, name)
    return f"spark: the tables swept, compacted and vacuumed by the lake writer (log {svc.logfile})"


def run_maintenance(config: Config, *args: str) -> None:
    """`maintenance.py ARGS... TABLE...` on the lake's three tables, a Spark application of its own: the work of
    `make compact` or `make forget` while no lake writer runs."""
    tables = [config.lake.events_path, config.lake.invalid_path, config.lake.sessions_path]
    fetch_jars()
    env = {**os.environ, **job_environment(config)}
    subprocess.run([sys.executable, str(MAINTENANCE), *args, *tables], env=env, check=True, cwd=runtime_dir())


def ask_tables(config: Config, request: dict[str, Any], timeout_s: float, name: str = "spark") -> dict[str, dict]:
    """Ask each table's maintenance in the running lake writer `name` (`make compact`: nothing more; `make forget`:
    {"forget": ids}) and wait for every answer: table -> what it did."""
    tables = [config.lake.events_path, config.lake.invalid_path, config.lake.sessions_path]
    svc = service(name)
    asking = maintenance_request(name)
    asked_at = time.time()
    asking.write_text(json.dumps({**request, "at": asked_at}))
    # Each table answers in a file of its own (maintenance.Maintenance), after its next batch (within
    # LAKE_COMMIT_INTERVAL) and the work asked.
    done = {table_name(path): maintenance_answer(asking, path) for path in tables}
    deadline = time.monotonic() + timeout_s
    while not all(_answered_since(path, asked_at) for path in done.values()):
        if svc.pid() is None or time.monotonic() > deadline:
            raise ServiceError(f"spark: the lake writer did not answer within {timeout_s:.0f}s; see {svc.logfile}")
        time.sleep(0.5)
    return {table: json.loads(path.read_text()) for table, path in done.items()}


def _answered_since(path: Path, asked_at: float) -> bool:
    try:
        return json.loads(path.read_text())["at"] >= asked_at
    except (FileNotFoundError, ValueError, KeyError):
        return False


def job_status(name: str = "spark") -> dict[str, Any]:
    """The job's status file (spark/progress.py): its queries' states, last progress and totals, and notes."""
    try:
        return json.loads(status_file(name).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def progress(name: str = "spark") -> dict[str, dict]:
    """Each query's last progress (batch, rows, lag, offsets), for queries that have made one."""
    return {q: state["last"] for q, state in job_status(name).get("queries", {}).items() if state.get("last")}


def status(config: Config | None = None) -> str:
    config = config or current()
    pid = service().pid()
    if pid is None:
        return "spark: not running"
    parts = [f"{name} batch {p['batch']} ({p['rows']} rows, lag {p['lag']})" for name, p in sorted(progress().items())]
    forgotten = job_status().get("notes", {}).get("forgotten")
    if forgotten:
        dropped = sum(forgotten["rows_dropped"].values())
        parts.append(f"{forgotten['customers']} customers forgotten ({dropped} of their rows dropped since it started)")
    return f"spark: lake writer running on {config.spark.master} (pid {pid}); " + ("; ".join(parts) or "no batch yet")
