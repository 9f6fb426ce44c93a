"""Whole stacks for the suite: each isolated (free ports, a runtime folder of its own, so its own Kafka data,
LocalStack, lake and checkpoints), started by the project's own commands, and at most one running at a time: two
cores do not carry two stacks and the tests beside them.

The suite's stack is started the way a new user starts one, by `make run`'s command (`python -m run`), on a
fresh runtime folder: tests/e2e asserts on what that run printed and landed. Every other suite test uses the same
stack (Kafka, LocalStack with the collector deployed, `chalice local`, the lake writer, the supervisor), and a
variant it needs (a lake writer over SASL, a schema change) runs as a named instance with tables of its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config
from pipeline.contract import LAKE_TABLE_FIELDS
from pipeline.deployment import read_deployment
from stack.cluster import current
from stack.lifecycle import fresh_stack_environment

REPO = Path(__file__).resolve().parent.parent

#: The suite's own settings on top of the defaults: it waits for the lake in seconds, not half a minute, and the
#: latest topic's batches come every 10 s: under the fault tests' traffic a batch of it costs the driver 3-4 s
#: whatever its size, and at 5 s it took 7% more of the lake writer's CPU for the same traffic. The sessions table
#: is not kept up: its rounds (10-40 s of driver time after every commit) took a fifth of the suite stack's lake
#: writer's CPU all suite long, for one test; that test runs on a lake writer of its own with sessions on
#: (tests/spark/test_variant_writer.py), and tests/spark/test_sessions.py tests the rounds themselves.
SUITE_SETTINGS = {
    "LAKE_COMMIT_INTERVAL": "3 seconds",
    "SPARK_TRIGGER": "10 seconds",
    "LAKE_SESSIONS": "off",
    # The suite's brokers compile with C1 only: they start, take a few thousand events and stop within minutes, and
    # C2's compilations would not pay back. Not the lake writers': tried, their compactions and sessions rounds took
    # up to a third longer on C1 code.
    "KAFKA_JVM_OPTIONS": "-XX:+UseG1GC -XX:TieredStopAtLevel=1",
    # LocalStack's own variable (not the pipeline's): a response limit above AWS's 6 MB, which tests/localstack
    # checks the local-process executor follows.
    "LAMBDA_LIMITS_MAX_FUNCTION_PAYLOAD_SIZE_BYTES": str(7 * 1024 * 1024),
}
#: What the suite stack's `make run` sends (tests/e2e checks each of these events).
FIRST_RUN_EVENTS, FIRST_RUN_SEED, FIRST_RUN_INVALID_SHARE = 300, 7, 0.1
#: The services a running stack has, by pidfile; with CLUSTER=1 also these.
SERVICES = ("supervisor", "kafka", "registry", "localstack", "chalice-local", "spark", "kafka-ui")
CLUSTER_SERVICES = ("kafka-2", "kafka-3", "spark-master", "spark-worker")
#: With the lake on S3Proxy (LAKE_STORE=s3proxy) also this.
STORE_SERVICES = ("s3proxy",)
#: How long a supervised stack may take to bring a killed service back before the suite starts it itself.
RECOVERY_S = 300


class StackError(RuntimeError):
    """A stack command failed; the message has its output."""


@dataclass
class Stack:
    name: str
    runtime: Path
    #: The environment of every process of the stack, and of this one while the stack is in use (TMPDIR aside).
    env: dict[str, str]
    clustered: bool = False
    #: `python -m run`'s start time for its synthetic events, so a test can make the same events again.
    first_run_start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    first_run: subprocess.CompletedProcess[str] | None = None

    @classmethod
    def fresh(cls, name: str, runtime: Path, clustered: bool = False, store: str = "localstack") -> Stack:
        runtime.mkdir(parents=True, exist_ok=True)
        (runtime / "tmp").mkdir(exist_ok=True)
        env = fresh_stack_environment(runtime, clustered, store=store) | SUITE_SETTINGS
        if not clustered:
            # A broker that is gone turns into a 503 (or the spool) quickly. Not on the cluster: there a batch waits
            # for a killed node's partitions to get new leaders (a few seconds), as KAFKA_SEND_TIMEOUT_S lets it.
            env["KAFKA_SEND_TIMEOUT_S"] = "3"
        # A temporary folder of the stack's own: LocalStack's functions must not inherit it (tests/localstack).
        env["TMPDIR"] = str(runtime / "tmp")
        return cls(name, runtime, env, clustered)

    @property
    def process_environment(self) -> dict[str, str]:
        """What this process takes while it uses the stack: its settings (pytest keeps its own TMPDIR)."""
        return {k: v for k, v in self.env.items() if k != "TMPDIR"}

    @property
    def config(self) -> Config:
        return current(self.env)

    def deployment(self) -> dict[str, Any]:
        found = read_deployment(config=self.config)
        assert found is not None, f"{self.name}: nothing is deployed"
        return found

    def cli(self, *args: str, timeout: float = 600, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """`python -m stack ARGS` against this stack (without the variables `unset`: what a later shell lacks)."""
        return self._run([sys.executable, "-m", "stack", *args], timeout, unset)

    def _run(self, argv: list[str], timeout: float, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.env.items() if k not in unset}
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise StackError(f"{self.name}: {' '.join(argv[1:])} failed ({done.returncode}):\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")  # fmt: skip
        return done

    def services(self) -> tuple[str, ...]:
        store = STORE_SERVICES if self.env.get("LAKE_STORE") == "s3proxy" else ()
        return SERVICES + (CLUSTER_SERVICES if self.clustered else ()) + store

    def alive(self) -> dict[str, bool]:
        """Each service, by its pidfile: whether its process runs."""
        return {name: _alive(self.runtime / f"{name}.pid") for name in self.services()}

    def start(self) -> None:
        """`make run` on a single node (its output kept); `make up` and `make deploy` for a cluster (the deploy while
        the lake writer starts, as `make run`'s)."""
        if self.clustered:
            self.cli("up", "--deploy")
            return
        self.first_run = self._run(
            [
                sys.executable, "-m", "run", "--events", str(FIRST_RUN_EVENTS), "--seed", str(FIRST_RUN_SEED),
                "--invalid-share", str(FIRST_RUN_INVALID_SHARE), "--start", self.first_run_start.isoformat(),
            ],
            timeout=900,
        )  # fmt: skip

    def ensure_up(self) -> None:
        """The stack running: brought back by its supervisor if it is at it, else started."""
        state = self.alive()
        if all(state.values()):
            return
        if state["supervisor"]:
            deadline = time.monotonic() + RECOVERY_S
            while time.monotonic() < deadline and not all(self.alive().values()):
                time.sleep(0.5)
            if all(self.alive().values()):
                return
        self.start()

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=300)

    @contextlib.contextmanager
    def held(self, service: str) -> Iterator[None]:
        """The supervisor keeps its hands off `service` inside (a test stops or kills it itself)."""
        self.cli("hold", service)
        try:
            yield
        finally:
            self.cli("release", service)


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")


class Stacks:
    """The suite's stacks: the suite stack, whose settings this process has for the whole session, and others a
    module may bring up (the cluster); at most one runs at a time."""

    def __init__(self, suite: Stack) -> None:
        self.suite = suite
        self.others: list[Stack] = []
        self._booting: threading.Thread | None = None
        self._boot_error: BaseException | None = None

    def boot_in_background(self) -> None:
        """Start the suite stack now, while the tests that need no stack run (two cores are no more than busy)."""

        def boot() -> None:
            try:
                self.suite.start()
            except BaseException as exc:  # handed to the first test that needs the stack
                self._boot_error = exc

        self._booting = threading.Thread(target=boot, name="suite stack boot", daemon=True)
        self._booting.start()

    def _booted(self) -> None:
        if self._booting is not None:
            self._booting.join()
            self._booting = None
            if self._boot_error is not None:
                raise self._boot_error

    def use(self, stack: Stack) -> Stack:
        """`stack` running, every other stopped first."""
        self._booted()
        for other in [self.suite, *self.others]:
            if other is not stack and any(other.alive().values()):
                other.stop()
        stack.ensure_up()
        return stack

    @contextlib.contextmanager
    def other(self, stack: Stack) -> Iterator[Stack]:
        """Another whole stack, in use (this process with its settings) inside, stopped after."""
        self.others.append(stack)
        with pytest.MonkeyPatch.context() as environment:
            take_environment(environment, stack.process_environment)
            try:
                yield self.use(stack)
            finally:
                if any(stack.alive().values()):
                    stack.stop()

    def close(self) -> None:
        """Every stack stopped (the suite's last)."""
        with contextlib.suppress(BaseException):
            self._booted()
        for stack in [self.suite, *self.others]:
            if any(stack.alive().values()):
                stack.stop()


def take_environment(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    """This process's environment made `environment` exactly (undone with the monkeypatch)."""
    for name in set(os.environ) - set(environment):
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


def variant(config: Config, name: str) -> Config:
    """A lake writer variant's configuration on the suite stack: topics (created) and tables of its own, named after
    it (`name.clickstream.raw.events`, `s3a://<bucket>/name/clickstream-data`), its own checkpoint and UI port, no
    sessions unless a test's changes, which go on top (Config.replace), turn them on."""
    from stack import kafka
    from stack.process import free_port

    topics = {
        kind: f"{name}.clickstream.{kind.split('_')[0]}.events"
        for kind in ("raw_topic", "invalid_topic", "latest_topic")
    } | {"forgotten_topic": f"{name}.clickstream.forgotten.customers"}
    kafka.create_topics(config.replace(kafka=topics))
    root = f"s3a://{config.lake.bucket}/{name}"
    tables = {field: f"{root}/{table}" for table, field in LAKE_TABLE_FIELDS.items()}
    return config.replace(
        kafka=topics,
        lake=tables,
        sessions={"enabled": False},
        spark={"checkpoint": f"{root}/_checkpoints", "ui_port": free_port()},
    )


def over_sasl(config: Config, client: Config) -> Config:
    """`client` reaching the suite stack's broker over its SASL_SSL listener (SCRAM-SHA-512, the certificate the stack
    made), the user's secret in Secrets Manager on the stack's LocalStack."""
    from stack import kafka, kafka_security

    return client.replace(
        kafka={
            "bootstrap_servers": kafka.sasl_ssl_servers(config),
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_secret_arn": kafka_security.ensure_secret(config),
            "ssl_cafile": str(kafka_security.ensure_tls().ca_file),
            "send_timeout_s": 5.0,
        }
    )
