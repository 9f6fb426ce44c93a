"""The embedded stack as a whole: every service started, stopped or reported in dependency order."""

from __future__ import annotations

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


def status() -> list[str]:
    return [kafka.status(), localstack.status(), collector.status(), spark.status()]
