"""`python -m stack up|down|status|...`: what `make up`, `make down` and `make status` run."""

from __future__ import annotations

import argparse
import sys

from chalicelib.settings import setting
from stack import collector, kafka, localstack, spark


def up() -> None:
    kafka.start()
    localstack.start()
    localstack.ensure_bucket(setting("LAKE_BUCKET"))
    collector.start()
    spark.start()


def down() -> None:
    spark.stop()
    collector.stop()
    localstack.stop()
    kafka.stop()


def status() -> None:
    for line in (kafka.status(), localstack.status(), collector.status(), spark.status()):
        print(line)


COMMANDS = {
    "up": up,
    "down": down,
    "status": status,
    "kafka-jars": lambda: print(kafka.fetch_jars()),
    "localstack-install": localstack.install,
    "spark-jars": lambda: print(spark.fetch_jars()),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    COMMANDS[parser.parse_args(argv).command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
