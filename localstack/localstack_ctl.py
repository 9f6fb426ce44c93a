#!/usr/bin/env python3
"""Install, start and stop LocalStack in host mode (no Docker), with Lambda as local processes.

Usage: python3 localstack/localstack_ctl.py {install,start,stop,status,health}

  install  create the virtualenv and install LocalStack + the local-process Lambda executor
           (skipped when nothing changed since the last install)
  start    install if needed, start LocalStack in the background, wait until it is healthy
  stop     SIGTERM LocalStack's process group, SIGKILL after a timeout, make sure no Lambda
           runtime process is left
  status   exit 0 when running, 3 when not
  health   print the state of the configured services; exit 0 when all are running

Environment (default):
  CLICKSTREAM_HOME          ~/.cache/clickstream; the venv is $CLICKSTREAM_HOME/venvs/localstack
  CLICKSTREAM_RUNTIME       <repo>/.runtime/localstack; log, pid file and LocalStack state
  GATEWAY_LISTEN            127.0.0.1:4566; where LocalStack listens
  LOCALSTACK_HOST           host:port of GATEWAY_LISTEN; what LocalStack puts in URLs it returns
                            (its own default, localhost.localstack.cloud, needs public DNS)
  GATEWAY_SERVER            hypercorn (LocalStack's default, twisted, listens on all interfaces)
  SERVICES                  s3,apigateway,lambda,iam,sts,sqs,cloudwatch,logs
  LOCALSTACK_START_TIMEOUT  90 (seconds to wait for health)
  LOCALSTACK_STOP_TIMEOUT   10 (seconds between SIGTERM and SIGKILL)
  LAMBDA_RUNTIME_EXECUTOR   local-process
  LAMBDA_LOCAL_PYTHON       unset; force one interpreter for all Python Lambda runtimes
  LAMBDA_LOCAL_RUNTIME_LIBS <venv>/lambda-runtime-libs (boto3, as on AWS); empty to disable
Any other LocalStack setting in the environment (DEBUG, LAMBDA_KEEPALIVE_MS, ...) passes through.

Standard library only: runs with any python3 >= 3.10, before anything is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REQUIREMENTS = HERE / "requirements.txt"
RUNTIME_REQUIREMENTS = HERE / "lambda-runtime-requirements.txt"
PLUGIN_DIR = HERE / "lambda-local-executor"
# Identifies our Lambda runtime processes in /proc/<pid>/cmdline.
RUNTIME_SCRIPT_SUFFIX = "lambda_local_executor/runtime.py"
DEFAULT_SERVICES = "s3,apigateway,lambda,iam,sts,sqs,cloudwatch,logs"
HEALTHY = ("running", "available")


@dataclass(frozen=True)
class Settings:
    venv: Path
    runtime_dir: Path
    host: str
    port: int
    services: list[str]
    start_timeout: float
    stop_timeout: float

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def runtime_libs(self) -> Path:
        return self.venv / "lambda-runtime-libs"

    @property
    def stamp(self) -> Path:
        return self.venv / ".clickstream-install-stamp"

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / "localstack.pid"

    @property
    def logfile(self) -> Path:
        return self.runtime_dir / "localstack.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def load_settings() -> Settings:
    home = Path(os.environ.get("CLICKSTREAM_HOME") or Path.home() / ".cache" / "clickstream")
    runtime_dir = Path(os.environ.get("CLICKSTREAM_RUNTIME") or REPO / ".runtime" / "localstack")
    listen = os.environ.get("GATEWAY_LISTEN") or "127.0.0.1:4566"
    # GATEWAY_LISTEN may list several addresses; we talk to the first one.
    host, _, port = listen.split(",")[0].rpartition(":")
    if host in ("", "0.0.0.0", "[::]"):
        host = "127.0.0.1"
    services = os.environ.get("SERVICES") or DEFAULT_SERVICES
    return Settings(
        venv=home / "venvs" / "localstack",
        runtime_dir=runtime_dir.resolve(),
        host=host,
        port=int(port or 4566),
        services=[s.strip() for s in services.split(",") if s.strip()],
        start_timeout=float(os.environ.get("LOCALSTACK_START_TIMEOUT") or 90),
        stop_timeout=float(os.environ.get("LOCALSTACK_STOP_TIMEOUT") or 10),
    )


def log(message: str) -> None:
    print(f"[localstack] {message}", flush=True)


# --- install --------------------------------------------------------------------------------


def install_digest() -> str:
    """Hash of everything the venv is built from; the venv is rebuilt when it changes."""
    digest = hashlib.sha256()
    digest.update(f"{sys.version_info[:2]}".encode())
    files = [REQUIREMENTS, RUNTIME_REQUIREMENTS]
    files += sorted(
        p
        for p in PLUGIN_DIR.rglob("*")
        if p.is_file() and not any(part in ("__pycache__", "build") or part.endswith(".egg-info") for part in p.parts)
    )
    for path in files:
        digest.update(str(path.relative_to(HERE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def runs(python: Path, code: str) -> bool:
    try:
        return subprocess.run([str(python), "-I", "-c", code], capture_output=True).returncode == 0
    except OSError:
        return False


def pip(settings: Settings, *args: str) -> None:
    command = [str(settings.python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(command, check=True)


def install(settings: Settings) -> None:
    digest = install_digest()
    up_to_date = settings.stamp.is_file() and settings.stamp.read_text().strip() == digest
    if up_to_date and subprocess.run([str(settings.python), "-c", "import localstack"]).returncode == 0:
        log(f"venv up to date: {settings.venv}")
        return
    started = time.monotonic()
    settings.stamp.unlink(missing_ok=True)
    if not runs(settings.python, "pass"):
        shutil.rmtree(settings.venv, ignore_errors=True)  # missing or broken (base python gone)
        log(f"creating venv {settings.venv}")
        settings.venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(settings.venv)], check=True)
    log("installing LocalStack requirements")
    pip(settings, "install", "-r", str(REQUIREMENTS))
    log("installing the local-process Lambda executor plugin")
    # Build from a copy: setuptools would otherwise leave build/ and *.egg-info in the repo.
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / PLUGIN_DIR.name
        shutil.copytree(PLUGIN_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build"))
        pip(settings, "install", "--no-deps", "--force-reinstall", str(source))
    log("installing Lambda runtime libraries")
    shutil.rmtree(settings.runtime_libs, ignore_errors=True)
    pip(settings, "install", "--target", str(settings.runtime_libs), "-r", str(RUNTIME_REQUIREMENTS))
    pip(settings, "check")
    settings.stamp.write_text(digest + "\n")
    log(f"installed in {time.monotonic() - started:.1f}s: {settings.venv}")


# --- processes ------------------------------------------------------------------------------


def read_pidfile(settings: Settings) -> int | None:
    try:
        return int(json.loads(settings.pidfile.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_localstack(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return b"localstack.runtime.main" in cmdline and state != b"Z"


def running_pid(settings: Settings) -> int | None:
    pid = read_pidfile(settings)
    return pid if pid is not None and is_localstack(pid) else None


def runtime_processes(port: int) -> list[int]:
    """Lambda runtime processes of the LocalStack listening on ``port``."""
    needle = f":{port}/_localstack_lambda/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(arg.decode(errors="replace").endswith(RUNTIME_SCRIPT_SUFFIX) for arg in cmdline):
                continue
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def process_uptime(pid: int) -> float:
    # Field 22 of /proc/<pid>/stat: start time in clock ticks after boot.
    start_ticks = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
    boot_seconds = float(Path("/proc/uptime").read_text().split()[0])
    return boot_seconds - start_ticks / os.sysconf("SC_CLK_TCK")


def port_in_use(settings: Settings) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((settings.host, settings.port)) == 0


def fetch_health(settings: Settings) -> dict[str, str] | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{settings.url}/_localstack/health", timeout=2) as response:
            services: dict[str, str] = json.load(response).get("services", {})
            return services
    except (OSError, ValueError):
        return None


def is_healthy(settings: Settings, services: dict[str, str] | None) -> bool:
    return services is not None and all(services.get(s) in HEALTHY for s in settings.services)


def localstack_env(settings: Settings) -> dict[str, str]:
    # A caller's PYTHONPATH/venv must not leak into LocalStack's interpreter.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    defaults = {
        "GATEWAY_LISTEN": f"{settings.host}:{settings.port}",
        "LOCALSTACK_HOST": f"{settings.host}:{settings.port}",
        # LocalStack's default server (twisted) ignores the host of GATEWAY_LISTEN and listens on
        # all interfaces; hypercorn binds where told (loopback) at about the same throughput.
        "GATEWAY_SERVER": "hypercorn",
        "SERVICES": ",".join(settings.services),
        # Load services at start: lazy loading makes the first request slow and SIGTERM can hang.
        "EAGER_SERVICE_LOADING": "1",
        "LAMBDA_RUNTIME_EXECUTOR": "local-process",
        "LAMBDA_LOCAL_RUNTIME_LIBS": str(settings.runtime_libs),
        # No DNS server (port 53), no certificate download, no analytics: none is reachable here.
        "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    # Host mode: LocalStack would otherwise assume container paths and behaviour.
    env["OVERRIDE_IN_DOCKER"] = "0"
    env["FILESYSTEM_ROOT"] = str(settings.runtime_dir / "state")
    return env


# --- commands -------------------------------------------------------------------------------


def cmd_install(settings: Settings) -> int:
    install(settings)
    return 0


def cmd_start(settings: Settings) -> int:
    install(settings)
    pid = running_pid(settings)
    if pid is not None:
        if is_healthy(settings, fetch_health(settings)):
            log(f"already running (pid {pid}) at {settings.url}")
            return 0
        log(f"pid {pid} is running but not healthy; stop it first")
        return 1
    if port_in_use(settings):
        log(f"{settings.host}:{settings.port} is already in use by another process")
        return 1
    settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with settings.logfile.open("wb") as logfile:
        proc = subprocess.Popen(
            # -I: neither the caller's cwd nor PYTHONPATH on sys.path. `localstack` is a namespace
            # package, so a directory named localstack (like this one) would merge into it.
            [str(settings.python), "-I", "-m", "localstack.runtime.main"],
            cwd=settings.runtime_dir,
            env=localstack_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop signals the whole tree
        )
    settings.pidfile.write_text(json.dumps({"pid": proc.pid, "host": settings.host, "port": settings.port}) + "\n")
    deadline = started + settings.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log(f"LocalStack exited with {proc.returncode}; last log lines:")
            print("\n".join(settings.logfile.read_text(errors="replace").splitlines()[-30:]))
            settings.pidfile.unlink(missing_ok=True)
            return 1
        if is_healthy(settings, fetch_health(settings)):
            log(
                f"ready at {settings.url} in {time.monotonic() - started:.1f}s (pid {proc.pid}, log {settings.logfile})"
            )
            return 0
        time.sleep(0.1)
    log(f"not healthy after {settings.start_timeout:.0f}s; stopping it (log {settings.logfile})")
    cmd_stop(settings)
    return 1


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while True:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not is_zombie(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return False


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def cmd_stop(settings: Settings) -> int:
    started = time.monotonic()
    pid = running_pid(settings)
    port = settings.port
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        port = int(json.loads(settings.pidfile.read_text())["port"])
    if pid is None:
        log("not running")
    else:
        kill_group(pid, signal.SIGTERM)
        if wait_gone([pid], settings.stop_timeout):
            log(f"no exit {settings.stop_timeout:.0f}s after SIGTERM; sending SIGKILL")
            kill_group(pid, signal.SIGKILL)
            if wait_gone([pid], 10):
                log(f"pid {pid} survived SIGKILL")
                return 1
        log(f"stopped pid {pid} in {time.monotonic() - started:.1f}s")
    settings.pidfile.unlink(missing_ok=True)
    # LocalStack stops its Lambda environments on shutdown and each runtime kills itself when
    # its parent disappears; anything still here after that is killed.
    leftovers = wait_gone(runtime_processes(port), 3)
    for leftover in leftovers:
        kill_group(leftover, signal.SIGKILL)
    if leftovers:
        log(f"killed {len(leftovers)} leftover Lambda runtime process(es): {leftovers}")
        if wait_gone(leftovers, 5):
            return 1
    return 0


def cmd_status(settings: Settings) -> int:
    pid = running_pid(settings)
    if pid is None:
        busy = " (but the port is in use by another process)" if port_in_use(settings) else ""
        log(f"not running{busy}")
        return 3
    services = fetch_health(settings)
    state = "healthy" if is_healthy(settings, services) else "NOT healthy"
    rss = rss_mb(pid)
    uptime = process_uptime(pid)
    runtimes = runtime_processes(settings.port)
    log(
        f"running, {state}: pid {pid}, {settings.url}, RSS {rss or 0:.0f} MiB, "
        f"up ~{uptime:.0f}s, {len(runtimes)} Lambda runtime process(es)"
    )
    return 0


def cmd_health(settings: Settings) -> int:
    services = fetch_health(settings)
    if services is None:
        log(f"no answer from {settings.url}/_localstack/health")
        return 1
    print(json.dumps({s: services.get(s, "missing") for s in settings.services}, indent=2))
    return 0 if is_healthy(settings, services) else 1


COMMANDS = {
    "install": cmd_install,
    "start": cmd_start,
    "stop": cmd_stop,
    "status": cmd_status,
    "health": cmd_health,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    return COMMANDS[args.command](load_settings())


if __name__ == "__main__":
    sys.exit(main())
