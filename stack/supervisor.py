"""The supervisor `make up` leaves running: it restarts a service that exited, with backoff, and redoes what
the restart lost.

Every second it checks each service by PID, in dependency order (each Kafka node, LocalStack, `chalice local`, S3Proxy,
with CLUSTER=1 the Spark master and worker, the lake writer). A service that is gone is started again after a
delay that doubles with each failed attempt (1 s up to 60 s) and resets once the service has stayed up for a
minute. After LocalStack comes back, which forgets everything it held, the supervisor redeploys what was deployed
(the API keeps its id, so its URL); when the lake was on LocalStack's S3, it also recreates the lake bucket and,
while it redeploys, restarts the lake writer on a fresh checkpoint, which rebuilds the lake from Kafka (on a durable
store, S3Proxy's among them, the lake writer goes on).

`make status` reads what it did from <runtime>/supervisor.json: restarts, the last error, the next attempt.
`python -m stack hold NAME` keeps it from restarting a service until `python -m stack release NAME`.
`make down` stops it first, so nothing it watches comes back.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.deployment import read_deployment
from stack import chalice_local, cluster, deploy, kafka, kafka_ui, localstack, registry, s3proxy, spark
from stack.cluster import current
from stack.paths import runtime_dir
from stack.process import Service

log = logging.getLogger(__name__)
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
#: A service up this long after a restart counts as recovered: the next failure starts the backoff afresh.
STABLE_AFTER_S = 60.0
CHECK_EVERY_S = 1.0


def service() -> Service:
    return Service("supervisor", runtime_dir(), marker="stack.supervisor")


def state_file() -> Path:
    return runtime_dir() / "supervisor.json"


def hold_file() -> Path:
    return runtime_dir() / "supervisor-hold.json"


def held() -> set[str]:
    try:
        return set(json.loads(hold_file().read_text()))
    except (FileNotFoundError, ValueError):
        return set()


def hold(name: str, keep: bool = True) -> None:
    """Keep the supervisor from restarting `name` (keep=False: let it again)."""
    if name not in watched():
        raise ValueError(f"no service {name!r}; the supervisor watches {', '.join(watched())}")
    names = held() | {name} if keep else held() - {name}
    hold_file().parent.mkdir(parents=True, exist_ok=True)
    hold_file().write_text(json.dumps(sorted(names)))


@dataclass
class Record:
    """What the supervisor knows of one service."""

    restarts: int = 0
    failed_attempts: int = 0
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    #: Why the last attempt to bring it back failed.
    last_error: str | None = None
    next_attempt_at: float | None = None


def _recover_localstack(config: Config) -> None:
    if config.lake_on_localstack:
        # The lake writer's checkpoint and the lake were in LocalStack's S3, which comes back empty: a job that
        # ran on would write a lake with a hole (and batch logs a fresh job would misread). So it stops first; its
        # own watch starts it afresh, and it rebuilds the lake from the topics' earliest offsets. It is killed at
        # once: a graceful stop would wait for a micro-batch that cannot reach S3. On a durable store neither the
        # lake nor the checkpoint went anywhere: the job goes on.
        spark.stop(timeout_s=0)
    localstack.start(config)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lake rebuild") as beside:
        if config.lake_on_localstack:
            localstack.ensure_bucket(config.lake.bucket, config)
            if "spark" not in held():
                # The rebuild needs the bucket alone: it starts beside the deploys (each mostly one busy core). Should
                # it fail, the lake writer's own watch tries again.
                beside.submit(_start_lake_writer, config)
        for stage in (deploy.STAGE, "bench"):
            if read_deployment(stage, config) is not None:
                deploy.deploy(stage, config)


def _start_lake_writer(config: Config) -> None:
    try:
        spark.start(config)
    except Exception as exc:  # ServiceError with the log's tail: its watch has it as gone and starts it again
        log.info("supervisor: the lake writer did not start beside the deploy (%s)", str(exc).strip()[:300])


Watched = dict[str, tuple[Callable[[], Service], Callable[[], None]]]


def watched(config: Config | None = None) -> Watched:
    """name -> (its Service, how to bring it back), in the order they depend on each other."""
    config = config or current()
    services: Watched = {
        node.name: (node.service, functools.partial(kafka.start, config, only=node.name))
        for node in kafka.nodes(config)
    }
    services["registry"] = (registry.service, functools.partial(registry.start, config))
    services["localstack"] = (localstack.service, functools.partial(_recover_localstack, config))
    services["chalice_local"] = (
        functools.partial(chalice_local.service, config.collector.port),
        functools.partial(chalice_local.start, config),
    )
    if config.lake.store == "s3proxy":
        services["s3proxy"] = (s3proxy.service, functools.partial(s3proxy.start, config))
    if cluster.enabled(config):
        services["spark-master"] = (
            functools.partial(spark.master_service, config),
            functools.partial(spark.start_master, config),
        )
        services["spark-worker"] = (spark.worker_service, functools.partial(spark.start_worker, config))
    services["spark"] = (spark.service, functools.partial(spark.start, config))
    if config.kafka_ui.port:
        services["kafka-ui"] = (kafka_ui.service, functools.partial(kafka_ui.start, config))
    return services


@dataclass
class Supervisor:
    services: Watched = field(default_factory=watched)
    records: dict[str, Record] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def check(self, now: float) -> None:
        """One round: bring back, in order, each watched service that is gone and due for an attempt."""
        on_hold = held()
        for name, (svc, recover) in self.services.items():
            record = self.records.setdefault(name, Record())
            if name in on_hold or self.stopping.is_set():
                continue
            # next_attempt_at is set from the moment a service is found gone until it is wholly back: a restart
            # that started the process but failed after (a deploy, say) is tried again.
            if svc().pid() is not None and record.next_attempt_at is None:
                if record.last_restart_at and now - record.last_restart_at > STABLE_AFTER_S:
                    record.failed_attempts = 0
                continue
            if record.next_attempt_at is None:
                record.last_exit_at = now
                record.next_attempt_at = now + MIN_BACKOFF_S
                log.info("supervisor: %s is gone (its log ends: %s); restarting", name, _last_words(svc()))
            if now < record.next_attempt_at:
                continue
            try:
                recover()
            except Exception as exc:  # ServiceError with the log's tail, or whatever a deploy raised
                record.failed_attempts += 1
                record.last_error = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else repr(exc)
                delay = min(MIN_BACKOFF_S * 2**record.failed_attempts, MAX_BACKOFF_S)
                record.next_attempt_at = time.time() + delay
                log.info("supervisor: %s did not come back (%s); next try in %.0fs", name, record.last_error, delay)
                continue
            record.restarts += 1
            record.last_restart_at = time.time()
            record.next_attempt_at = None
            log.info("supervisor: %s is back (restart %s)", name, record.restarts)

    def save(self) -> None:
        state = {"updated_at": time.time(), "services": {n: asdict(r) for n, r in self.records.items()}}
        tmp = state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(state_file())

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        log.info("supervisor: watching %s", ", ".join(self.services))
        while not self.stopping.is_set():
            self.check(time.time())
            self.save()
            self.stopping.wait(CHECK_EVERY_S)
        log.info("supervisor: stopped")


def _last_words(svc: Service) -> str:
    """The last line of a service's log: usually why it exited."""
    lines = [line.strip() for line in svc.log_tail(5).splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no log"


def start(config: Config | None = None) -> None:
    """The supervisor in the background, with the stack's configuration handed over whole (restarts use it)."""
    config = config or current()
    svc = service()
    if svc.pid() is not None:
        return
    state_file().unlink(missing_ok=True)
    svc.start([sys.executable, "-m", "stack.supervisor"], env=config.child_environment())
    log.info("supervisor: watching the stack (pid %s, log %s)", svc.pid(), svc.logfile)


def stop() -> None:
    if service().stop(timeout_s=30):
        log.info("supervisor: stopped")


def read_state() -> dict[str, Any]:
    try:
        return json.loads(state_file().read_text())
    except (FileNotFoundError, ValueError):
        return {}


def status() -> str:
    pid = service().pid()
    if pid is None:
        return "supervisor: not running (services that exit stay down)"
    parts = []
    now = time.time()
    for name, record in read_state().get("services", {}).items():
        if record["restarts"] or record["last_error"]:
            text = f"{name} restarted {record['restarts']}x"
            if record["last_restart_at"]:
                text += time.strftime(", last at %H:%M:%S", time.localtime(record["last_restart_at"]))
            if record["next_attempt_at"]:
                text += f", DOWN, next try in {max(0, record['next_attempt_at'] - now):.0f}s"
            if record["last_error"]:
                text += f" (last error: {record['last_error']})"
            parts.append(text)
    on_hold = sorted(held())
    return (
        f"supervisor: running (pid {pid}); "
        + ("; ".join(parts) or "no restarts")
        + (f"; on hold: {', '.join(on_hold)}" if on_hold else "")
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    Supervisor().run()
