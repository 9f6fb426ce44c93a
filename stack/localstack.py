"""LocalStack in host mode (no Docker), in its own virtualenv, with Lambda functions as local processes.

localstack/requirements.txt pins LocalStack (its pins clash with ours, hence the separate venv);
localstack/lambda-local-executor/ is the Lambda executor plugin installed beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pipeline.config import CONFIG_VARIABLE, Config
from pipeline.contract import host_port
from stack.cluster import current
from stack.paths import REPO, runtime_dir
from stack.process import Service, ServiceError, port_open
from stack.venvs import Virtualenv

log = logging.getLogger(__name__)

LOCALSTACK_DIR = REPO / "localstack"
REQUIREMENTS = LOCALSTACK_DIR / "requirements.txt"
RUNTIME_REQUIREMENTS = LOCALSTACK_DIR / "lambda-runtime-requirements.txt"
PLUGIN_DIR = LOCALSTACK_DIR / "lambda-local-executor"
# Our Lambda runtime processes are recognised by this path in their command line.
RUNTIME_SCRIPT_SUFFIX = "lambda_local_executor/runtime.py"
HEALTHY = ("running", "available")


def _plugin_sources() -> list[Path]:
    return sorted(
        p
        for p in PLUGIN_DIR.rglob("*")
        if p.is_file() and not any(part in ("__pycache__", "build") or part.endswith(".egg-info") for part in p.parts)
    )


def venv() -> Virtualenv:
    return Virtualenv("localstack", (REQUIREMENTS, RUNTIME_REQUIREMENTS, *_plugin_sources()))


def _python() -> Path:
    return venv().python


def _runtime_libs() -> Path:
    return venv().path / "lambda-runtime-libs"


# The runtime-library sets, each named after the oldest Python it serves (the executor picks the newest that
# fits a function's runtime).
RUNTIME_LIB_PYTHONS = ("3.8", "3.9", "3.10")


def runtime_requirements(python: str) -> list[str]:
    """The runtime libraries' pins for one Python, their markers evaluated for it (pip would use its own)."""
    from packaging.requirements import Requirement

    pins = []
    for line in RUNTIME_REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"python_version": python}):
            pins.append(f"{requirement.name}{requirement.specifier}")
    return pins


def listen(config: Config | None = None) -> tuple[str, int]:
    """Where LocalStack listens: the first address of GATEWAY_LISTEN (0.0.0.0 is reached on 127.0.0.1)."""
    host, port = host_port((config or current()).stack.gateway_listen.split(",")[0])
    return (host if host not in ("0.0.0.0", "::") else "127.0.0.1"), port


def endpoint_url(config: Config | None = None) -> str:
    """LocalStack's URL, from GATEWAY_LISTEN."""
    host, port = listen(config)
    return f"http://{host}:{port}"


def services(config: Config | None = None) -> list[str]:
    return [s.strip() for s in (config or current()).stack.localstack_services.split(",") if s.strip()]


def state_dir() -> Path:
    return runtime_dir() / "localstack"


def service() -> Service:
    return Service("localstack", runtime_dir(), marker="localstack.runtime.main")


# --- install ----------------------------------------------------------------------------------------------


def install() -> None:
    """Create LocalStack's venv with the executor plugin and the Lambda runtime libraries (once)."""
    venv().ensure(_fill, extra=str(RUNTIME_LIB_PYTHONS), what="LocalStack (about a minute)")


def _fill(env: Virtualenv) -> None:
    env.pip("install", "-r", str(REQUIREMENTS))
    # Built from a copy: setuptools would otherwise leave build/ and *.egg-info in the repo.
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / PLUGIN_DIR.name
        shutil.copytree(PLUGIN_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        env.pip("install", "--no-deps", "--force-reinstall", str(source))
    # What AWS's Python runtime provides without packaging (boto3), for the Lambda processes.
    shutil.rmtree(_runtime_libs(), ignore_errors=True)
    for python in RUNTIME_LIB_PYTHONS:
        target = _runtime_libs() / python
        # Pure-Python wheels for that Python, whatever LocalStack's own interpreter is.
        # Every pin is listed, so no resolver run for LocalStack's own interpreter.
        target_python = ["--python-version", python, "--only-binary=:all:", "--no-deps"]
        env.pip("install", "--target", str(target), *target_python, *runtime_requirements(python))


# --- run --------------------------------------------------------------------------------------------------


def _environment(config: Config) -> dict[str, str]:
    host, port = listen(config)
    # The caller's virtualenv must not leak into LocalStack's interpreter, nor our tree into its functions.
    left_out = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", CONFIG_VARIABLE)
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    defaults = {
        "GATEWAY_LISTEN": f"{host}:{port}",
        # LocalStack's own default host name (localhost.localstack.cloud) needs public DNS.
        "LOCALSTACK_HOST": f"{host}:{port}",
        # The default server (twisted) ignores GATEWAY_LISTEN's host and listens on every interface;
        # hypercorn binds to loopback as told, at about the same throughput.
        "GATEWAY_SERVER": "hypercorn",
        "SERVICES": ",".join(services(config)),
        # Services load at start: lazy loading makes first requests slow and SIGTERM can hang.
        "EAGER_SERVICE_LOADING": "1",
        "LAMBDA_RUNTIME_EXECUTOR": "local-process",
        "LAMBDA_LOCAL_RUNTIME_LIBS": str(_runtime_libs()),
        # No DNS server on port 53, no certificate download, no analytics: none is reachable here.
        "DNS_ADDRESS": "0",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    # Host mode: otherwise LocalStack believes it runs in a container and writes to /var/lib/localstack.
    env["OVERRIDE_IN_DOCKER"] = "0"
    env["FILESYSTEM_ROOT"] = str(state_dir())
    return env


def health(config: Config | None = None) -> dict[str, str] | None:
    """The state of each service LocalStack reports, or None if it does not answer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint_url(config)}/_localstack/health", timeout=2) as response:
            return json.load(response).get("services", {})
    except (OSError, ValueError):
        return None


def healthy(config: Config | None = None) -> bool:
    config = config or current()
    states = health(config)
    return states is not None and all(states.get(s) in HEALTHY for s in services(config))


def start(config: Config | None = None) -> None:
    config = config or current()
    install()
    svc = service()
    host, port = listen(config)
    if svc.pid() is None and port_open(host, port):
        raise ServiceError(
            f"localstack: {host}:{port} is taken by a process this stack did not start; stop it or set "
            "GATEWAY_LISTEN to another address"
        )
    timeout_s = config.stack.localstack_start_timeout_s
    state_dir().mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # -I: neither the cwd nor PYTHONPATH on sys.path. `localstack` is a namespace package, so a folder
    # named localstack (like ours) would merge into it.
    svc.start([str(_python()), "-I", "-m", "localstack.runtime.main"], env=_environment(config), cwd=state_dir())
    while not healthy(config):
        if svc.pid() is None or time.monotonic() - started > timeout_s:
            tail = svc.log_tail()
            stop(config)
            raise ServiceError(f"localstack: not healthy at {endpoint_url(config)}; last log lines:\n{tail}")
        time.sleep(0.1)
    log.info("localstack: %s healthy in %.1fs (pid %s)", endpoint_url(config), time.monotonic() - started, svc.pid())


def runtime_processes(config: Config | None = None) -> list[int]:
    """Lambda runtime processes that call back to this LocalStack."""
    _, port = listen(config)
    needle = f":{port}/_localstack_lambda/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if (
                any(arg.decode(errors="replace").endswith(RUNTIME_SCRIPT_SUFFIX) for arg in cmdline)
                and needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop(config: Config | None = None) -> None:
    config = config or current()
    stopped = service().stop(timeout_s=config.stack.localstack_stop_timeout_s)
    # LocalStack stops its Lambda environments on shutdown and each runtime exits when its parent goes;
    # whatever is still here a moment later is killed.
    deadline = time.monotonic() + 3
    while (leftovers := runtime_processes(config)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in leftovers:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if stopped:
        log.info("localstack: stopped%s", f" (killed {len(leftovers)} leftover Lambda processes)" if leftovers else "")


def status(config: Config | None = None) -> str:
    config = config or current()
    pid = service().pid()
    if pid is None:
        return "localstack: not running"
    state = "healthy" if healthy(config) else "NOT healthy"
    rss_kb = next(
        (
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        ),
        0,
    )
    return (
        f"localstack: running (pid {pid}) at {endpoint_url(config)}, {state}, RSS {rss_kb // 1024} MiB, "
        f"{len(runtime_processes(config))} Lambda process(es)"
    )


# --- clients ----------------------------------------------------------------------------------------------


def client(name: str, config: Config | None = None, /, **options: Any) -> Any:
    """A boto3 client of the stack's AWS (LocalStack unless AWS_ENDPOINT_URL says otherwise), made by localstack-client
    with the configured credentials and region; `options` go to boto3 (config=, a botocore Config, say)."""
    from localstack_client.session import Session

    aws = (config or current()).aws
    session = Session(
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=aws.secret_access_key,
        region_name=aws.region,
        localstack_host=aws.endpoint_url.split("://", 1)[-1],
    )
    return session.client(name, **options)


#: How often a wait for a function polls it: LocalStack settles one in a fraction of a second, and boto's waiters
#: poll every second, AWS's pace. The same ceiling as theirs (300 s).
FUNCTION_WAIT = {"Delay": 0.1, "MaxAttempts": 3000}


def wait_for_function(lambda_client: Any, name: str, state: str = "updated") -> None:
    """Until function `name` is active (`state="active"`, after its creation) or its last update has succeeded."""
    lambda_client.get_waiter(f"function_{state}_v2").wait(FunctionName=name, WaiterConfig=FUNCTION_WAIT)


def quick_function_waiters() -> dict[str, str]:
    """The variable (AWS_DATA_PATH) that gives boto clients of another process, `chalice deploy`'s, Lambda waiters
    polling as often as wait_for_function: chalice waits for each function it creates or updates with boto's own
    waiters, which poll every 5 s. The waiters are the installed botocore's, with only the pace changed, in the runtime
    folder (botocore reads a data folder named by that variable before its own)."""
    import botocore

    data = runtime_dir() / "botocore-data"
    for source in (Path(botocore.__file__).parent / "data" / "lambda").glob("*/waiters-2.json"):
        waiters = json.loads(source.read_text())
        for waiter in waiters["waiters"].values():
            ceiling_s = waiter["delay"] * waiter["maxAttempts"]
            waiter["delay"], waiter["maxAttempts"] = FUNCTION_WAIT["Delay"], round(ceiling_s / FUNCTION_WAIT["Delay"])
        target = data / "lambda" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Renamed into place: a deploy beside this one may be reading it.
        written = target.with_name(f".{target.name}.{os.getpid()}")
        written.write_text(json.dumps(waiters))
        written.replace(target)
    return {"AWS_DATA_PATH": str(data)}


def ensure_bucket(bucket: str, config: Config | None = None) -> Any:
    """Create `bucket` unless it exists; return the S3 client."""
    config = config or current()
    s3 = client("s3", config)
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": config.aws.region})
    return s3
