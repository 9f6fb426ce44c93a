"""The stack's Java services (Kafka, S3Proxy): a classpath resolved from Maven Central by a pom.xml of the project's
(the one place each version is pinned) into the download cache, and the java that runs them."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.config import Config

log = logging.getLogger(__name__)


def pinned(pom: Path, name: str) -> str:
    """The version a pom.xml pins in its <name> property."""
    match = re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom.read_text())
    if not match:
        raise ValueError(f"no <{name}> in {pom}")
    return match.group(1)


def fetch_classpath(pom: Path, libs: Path, what: str) -> Path:
    """The runtime jars of `pom` copied by mvn into `libs`, once per content of the pom; `libs`. One process
    resolves at a time: another (the suite's in-process Spark while `make run` starts the lake writer) waits for it
    and takes its result."""
    stamp = libs / ".pom-sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return libs
    with _locked(libs.with_name(libs.name + ".lock")):
        if stamp.exists() and stamp.read_text() == digest:
            return libs
        log.info("%s: resolving from Maven Central into %s", what, libs)
        staging = libs.with_name(libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        # On a terminal mvn shows download progress; in batch mode (logs, CI) one line per artifact.
        batch = [] if sys.stdout.isatty() else ["-B"]
        subprocess.run(
            [
                "mvn",
                *batch,
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            check=True,
        )
        (staging / stamp.name).write_text(digest)
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def java(config: Config) -> str:
    java_home = config.stack.java_home
    return str(Path(java_home) / "bin" / "java") if java_home else "java"
