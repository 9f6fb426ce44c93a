"""`python -m stack up|down|status|...`: what `make up`, `make down` and `make status` run."""

from __future__ import annotations

import argparse
import sys

from stack import collector, kafka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "kafka-jars", "kafka-up", "kafka-down", "collector-up", "collector-down"],
    )
    args = parser.parse_args(argv)
    match args.command:
        case "up":
            kafka.start()
            collector.start()
        case "down":
            collector.stop()
            kafka.stop()
        case "status":
            print(kafka.status())
            print(collector.status())
        case "kafka-jars":
            print(kafka.fetch_jars())
        case "kafka-up":
            kafka.start()
        case "kafka-down":
            kafka.stop()
        case "collector-up":
            collector.start()
        case "collector-down":
            collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
