"""`python -m lake.report`: one self-contained HTML page about what the lake holds.

The figures (lake/figures.py) are computed by DuckDB over one scan of the lake's Delta tables; the page
(lake/page.py) has inline CSS and inline SVG charts (lake/charts.py): no script, font or stylesheet is fetched from
anywhere, so the file opens offline and can be mailed around.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lake.figures import figures
from lake.page import render_html
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, SESSIONS_PREFIX, dataset
from pipeline.config import load
from pipeline.deployment import runtime_dir


def default_output() -> Path:
    return runtime_dir() / "report" / "lake-report.html"


def write_report(output: Path | None = None, include_bots: bool = False) -> tuple[Path, dict[str, Any]]:
    """The report of what the lake holds, written to `output` (default: <runtime>/report/); its path and totals."""
    fig = figures(dataset(LAKE_PREFIX), dataset(INVALID_PREFIX), dataset(SESSIONS_PREFIX), include_bots)
    output = output or default_output()
    output.parent.mkdir(parents=True, exist_ok=True)
    source = f"s3://{load().lake.bucket}/{{{LAKE_PREFIX},{INVALID_PREFIX},{SESSIONS_PREFIX}}}"
    output.write_text(render_html(fig, source=source), encoding="utf-8")
    return output.resolve(), fig["totals"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lake.report", description=__doc__)
    parser.add_argument("--output", type=Path, help="where to write the HTML (default: <runtime>/report/)")
    parser.add_argument("--include-bots", action="store_true", help="count bots' events and sessions too")
    args = parser.parse_args(argv)
    output, totals = write_report(args.output, args.include_bots)
    print(json.dumps(totals, indent=2))
    print(f"report: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
