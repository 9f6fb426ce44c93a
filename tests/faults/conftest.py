"""What the fault tests need to drive traffic at a supervised stack (the suite's, or the cluster) and read the lake
back: steady traffic through API Gateway with every answer recorded, waits on conditions, the figures each reports."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.conftest import keyed


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

    def answered(self, at_least: int, timeout_s: float = 120) -> Traffic:
        """Once the traffic has had `at_least` more answers (of any status): the waits between a fault's steps."""
        target = sum(self.statuses.values()) + at_least
        if wait_until(lambda: sum(self.statuses.values()) >= target, timeout_s, every_s=0.1) is None:
            raise AssertionError(f"the traffic had no {at_least} more answers in {timeout_s:.0f}s: {self.statuses}")
        return self

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


def lake_after(traffic: Traffic, name: str, killed: float, **figures: Any) -> Counter[str]:
    """The traffic stopped, its accepted events read back from the lake (once all are there, or after 240 s), and
    the fault's figures reported with the lake's and how long after the kill it was whole."""
    from lake.reader import LAKE_PREFIX
    from tests.conftest import lake_ids, report

    traffic.stop()
    landed = lake_ids(LAKE_PREFIX, traffic.accepted, timeout_s=240)
    whole = {"lake_whole_after_kill_s": round(time.monotonic() - killed, 1)}
    report(name, {**lake_figures(traffic, landed), **figures, **whole})
    return landed
