"""The versions the project pins, each read from the one place it is pinned."""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def pom_property(pom: Path, name: str) -> str:
    value = ET.parse(pom).getroot().findtext(f"{{*}}properties/{{*}}{name}")
    assert value, f"no <{name}> in {pom}"
    return value


def pinned_pyspark_version() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in dependencies if d.startswith("pyspark==")]
    return pin.removeprefix("pyspark==")


def pinned_kafka_version() -> str:
    return pom_property(REPO / "kafka" / "pom.xml", "kafka.version")


def pinned_localstack_version() -> str:
    text = (REPO / "localstack" / "requirements.txt").read_text()
    match = re.search(r"^localstack-core(?:\[[^\]]*\])?==(\S+)", text, flags=re.M)
    assert match, "no localstack-core pin in localstack/requirements.txt"
    return match[1]
