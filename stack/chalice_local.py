"""The collector under `chalice local` (the seed's port 60000): in the background for `make up`, in the
foreground for `make local`, with one command line."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from chalicelib.settings import setting
from stack.paths import REPO, runtime_dir
from stack.process import Service, ServiceError, wait_for_port

APP_DIR = REPO / "chalice_app"
HOST = "127.0.0.1"


def port() -> int:
    return int(setting("COLLECTOR_PORT"))


def url() -> str:
    return f"http://{HOST}:{port()}"


def command(stage: str = "dev", port_: int | None = None) -> list[str]:
    """`chalice local` for `stage` on 127.0.0.1 (run from APP_DIR)."""
    chalice = Path(sys.executable).parent / "chalice"
    listen = ["--host", HOST, "--port", str(port_ or port())]
    return [str(chalice), "local", *listen, "--stage", stage, "--no-autoreload"]


def service(port_: int | None = None, name: str = "chalice-local") -> Service:
    return Service(name, runtime_dir(), marker=f"chalice local --host {HOST} --port {port_ or port()}")


def start(timeout_s: float = 30.0) -> None:
    svc = service()
    started = time.monotonic()
    svc.start(command(), cwd=APP_DIR)
    if not wait_for_port(HOST, port(), timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"chalice local did not open port {port()}; last log lines:\n{svc.log_tail()}")
    print(f"chalice local: the collector on {url()} in {time.monotonic() - started:.1f}s (pid {svc.pid()})", flush=True)


def run_in_foreground() -> None:
    """`make local`: chalice local in this terminal, until Ctrl-C."""
    os.chdir(APP_DIR)
    argv = command()
    os.execv(argv[0], argv)


def stop() -> None:
    if service().stop(timeout_s=10):
        print("chalice local: stopped", flush=True)


def status() -> str:
    pid = service().pid()
    return f"chalice local: the collector runs (pid {pid}) on {url()}" if pid else "chalice local: not running"
