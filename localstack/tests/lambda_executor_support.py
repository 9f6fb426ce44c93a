"""Helpers for the local-process executor tests: a real LocalStack started via localstack_ctl.py.

Each LocalStack gets a free port and its own runtime directory, so the tests never touch a
developer's instance on 4566. The first run installs LocalStack's venv (about a minute); later
runs reuse it. Needs boto3 and pytest in the interpreter running the tests.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

CTL = Path(__file__).resolve().parents[1] / "localstack_ctl.py"
REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::000000000000:role/lambda-role"
RUNTIME_SCRIPT_SUFFIX = "lambda_local_executor/runtime.py"


@dataclass
class LocalStack:
    port: int
    env: dict[str, str]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ctl(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(CTL), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            # No retries: a retried invoke would hide timeouts and crashes.
            config=Config(retries={"max_attempts": 0}, read_timeout=120, max_pool_connections=16),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_localstack(runtime_dir: Path) -> LocalStack:
    port = free_port()
    env = dict(os.environ)
    env.pop("LOCALSTACK_HOST", None)
    env.update(GATEWAY_LISTEN=f"127.0.0.1:{port}", CLICKSTREAM_RUNTIME=str(runtime_dir))
    instance = LocalStack(port=port, env=env)
    # Generous: the first start installs the venv.
    result = instance.ctl("start", timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    return instance


def build_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def create_function(
    lambda_client: Any, name: str, files: dict[str, str], handler: str = "app.handler", **extra: Any
) -> None:
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler=handler,
        Code={"ZipFile": build_zip(files)},
        **extra,
    )
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name)


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
