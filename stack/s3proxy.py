"""S3Proxy (s3proxy/pom.xml; Apache-2.0): the durable lake store of LAKE_STORE=s3proxy. It serves S3's API from a
folder of the runtime (jclouds' filesystem backend: one file per object), with the stack's AWS keys, on the
address of LAKE_S3_ENDPOINT. A restart, or a kill, loses nothing that was stored."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline.config import Config
from pipeline.contract import host_port
from stack import maven
from stack.paths import REPO, cache_dir, runtime_dir
from stack.process import Service, ServiceError, wait_for_port

log = logging.getLogger(__name__)

POM = REPO / "s3proxy" / "pom.xml"
LOGBACK = REPO / "s3proxy" / "logback.xml"
MAIN = "org.gaul.s3proxy.Main"


def version() -> str:
    return maven.pinned(POM, "s3proxy.version")


def fetch_jars() -> Path:
    """S3Proxy's classpath, resolved with mvn into the cache once per pom.xml content (121 jars, 43 MB)."""
    return maven.fetch_classpath(POM, cache_dir() / f"s3proxy-{version()}" / "libs", f"s3proxy: S3Proxy {version()}")


def data_dir() -> Path:
    """The objects, one file each under a folder per bucket: the lake, while LAKE_STORE=s3proxy."""
    return runtime_dir() / "s3proxy"


def service() -> Service:
    return Service("s3proxy", runtime_dir(), marker=MAIN)


def address(config: Config) -> tuple[str, int]:
    return host_port(config.lake.s3_endpoint.split("://", 1)[-1].rstrip("/"))


def properties(config: Config) -> Path:
    """S3Proxy's settings, in the runtime folder (readable by its owner only: they hold the keys)."""
    path = runtime_dir() / "s3proxy.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    host, port = address(config)
    lines = {
        "s3proxy.endpoint": f"http://{host}:{port}",
        # Signature V2 and V4, as AWS's S3 takes them; the stack's keys (LocalStack's local-dev `test`/`test`).
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": config.aws.access_key_id,
        "s3proxy.credential": config.aws.secret_access_key,
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(data_dir()),
    }
    path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    return path


def start(config: Config, timeout_s: float = 60.0) -> None:
    """S3Proxy in the background, once its port answers."""
    svc = service()
    if svc.pid() is not None:
        return
    classpath = str(fetch_jars() / "*")
    data_dir().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    argv = [maven.java(config), "-Xmx256m", f"-Dlogback.configurationFile={LOGBACK}", "-cp", classpath, MAIN]
    svc.start([*argv, "--properties", str(properties(config))], cwd=runtime_dir())
    host, port = address(config)
    if not wait_for_port(host, port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"s3proxy did not open port {port}; last log lines:\n{svc.log_tail()}")
    log.info(
        "s3proxy: %s on %s in %.1fs (pid %s)", version(), config.lake.s3_endpoint, time.monotonic() - started, svc.pid()
    )


def stop() -> None:
    if service().stop(timeout_s=10):
        log.info("s3proxy: stopped")


def status(config: Config) -> str:
    pid = service().pid()
    where = f"{config.lake.s3_endpoint}, data under {data_dir()}"
    return f"s3proxy: running (pid {pid}) on {where}" if pid else f"s3proxy: not running ({where})"
