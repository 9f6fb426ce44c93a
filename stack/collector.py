"""The collector under `chalice local` (the seed's port 60000), as a background service."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from stack.paths import REPO, runtime_dir
from stack.process import Service, wait_for_port

APP_DIR = REPO / "chalice_app"
HOST = "127.0.0.1"


def port() -> int:
    return int(os.environ.get("COLLECTOR_PORT") or "60000")


def url() -> str:
    return f"http://{HOST}:{port()}"


def service() -> Service:
    return Service("collector", runtime_dir(), marker=f"chalice local --host {HOST} --port {port()}")


def start(timeout_s: float = 30.0) -> None:
    svc = service()
    chalice = Path(sys.executable).parent / "chalice"
    started = time.monotonic()
    svc.start(
        [str(chalice), "local", "--host", HOST, "--port", str(port()), "--stage", "dev", "--no-autoreload"], cwd=APP_DIR
    )
    if not wait_for_port(HOST, port(), timeout_s, alive=lambda: svc.pid() is not None):
        raise SystemExit(f"collector: chalice local did not open port {port()}; last log lines:\n{svc.log_tail()}")
    print(f"collector: chalice local on {url()} in {time.monotonic() - started:.1f}s (pid {svc.pid()})", flush=True)


def stop() -> None:
    if service().stop(timeout_s=10):
        print("collector: stopped", flush=True)


def status() -> str:
    pid = service().pid()
    return f"collector: chalice local running (pid {pid}) on {url()}" if pid else "collector: not running"
