"""Helpers for the local-process executor tests: functions built from source strings, runtime processes."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.config import Config

from stack import localstack
from stack.localstack import RUNTIME_SCRIPT_SUFFIX

ROLE_ARN = "arn:aws:iam::000000000000:role/lambda-role"


def lambda_client() -> Any:
    """A Lambda client of the suite's LocalStack, without retries: a retried invoke would hide timeouts."""
    return localstack.client(
        "lambda", config=Config(retries={"max_attempts": 0}, read_timeout=120, max_pool_connections=16)
    )


EXECUTABLE_SUFFIX = ".sh"


def build_zip(files: dict[str, str]) -> bytes:
    """A deployment package; ``*.sh`` files are executable, as a wrapper script must be."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            entry = zipfile.ZipInfo(name)
            entry.create_system = 3  # Unix: the mode below is honoured on unzip
            mode = 0o755 if name.endswith(EXECUTABLE_SUFFIX) else 0o644
            entry.external_attr = (0o100000 | mode) << 16
            archive.writestr(entry, content)
    return buffer.getvalue()


def create_function(
    lambda_client: Any,
    name: str,
    files: dict[str, str],
    handler: str = "app.handler",
    runtime: str = "python3.11",
    **extra: Any,
) -> None:
    lambda_client.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=ROLE_ARN,
        Handler=handler,
        Code={"ZipFile": build_zip(files)},
        **extra,
    )
    localstack.wait_for_function(lambda_client, name, "active")


def runtime_pids(function_name: str) -> list[int]:
    """Live local-process runtime processes serving ``function_name``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state == b"Z":
            continue
        for i, arg in enumerate(args[:-1]):
            if arg.endswith(RUNTIME_SCRIPT_SUFFIX) and args[i + 1] == function_name:
                pids.append(int(entry.name))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def invoke(lambda_client: Any, name: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    response = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail")
    return {
        "error": response.get("FunctionError"),
        "payload": json.loads(response["Payload"].read() or b"null"),
        "log": base64.b64decode(response.get("LogResult", "")).decode(),
    }
