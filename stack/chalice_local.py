"""The collector under `chalice local` (the seed's port 60000): in the background for `make up`, in the
foreground for `make local`, with one command line."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from pipeline.config import Config
from stack.cluster import current
from stack.paths import REPO, runtime_dir
from stack.process import Service, ServiceError, wait_for_port

log = logging.getLogger(__name__)
APP_DIR = REPO / "chalice_app"
HOST = "127.0.0.1"


def port(config: Config | None = None) -> int:
    return (config or current()).collector.port


def url(config: Config | None = None) -> str:
    return f"http://{HOST}:{port(config)}"


def command(port_: int, stage: str = "dev") -> list[str]:
    """`chalice local` for `stage` on 127.0.0.1 (run from APP_DIR)."""
    chalice = Path(sys.executable).parent / "chalice"
    return [str(chalice), "local", "--host", HOST, "--port", str(port_), "--stage", stage, "--no-autoreload"]


def service(port_: int | None = None, name: str = "chalice-local") -> Service:
    return Service(name, runtime_dir(), marker=f"chalice local --host {HOST} --port {port_ or port()}")


def start(config: Config | None = None, timeout_s: float = 30.0, name: str = "chalice-local") -> None:
    """`chalice local` in the background, with the stack's configuration as variables (its stage's own, such as the
    dev stage's REQUIRE_WRITE_KEY=false, go on top); `name` and a config of its own run a second one."""
    config = config or current()
    svc = service(port(config), name)
    started = time.monotonic()
    svc.start(command(port(config)), env=config.child_environment(as_variables=True), cwd=APP_DIR)
    if not wait_for_port(HOST, port(config), timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"chalice local did not open port {port(config)}; last log lines:\n{svc.log_tail()}")
    log.info("chalice local: the collector on %s in %.1fs (pid %s)", url(config), time.monotonic() - started, svc.pid())


def run_in_foreground(config: Config | None = None) -> None:
    """`make local`: chalice local in this terminal, until Ctrl-C."""
    config = config or current()
    os.chdir(APP_DIR)
    argv = command(port(config))
    os.execve(argv[0], argv, config.child_environment(as_variables=True))


def stop(config: Config | None = None, name: str = "chalice-local") -> None:
    if service(port(config), name).stop(timeout_s=10):
        log.info("%s: stopped", name)


def status(config: Config | None = None) -> str:
    pid = service(port(config)).pid()
    return f"chalice local: the collector runs (pid {pid}) on {url(config)}" if pid else "chalice local: not running"
