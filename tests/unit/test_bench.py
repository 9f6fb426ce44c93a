"""`make bench` goes on when a measurement fails or finds nothing, and says what was missing."""

from __future__ import annotations

from bench.__main__ import headline, measured
from stack.process import ServiceError


def test_a_failed_measurement_is_reported_missing_not_raised() -> None:
    def broken() -> dict:
        raise ServiceError("spark: the lake writer did not start; last log lines: ...")

    assert measured(broken) == {"missing": "ServiceError: spark: the lake writer did not start; last log lines: ..."}
    assert measured(lambda: {"p50_s": 1.0}) == {"p50_s": 1.0}


def test_the_headline_names_each_figure_of_the_run_and_none_for_a_missing_one() -> None:
    result = {
        "spark_throughput": {"events_per_s_steady": 17000, "with_sessions": {"events_per_s_steady": 16000}},
        "tables": {"day_growth": {"cost_ratio": 1.05}},
        "lake_e2e_latency": {"missing": "the collector is not deployed (make deploy)"},
        "peak_rss_mb": {"stack_total": 2700},
        "make_run_cold_services": {"warm_seconds_until_every_event_is_in_the_lake": 31.5},
    }
    assert headline(result) == {
        "lake_steady_events_per_s": 16000,
        "lake_day_growth_cost_ratio": 1.05,
        "latest_p50_s": None,
        "latest_p99_s": None,
        "lake_freshness_p50_s": None,
        "stack_peak_rss_mib": 2700,
        "make_run_warm_s": 31.5,
    }
