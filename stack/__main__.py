"""`python -m stack up|down|status|...`: what `make up`, `make down` and `make status` run."""

from __future__ import annotations

import argparse
import sys

from stack import chalice_local, cluster, kafka, localstack, spark, supervisor
from stack.lifecycle import down, status, up
from stack.process import ServiceError

COMMANDS = {
    "up": up,
    "down": down,
    "status": lambda: print("\n".join(status())),
    "kafka-jars": lambda: print(kafka.fetch_jars()),
    "localstack-install": localstack.install,
    "local": chalice_local.run_in_foreground,
    "spark-jars": lambda: print(spark.fetch_jars()),
    "compact": spark.compact,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=sorted([*COMMANDS, "hold", "release"]))
    parser.add_argument("service", nargs="?", help="hold/release: the service the supervisor leaves alone or not")
    args = parser.parse_args(argv)
    cluster.apply_defaults()
    if args.command in ("hold", "release"):
        if not args.service:
            parser.error(f"{args.command} needs a service: {', '.join(supervisor.watched())}")
        try:
            supervisor.hold(args.service, keep=args.command == "hold")
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    try:
        COMMANDS[args.command]()
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
