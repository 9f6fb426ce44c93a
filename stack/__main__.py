"""`python -m stack up|down|status|...`: what `make up`, `make down` and `make status` run."""

from __future__ import annotations

import argparse
import sys

from stack import kafka, localstack, spark, supervisor
from stack.services import down, status, up

COMMANDS = {
    "up": up,
    "down": down,
    "status": lambda: print("\n".join(status())),
    "kafka-jars": lambda: print(kafka.fetch_jars()),
    "localstack-install": localstack.install,
    "spark-jars": lambda: print(spark.fetch_jars()),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=sorted([*COMMANDS, "hold", "release"]))
    parser.add_argument("service", nargs="?", help="hold/release: the service the supervisor leaves alone or not")
    args = parser.parse_args(argv)
    if args.command in ("hold", "release"):
        if not args.service:
            parser.error(f"{args.command} needs a service: {', '.join(supervisor.WATCHED)}")
        try:
            supervisor.hold(args.service, keep=args.command == "hold")
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    COMMANDS[args.command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
