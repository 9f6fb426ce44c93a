"""Rate limits per write key: a token bucket of events in each collector process.

Per process, so approximate: API Gateway on LocalStack does not enforce usage-plan throttling, and LocalStack's
community edition has no atomic counter a Lambda could share without a database we may not run here (DynamoDB
Local's licence). Each warm Lambda instance holds its own buckets, so N instances busy with one key allow up to
N times its rate; `chalice local` is one process and exact. On AWS, API Gateway's usage plan throttles each key
before the Lambda (docs/production.md); this limiter is then a second, per-instance line.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most `events_per_s` events a second per key, in bursts of up to `burst_s` seconds' worth.

    A batch takes as many tokens as it has events, all or none; a batch larger than the burst is let through
    when the bucket is full (else it could never pass), and leaves the bucket in debt.
    """

    def __init__(self, events_per_s: float, burst_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.events_per_s, self.burst_s = events_per_s, burst_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()  # chalice local serves requests on threads

    def take(self, key: str, events: int, events_per_s: float | None = None) -> float:
        """0 if `events` may pass now (and takes them), else the seconds to wait before the batch would pass.
        `events_per_s` overrides the limiter's rate for this key (a key's own limit); 0 means unlimited."""
        rate = self.events_per_s if events_per_s is None else events_per_s
        if rate <= 0:
            return 0.0
        burst = max(rate * self.burst_s, 1.0)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            needed = min(float(events), burst)
            if bucket.tokens >= needed:
                bucket.tokens -= events
                return 0.0
            return (needed - bucket.tokens) / rate


def retry_after(wait_s: float) -> str:
    """A Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
