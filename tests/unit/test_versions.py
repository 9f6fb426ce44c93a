"""Versions pinned in different files that must agree."""

from __future__ import annotations

from pathlib import Path

import pyspark

from tests.versions import REPO, pinned_pyspark_version, pom_property

SPARK_POM = REPO / "spark" / "pom.xml"


def test_connector_is_built_for_the_pinned_pyspark() -> None:
    assert pom_property(SPARK_POM, "spark.version") == pinned_pyspark_version() == pyspark.__version__


def test_hadoop_aws_matches_the_hadoop_pyspark_bundles() -> None:
    jars = Path(pyspark.__file__).parent / "jars"
    (client_api,) = jars.glob("hadoop-client-api-*.jar")
    assert client_api.name == f"hadoop-client-api-{pom_property(SPARK_POM, 'hadoop.version')}.jar"
