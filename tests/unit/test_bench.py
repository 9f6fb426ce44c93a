"""`make bench` goes on when a measurement fails or finds nothing, and says what was missing."""

from __future__ import annotations

from bench.__main__ import measured
from stack.process import ServiceError


def test_a_failed_measurement_is_reported_missing_not_raised() -> None:
    def broken() -> dict:
        raise ServiceError("spark: the lake writer did not start; last log lines: ...")

    assert measured(broken) == {"missing": "ServiceError: spark: the lake writer did not start; last log lines: ..."}
    assert measured(lambda: {"p50_s": 1.0}) == {"p50_s": 1.0}
