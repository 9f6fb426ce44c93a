"""The lake writer runs on a Spark image that has none of the Lambda's runtime packages: it must not need them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import APP_DIR, REPO

LAMBDA_RUNTIME_PACKAGES = ("orjson", "jsonschema_rs", "kafka", "crc32c", "chalice")


def test_the_lake_writer_imports_none_of_the_lambdas_runtime_packages() -> None:
    script = f"import sys, lake_writer; print(sorted(p for p in {LAMBDA_RUNTIME_PACKAGES!r} if p in sys.modules))"
    env_path = f"{REPO / 'spark'}:{APP_DIR}"
    out = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
