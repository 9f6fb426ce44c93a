"""The in-process Spark of this folder's tests: one JVM for the whole pytest process, started here with the lake's
jars (Delta, s3a), so a module that needs Delta still has it after another module started and stopped its session.
PySpark sets variables of its own when it launches the JVM: set here, and undone at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def spark_jvm_with_the_lakes_jars() -> Iterator[None]:
    from pyspark import SparkContext

    from pipeline.config import Config
    from stack import spark

    spark.fetch_jars()
    local = Config.from_env({"SPARK_MASTER": "local[2]", "SPARK_UI_PORT": "0"})
    with pytest.MonkeyPatch.context() as environment:
        # Read by PySpark when it launches the JVM, which it does once per process: now.
        environment.setenv("PYSPARK_SUBMIT_ARGS", spark.submit_args(local))
        for name in ("SPARK_AUTH_SOCKET_TIMEOUT", "SPARK_BUFFER_SIZE"):  # PySpark sets them then
            environment.setenv(name, "")
            environment.delenv(name)
        SparkContext._ensure_initialized()
        yield
