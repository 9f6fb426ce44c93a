"""Send events to the collector in batches: `python -m generator --synthetic N [--seed S] --url URL`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import requests

from generator.synthetic import synthetic_events
from stack.paths import runtime_dir

#: The seed's generator sent batches of 987.
DEFAULT_BATCH = 987
DEFAULT_URL = "http://localhost:60000"


def post_batch(session: requests.Session, url: str, batch: list[dict[str, Any]], retries: int = 5) -> tuple[dict, int]:
    """POST one batch; retry on 503 and connection errors (resending is safe: the lake dedupes by id)."""
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            response = session.post(f"{url.rstrip('/')}/collect", json=batch, timeout=30)
            if response.status_code != 503:
                return response.json(), attempt
        except requests.ConnectionError:
            if attempt == retries:
                raise
        if attempt < retries:
            time.sleep(delay)
            delay = min(delay * 2, 8)
    return response.json(), retries


def deployed_api_url() -> str:
    deployment = runtime_dir() / "deployment.json"
    if not deployment.exists():
        sys.exit(f"generator: {deployment} not found: deploy the collector first (make deploy)")
    return json.loads(deployment.read_text())["api_url"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator", description=__doc__)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default=DEFAULT_URL, help=f"collector base URL (default {DEFAULT_URL})")
    target.add_argument(
        "--api-gateway",
        action="store_true",
        help="send to the collector's API Gateway URL on LocalStack, as `make deploy` recorded it",
    )
    parser.add_argument("--synthetic", type=int, required=True, metavar="N", help="send N synthetic events")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same traffic)")
    parser.add_argument("--invalid-share", type=float, default=0.0, help="share of deliberately invalid events")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args(argv)

    url = deployed_api_url() if args.api_gateway else args.url
    events = synthetic_events(args.synthetic, seed=args.seed, invalid_share=args.invalid_share)
    totals = {"sent": 0, "accepted": 0, "rejected": 0, "retried": 0}
    started = time.perf_counter()
    with requests.Session() as session:
        for offset in range(0, len(events), args.batch_size):
            batch = events[offset : offset + args.batch_size]
            answer, retried = post_batch(session, url, batch)
            totals["sent"] += len(batch)
            totals["accepted"] += answer.get("valid_count", 0)
            totals["rejected"] += answer.get("invalid_count", 0)
            totals["retried"] += retried
            if answer.get("status") not in ("success", "partial", "rejected"):
                print(f"batch at {offset} not accepted: {answer}", file=sys.stderr)
                return 1
    elapsed = time.perf_counter() - started
    totals["events_per_s"] = round(totals["sent"] / elapsed, 1) if elapsed else None
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
