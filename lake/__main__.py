"""`python -m lake`: what the lake holds, counted by DuckDB over the Delta tables (read with delta-rs, lazily)."""

from __future__ import annotations

import json
import sys
from typing import Any

import duckdb
from deltalake.exceptions import DeltaError

from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, dataset


def summary() -> dict[str, Any]:
    events, invalid, sessions = dataset(LAKE_PREFIX), dataset(INVALID_PREFIX), dataset(SESSIONS_PREFIX)
    result: dict[str, Any] = {
        "lake_rows": 0,
        "distinct_ids": 0,
        "by_type": {},
        "by_day": {},
        "invalid_rows": 0,
        "sessions": 0,
    }
    con = duckdb.connect()
    try:
        if events is not None:
            con.register("events", events)
            result["lake_rows"], result["distinct_ids"] = con.execute(
                "SELECT count(*), count(DISTINCT id) FROM events"
            ).fetchall()[0]
            for key, column in (("by_type", "type"), ("by_day", "dt")):
                grouped = f"SELECT {column}, count(*) FROM events GROUP BY ALL ORDER BY 1"
                result[key] = dict(con.execute(grouped).fetchall())
        if invalid is not None:
            result["invalid_rows"] = invalid.count_rows()
        if sessions is not None:
            result["sessions"] = sessions.count_rows()
    finally:
        con.close()
    return result


def main() -> int:
    try:
        print(json.dumps(summary(), indent=2))
    except (OSError, DeltaError) as exc:  # S3 errors: most often the stack is not up
        print(f"lake: cannot read the lake ({exc}); is the stack up (make up)?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
