"""Send clickstream events to the collector: replay a JSON Lines file, or make synthetic shop traffic.

    python -m generator                                   # replay generator/data/events.json, resuming
    python -m generator --reset                           # ... from the first line again
    python -m generator --synthetic 5000 --seed 7 --invalid-share 0.05 --rate 1000
    python -m generator --api-gateway                     # to the collector deployed on LocalStack
    python -m generator --synthetic 3000 --seed 42 --start 2026-11-01T09:00:00Z --output FILE

A file replay saves, after every batch the collector acknowledged, how many lines were sent, so a stopped
replay (Ctrl-C finishes the batch in flight) resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from generator.sender import SEED_BATCH_SIZE, GaveUp, Refused, ReplayState, Sender, Stopped, batched
from generator.synthetic import synthetic_events
from pipeline.config import load
from pipeline.deployment import deployed_write_key, read_deployment, runtime_dir

DEFAULT_BATCH = SEED_BATCH_SIZE
DEFAULT_URL = f"http://localhost:{load().collector.port}"
DEFAULT_FILE = Path(__file__).resolve().parent / "data" / "events.json"


class Progress:
    """A one-line progress bar on a terminal's stderr; silent when stderr is a file or a pipe."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or not total:
            return
        self.total, self.shown = total, True
        share = min(done / self.total, 1.0)
        rate = done / max(time.monotonic() - self.started, 1e-9)
        bar = "#" * int(share * 30)
        print(f"\r[{bar:<30}] {done}/{self.total} events, {rate:,.0f}/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def deployed_api_url() -> str:
    deployment = read_deployment()
    if deployment is None:
        sys.exit("generator: the collector is not deployed here: deploy it first (make deploy)")
    return deployment["api_url"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m generator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE, help="JSON Lines to replay")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", default=DEFAULT_URL, help=f"collector base URL (default {DEFAULT_URL})")
    target.add_argument(
        "--api-gateway", action="store_true", help="the collector's API Gateway URL on LocalStack (make deploy)"
    )
    parser.add_argument(
        "--write-key",
        default=load().generator.write_key or None,
        help="the source's write key (default: $WRITE_KEY; with --api-gateway, the key make deploy made for the "
        "generator; chalice local needs none)",
    )
    parser.add_argument("--reset", action="store_true", help="replay the file from its first line")
    parser.add_argument("--state-file", type=Path, help="where replay progress is kept (default: under .runtime/)")
    parser.add_argument("--synthetic", type=int, metavar="N", help="send N synthetic events instead of a file")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic traffic")
    parser.add_argument(
        "--start", type=datetime.fromisoformat, help="time of the first synthetic visit (default: the visits end now)"
    )
    parser.add_argument("--invalid-share", type=float, default=0.0, help="share of deliberately invalid events")
    parser.add_argument("--output", type=Path, help="write the synthetic events as JSON Lines instead of sending")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--rate", type=float, help="at most this many events per second")
    return parser.parse_args(argv)


def replay(sender: Sender, args: argparse.Namespace) -> None:
    state = ReplayState(args.state_file or runtime_dir() / f"generator-{args.file.stem}.state")
    if args.reset:
        state.reset()
    lines = args.file.read_text(encoding="utf-8").splitlines()
    done = state.load()
    if done >= len(lines):
        print(f"generator: all {len(lines)} lines of {args.file} were sent already; --reset to replay", flush=True)
        return
    if done:
        print(f"generator: resuming {args.file} at line {done + 1} of {len(lines)}", flush=True)

    def acknowledged(batch: list[Any]) -> None:
        nonlocal done
        done += len(batch)
        state.save(done)

    # A line that is not JSON is sent as text: the collector keeps it as invalid, with the reason.
    batches = ([_parse(line) for line in chunk] for chunk in batched(lines[done:], args.batch_size))
    progress = Progress()
    try:
        sender.send(batches, total=len(lines) - done, rate=args.rate, acknowledged=acknowledged, progress=progress)
    finally:
        progress.close()


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The sender's retries, on stderr beside the progress bar.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.synthetic is not None:
        events = synthetic_events(args.synthetic, seed=args.seed, invalid_share=args.invalid_share, start=args.start)
        if args.output:
            args.output.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
            print(f"generator: wrote {len(events)} events to {args.output}")
            return 0
    if args.api_gateway:
        sender = Sender(deployed_api_url(), args.write_key or deployed_write_key("generator"))
    else:
        sender = Sender(args.url, args.write_key)
    sender.stop_on_signals()
    stopped = False
    try:
        if args.synthetic is not None:
            progress = Progress()
            try:
                sender.send(batched(events, args.batch_size), total=len(events), rate=args.rate, progress=progress)
            finally:
                progress.close()
        else:
            replay(sender, args)
    except Stopped:
        stopped = True
    except (Refused, GaveUp) as exc:
        print(json.dumps(sender.totals.summary()), flush=True)
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(sender.totals.summary()), flush=True)
    return 130 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
