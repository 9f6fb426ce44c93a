"""A whole supervised stack of the fault suite's own (`make up` and `make deploy` in a fresh runtime on free
ports), and what its tests need to drive traffic at it and read the lake back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib import dependencies
from stack.lifecycle import fresh_stack_environment
from tests.conftest import REPO, keyed


@dataclass
class Stack:
    env: dict[str, str]
    deployment: dict[str, Any]

    def stack(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`python -m stack ARGS` against this stack."""
        return subprocess.run(
            [sys.executable, "-m", "stack", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )


@contextlib.contextmanager
def running_stack(runtime: Path, clustered: bool = False) -> Iterator[Stack]:
    """`make up` (services and supervisor) and `make deploy` on a stack of its own; `make down` after.

    The suite's process takes this stack's environment for the duration, so stack/ and lake/ functions
    called in the tests talk to it.
    """
    env = fresh_stack_environment(runtime, clustered=clustered)
    env.update(SPARK_TRIGGER="1 second", LAKE_COMMIT_INTERVAL="2 seconds")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    dependencies.reset()
    try:
        subprocess.run([sys.executable, "-m", "stack", "up"], env=env, cwd=REPO, check=True, timeout=600)
        subprocess.run([sys.executable, "-m", "stack.deploy"], env=env, cwd=REPO, check=True, timeout=600)
        from chalicelib.contract import read_deployment

        deployment = read_deployment()
        assert deployment is not None
        yield Stack(env, deployment)
    finally:
        subprocess.run([sys.executable, "-m", "stack", "down"], env=env, cwd=REPO, timeout=600)
        os.environ.clear()
        os.environ.update(saved)
        dependencies.reset()


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The fault matrix's stack: one broker, local Spark, as `make up` starts them."""
    with running_stack(tmp_path_factory.mktemp("fault-runtime")) as stack:
        yield stack


def kill_group(pid: int | None) -> None:
    assert pid is not None, "the service is not running"
    os.killpg(pid, signal.SIGKILL)


@dataclass
class Traffic:
    """Synthetic events posted through API Gateway by a few threads at a steady rate, every answer recorded."""

    deployment: dict[str, Any]
    rate: float
    batch: int = 25
    threads: int = 4
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    longest_wait_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, seed: int) -> Traffic:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(seed * 100 + n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> Traffic:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)
        return self

    def _run(self, seed: int) -> None:
        from generator.synthetic import synthetic_events

        session = requests.Session()
        session.headers.update(keyed(self.deployment))
        url = self.deployment["api_url"]
        interval = self.batch * self.threads / self.rate
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            events = synthetic_events(self.batch, seed=seed * 10_000 + sent)
            sent += 1
            posted = time.monotonic()
            try:
                response = session.post(f"{url}/collect", json=events, timeout=60)
                status = response.status_code
                rejected = {e["id"] for e in response.json().get("errors", [])} if status in (200, 202) else None
            except requests.RequestException:
                status, rejected = 0, None  # no answer at all
            waited = time.monotonic() - posted
            with self._lock:
                self.statuses[status] += 1
                self.longest_wait_s = max(self.longest_wait_s, waited)
                if rejected is not None:
                    self.accepted |= {e["id"] for e in events} - rejected
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))


def wait_until(condition: Any, timeout_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until condition() held, or None at the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():
                return time.monotonic() - started
        except Exception:  # the service being waited for is not there yet
            pass
        time.sleep(every_s)
    return None


def lake_figures(traffic: Traffic, landed: Counter[str]) -> dict[str, Any]:
    """What every fault test reports: the answers, and the accepted events lost or doubled in the lake."""
    return {
        "answers": dict(traffic.statuses),
        "accepted": len(traffic.accepted),
        "lost": len(traffic.accepted - set(landed)),
        "duplicated": sum(1 for n in landed.values() if n > 1),
    }
