"""`python -m stack up|down|status|deploy|forget|...`: what `make up`, `make down`, `make status`, `make deploy` and
`make forget` run."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from stack import chalice_local, deploy, forget, kafka, kafka_ui, localstack, spark, supervisor
from stack.lifecycle import down, status, up
from stack.process import ServiceError


def _up(args: argparse.Namespace) -> None:
    deployment = up(beside=(lambda: deploy.deploy(args.stage)) if args.deploy else None)
    if deployment is not None:
        _print_deployment(deployment)


def _print_deployment(deployment: dict) -> None:
    print(
        f"deploy: collector {deployment['function_name']} behind API Gateway {deployment['rest_api_id']} "
        f"in {deployment['deploy_seconds']}s"
    )
    print(f"  API      {deployment['api_url']}  (try: curl {deployment['api_url']}/ping)")
    if "website_url" in deployment:
        print(f"  website  {deploy.shop_link(deployment)}")


def _kafka_tui(topic: str) -> None:
    """kaskade in this terminal, in place of this process."""
    kafka_ui.install()
    argv = kafka_ui.terminal_command(topic=topic)
    os.execv(argv[0], argv)


COMMANDS = {
    "up": _up,
    "down": lambda args: down(),
    "status": lambda args: print("\n".join(status())),
    "deploy": lambda args: _print_deployment(deploy.deploy(args.stage)),
    "kafka-jars": lambda args: print(kafka.fetch_jars()),
    "localstack-install": lambda args: localstack.install(),
    "local": lambda args: chalice_local.run_in_foreground(),
    "spark-jars": lambda args: print(spark.fetch_jars()),
    "compact": lambda args: print(spark.compact()),
    "forget": lambda args: print(forget.forget([args.customer])),
    "kafka-tui": lambda args: _kafka_tui(args.topic),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=sorted([*COMMANDS, "hold", "release"]))
    parser.add_argument("service", nargs="?", help="hold/release: the service the supervisor leaves alone or not")
    parser.add_argument("--deploy", action="store_true", help="up: deploy too, while the lake writer starts")
    parser.add_argument("--stage", default=deploy.STAGE, help="deploy: a stage of chalice_app/.chalice/config.json")
    parser.add_argument("--topic", default="", help="kafka-tui: consume this topic (else: topics, groups and lag)")
    parser.add_argument("--customer", default="", help="forget: the customer's id")
    args = parser.parse_args(argv)
    # What the stack's library logs (services starting and stopping) is this command's output.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter
    if args.command in ("hold", "release"):
        if not args.service:
            parser.error(f"{args.command} needs a service: {', '.join(supervisor.watched())}")
        try:
            supervisor.hold(args.service, keep=args.command == "hold")
        except ValueError as exc:
            parser.error(str(exc))
        return 0
    try:
        COMMANDS[args.command](args)
    except (ServiceError, deploy.DeployError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
