"""The in-process Spark of this folder's tests: one JVM for the whole pytest process, started with the lake's jars
(Delta, s3a), so a module that needs Delta still has it after another module started and stopped its session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def spark_jvm_with_the_lakes_jars() -> Iterator[None]:
    from stack import spark

    spark.fetch_jars()
    # Read by PySpark when it launches the JVM, which it does once per process.
    os.environ["PYSPARK_SUBMIT_ARGS"] = spark.submit_args(
        {**os.environ, "SPARK_MASTER": "local[2]", "SPARK_UI_PORT": "0"}
    )
    yield
