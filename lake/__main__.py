"""`python -m lake`: what the lake holds, read back without Spark."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from chalicelib.settings import Settings
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read
from stack import kafka, spark


def summary() -> dict:
    events = read(LAKE_PREFIX, columns=["id", "type", "dt"])
    invalid = read(INVALID_PREFIX, columns=["reason"])
    ids = events.column("id").to_pylist() if events.num_rows else []
    return {
        "lake_rows": events.num_rows,
        "distinct_ids": len(set(ids)),
        "by_type": dict(Counter(events.column("type").to_pylist())) if events.num_rows else {},
        "by_day": dict(Counter(events.column("dt").to_pylist())) if events.num_rows else {},
        "invalid_rows": invalid.num_rows,
    }


def wait_until_processed(timeout_s: float) -> bool:
    """Wait until the lake writer has read every record the raw and invalid topics hold right now."""
    settings = Settings.from_env()
    targets = kafka.topic_counts(settings)
    wanted = {"lake": targets[settings.raw_topic], "invalid": targets[settings.invalid_topic]}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = spark.progress()
        if all(done.get(query, {}).get("offsets", -1) >= offsets for query, offsets in wanted.items()):
            return True
        time.sleep(1)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lake", description=__doc__)
    parser.add_argument("--wait", type=float, metavar="SECONDS", help="first wait until Spark caught up with Kafka")
    args = parser.parse_args(argv)
    if args.wait is not None:
        started = time.monotonic()
        if not wait_until_processed(args.wait):
            print(
                f"lake: the lake writer has not caught up with Kafka after {args.wait:.0f}s; see "
                f"`make status` and {spark.service().logfile}",
                file=sys.stderr,
            )
            return 1
        print(f"lake: every accepted event is in the lake ({time.monotonic() - started:.1f}s of waiting)")
    print(json.dumps(summary(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
