"""`make run`: the whole pipeline on the embedded default, ending with what landed in the lake.

Starts what is not running (Kafka, LocalStack, `chalice local`, the Spark lake writer), deploys the collector
to Lambda + API Gateway and the shop to its S3 website, sends synthetic traffic through API Gateway, waits until
the lake holds every accepted event (read back without Spark) and their customers' sessions are made, writes the
lake report and prints a summary.
The services stay up for exploring until `make down`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from typing import Any

from generator.sender import SEED_BATCH_SIZE, Sender, batched
from generator.synthetic import synthetic_events
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, read
from lake.report import write_report
from stack import localstack, spark
from stack.cluster import current
from stack.deploy import deploy, shop_link
from stack.lifecycle import up


def send(
    api_url: str, write_key: str, count: int, seed: int, invalid_share: float, start: datetime | None = None
) -> tuple[set[str], set[str], set[str], dict[str, Any]]:
    """Synthetic events through API Gateway; the ids the collector accepted and rejected, the customers of the
    accepted ones, and its totals."""
    events = synthetic_events(count, seed=seed, invalid_share=invalid_share, start=start)
    sender = Sender(api_url, write_key)
    rejected: set[str] = set()
    for batch in batched(events, SEED_BATCH_SIZE):
        rejected |= {e["id"] for e in sender.post(batch)["errors"]}
    customers = {e["event"]["customer_id"] for e in events if e["id"] not in rejected}
    return {e["id"] for e in events} - rejected, rejected, customers, sender.totals.summary()


def ids_in(prefix: str, column: str = "id") -> set[str]:
    """The values of `column` (the ids, by default) in a lake table."""
    table = read(prefix, columns=[column])
    return set(table.column(column).to_pylist()) if table.num_rows else set()


def wait_for_lake(accepted: set[str], rejected: set[str], timeout_s: float) -> float | None:
    """Seconds until every accepted id is in the lake and every rejected one in the invalid prefix."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if accepted <= ids_in(LAKE_PREFIX) and rejected <= ids_in(INVALID_PREFIX):
            return time.monotonic() - started
        time.sleep(1)
    return None


def wait_for_sessions(customers: set[str], timeout_s: float) -> float | None:
    """Seconds until every customer has a session (the lake writer recomputes them every SESSIONS_INTERVAL_S)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if customers <= ids_in(SESSIONS_PREFIX, "customer_id"):
            return time.monotonic() - started
        time.sleep(2)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m run", description=__doc__)
    parser.add_argument("--events", type=int, default=2000, help="synthetic events to send (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--invalid-share", type=float, default=0.05)
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        help="time of the first synthetic visit: the same --seed and --start "
        "send the same events, ids included (default: visits in the hours before now, ending now, so each run "
        "adds events)",
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the lake")
    args = parser.parse_args(argv)
    # What the stack's library logs (services starting) is part of this command's output.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    config = current()

    started = time.monotonic()
    # The collector is deployed while the lake writer starts: neither needs the other.
    deployment = up(config, beside=lambda: deploy(config=config))
    accepted, rejected, customers, totals = send(
        deployment["api_url"],
        deployment["write_keys"]["generator"],
        args.events,
        args.seed,
        args.invalid_share,
        args.start,
    )
    print(f"generator: {json.dumps(totals)}", flush=True)
    landed_after = wait_for_lake(accepted, rejected, args.timeout)
    if landed_after is None:
        print(
            f"run: after {args.timeout:.0f}s the lake still lacks some of the {len(accepted)} accepted events; "
            "see `make status` and .runtime/spark.log",
            file=sys.stderr,
        )
        return 1
    sessions_figure: float | str | None = "off"  # LAKE_SESSIONS=off or no enrichment: none are made
    if config.keeps_sessions:
        sessions_after = wait_for_sessions(customers, args.timeout)
        sessions_figure = None if sessions_after is None else round(sessions_after, 1)
        if sessions_after is None:
            # Derived from the lake, so not a failure of the run: the report shows the sessions made so far.
            print(
                f"run: after {args.timeout:.0f}s some customers have no session yet; see .runtime/spark.log", flush=True
            )
    report, _ = write_report()
    lake_rows, invalid_rows = read(LAKE_PREFIX, columns=["id"]).num_rows, read(INVALID_PREFIX, columns=["id"]).num_rows
    summary = {
        "sent": totals["sent"],
        "accepted": len(accepted),
        "rejected": len(rejected),
        "lake_rows_of_this_run": len(accepted & ids_in(LAKE_PREFIX)),
        "invalid_rows_of_this_run": len(rejected & ids_in(INVALID_PREFIX)),
        "lake_rows_total": lake_rows,
        "invalid_rows_total": invalid_rows,
        "lake_caught_up_after_last_send_s": round(landed_after, 1),
        "sessions_caught_up_after_lake_s": sessions_figure,
        "run_seconds": round(time.monotonic() - started, 1),
    }
    print(
        "\n".join(
            [
                "",
                "run: every accepted event is in the lake, every rejected one in its invalid prefix",
                *[f"  {key:34s} {value}" for key, value in summary.items()],
                f"  shop website                       {shop_link(deployment)}",
                f"  collector API                      {deployment['api_url']}",
                f"  Spark UI                           {spark.ui_url(config)}",
                f"  LocalStack                         {localstack.endpoint_url(config)}",
                f"  lake report                        {report}",
                "  stop everything with `make down`",
            ]
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
