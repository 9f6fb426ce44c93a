"""Sending events to the collector: batches, retries, a steady rate, resumable file replay, a summary."""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

#: The seed's generator sent batches of 987: the default batch of the generator, `make run` and the bench.
SEED_BATCH_SIZE = 987

#: Answers worth retrying: the collector's 503 (Kafka did not take the batch) and gateway trouble.
RETRYABLE = {429, 500, 502, 503, 504}

log = logging.getLogger(__name__)


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retried: int = 0
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "retried": self.retried,
            "events_per_s": round(self.sent / elapsed, 1) if elapsed else None,
        }


def _seconds(retry_after: str | None) -> float:
    """A Retry-After header in seconds (its date form is not used by the collector), 0 when absent or odd."""
    try:
        return max(0.0, float(retry_after or 0))
    except ValueError:
        return 0.0


class Refused(Exception):
    """The collector refused a batch as a whole (a 4xx that names no invalid event): resending cannot help."""


class GaveUp(Exception):
    """The collector did not answer a batch after every retry."""


class Stopped(Exception):
    """SIGINT or SIGTERM arrived: the batch in flight was finished and its progress saved."""


class Sender:
    """Batches to a collector, with `write_key` (sent as X-Write-Key) when the collector needs one."""

    def __init__(self, url: str, write_key: str | None = None, retries: int = 8, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/") + "/collect"
        self.retries = retries
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if write_key:
            self.session.headers["X-Write-Key"] = write_key
        self.totals = Totals()
        self._stop = False

    def stop_on_signals(self) -> None:
        """Finish the batch in flight on SIGINT/SIGTERM instead of dying mid-request."""

        def request_stop(*_: Any) -> None:
            self._stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

    def post(self, batch: list[Any]) -> dict[str, Any]:
        """POST one batch until the collector answers (not 429 or 503); resending is safe, the lake dedupes by id."""
        delay = 0.5
        for attempt in range(self.retries + 1):
            wait = delay
            try:
                response = self.session.post(self.url, json=batch, timeout=self.timeout_s)
                if response.status_code not in RETRYABLE:
                    answer = response.json()
                    self.totals.sent += len(batch)
                    self.totals.accepted += answer.get("valid_count", 0)
                    self.totals.rejected += answer.get("invalid_count", 0)
                    if response.status_code >= 400 and not answer.get("invalid_count"):
                        raise Refused(f"generator: the collector refused a batch: {answer}")
                    return answer
                reason = f"HTTP {response.status_code}"
                # The collector's Retry-After (past a rate limit, or Kafka away) is the least wait that can help.
                wait = max(delay, _seconds(response.headers.get("Retry-After")))
            except requests.ConnectionError as exc:
                reason = f"connection failed ({exc.__class__.__name__})"
            if attempt == self.retries:
                raise GaveUp(f"generator: giving up on a batch after {self.retries} retries: {reason}")
            self.totals.retried += 1
            log.warning("generator: %s; retrying in %.1fs", reason, wait)
            time.sleep(wait)
            delay = min(delay * 2, 10)
        raise AssertionError("unreachable")

    def send(
        self,
        batches: Iterable[list[Any]],
        total: int,
        rate: float | None = None,
        acknowledged: Callable[[list[Any]], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Send each batch in turn, at most `rate` events/s; raise Stopped after a batch if asked to stop.

        `acknowledged` is called with each batch the collector answered, before anything else happens; `progress`
        with the events sent so far and `total`.
        """
        started = time.monotonic()
        for batch in batches:
            self.post(batch)
            if acknowledged is not None:
                acknowledged(batch)
            if progress is not None:
                progress(self.totals.sent, total)
            if rate:
                # The next batch leaves when the events sent so far are due at this rate.
                time.sleep(max(0.0, started + self.totals.sent / rate - time.monotonic()))
            if self._stop:
                raise Stopped


def batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]


class ReplayState:
    """The number of lines of a file already acknowledged by the collector, saved after every batch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["lines_sent"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def save(self, lines_sent: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"lines_sent": lines_sent}) + "\n")
        tmp.replace(self.path)  # atomic: a kill never leaves half a state file

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)
