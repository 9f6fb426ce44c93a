"""`python -m lake`: what the lake holds, read back without Spark."""

from __future__ import annotations

import json
import sys
from collections import Counter

from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read


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


def main() -> int:
    try:
        print(json.dumps(summary(), indent=2))
    except OSError as exc:  # pyarrow's S3 errors: most often the stack is not up
        sys.exit(f"lake: cannot read the lake ({exc}); is the stack up (make up)?")
    return 0


if __name__ == "__main__":
    sys.exit(main())
