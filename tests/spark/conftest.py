"""The in-process Spark of this folder's tests: one JVM for the whole pytest process, started with the lake's jars
(Delta, s3a), so a module that needs Delta still has it after another module started and stopped its session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def spark_jvm_with_the_lakes_jars() -> Iterator[None]:
    from pipeline.config import Config
    from stack import spark

    spark.fetch_jars()
    local = Config.from_env({"SPARK_MASTER": "local[2]", "SPARK_UI_PORT": "0"})
    with pytest.MonkeyPatch.context() as environment:
        # Read by PySpark when it launches the JVM, which it does once per process; Python workers of this
        # virtualenv, as the lake writer's (the enrichment's UDF needs its packages).
        for name, value in spark.job_environment(local).items():
            environment.setenv(name, value)
        yield
