"""LocalStack Lambda runtime executor that runs Python handlers as local processes.

LocalStack's built-in executor starts a Docker container per execution environment. This one
starts, per execution environment, one local Python process running ``runtime.py`` (next to this
file) with the function's unpacked code as working directory. The process speaks LocalStack's
executor-endpoint protocol (ready/response/error callbacks), so LocalStack's invocation
machinery (assignment, scaling to concurrent environments, keep-alive, logs) works unchanged.

What this module adds on top of the protocol:

* interpreter choice from the function's runtime (``python3.11`` -> ``python3.11`` on PATH),
* log capture: the runtime's stdout/stderr are read here and assembled into the AWS-shaped
  per-invocation log (START / output / END / REPORT) that ``--log-type Tail`` shows,
* timeout enforcement and crash detection: both kill the process group, report a function error
  and have the next invocation start a fresh process (like the AWS sandbox reset),
* no process left behind: process groups, descendant scan, atexit hook, and a parent watchdog in
  the runtime itself.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import socket
import subprocess
import threading
import time
import urllib.request
import weakref
from collections import deque
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path

from localstack.aws.api.lambda_ import PackageType
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import (
    ExecutorEndpoint,
    ShutdownDuringStartup,
)
from localstack.services.lambda_.invocation.lambda_models import (
    FunctionVersion,
    InvocationResult,
)
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)
from werkzeug import Request

from localstack import config

from .interpreters import resolve_interpreter, runtime_libs, search_path
from .invocations import Invocation, compose_logs
from .processes import kill_process_tree, peak_rss_mb, signal_name

LOG = logging.getLogger(__name__)

RUNTIME_SCRIPT = Path(__file__).with_name("runtime.py")
# Keep in sync with runtime.CONTROL_MARK.
CONTROL_MARK = "\x1elocal-lambda\x1e"
# Seconds between SIGTERM and SIGKILL when an environment is stopped.
STOP_GRACE_SECONDS = 1.0
# Lines of runtime output kept per environment for get_logs().
LOG_RING_LINES = 2000

# Executors with a live process, so that an interpreter exit never leaves one behind.
_LIVE_EXECUTORS: weakref.WeakSet[LocalProcessRuntimeExecutor] = weakref.WeakSet()


# --- executor -------------------------------------------------------------------------------


class _Endpoint(ExecutorEndpoint):
    """LocalStack's callback endpoint, routing results to the executor's current invocation."""

    def __init__(self, executor: LocalProcessRuntimeExecutor) -> None:
        super().__init__(executor.id, container_address="127.0.0.1", container_port=None)
        self._executor = executor

    def invocation_response(self, request: Request, req_id: str) -> Response:
        self._executor._complete(req_id, request.data, is_error=False)
        return Response(status=202)

    def invocation_error(self, request: Request, req_id: str) -> Response:
        self._executor._complete(req_id, request.data, is_error=True)
        return Response(status=202)

    def status_ready(self, request: Request, executor_id: str) -> Response:
        future = self.startup_future
        if future is not None and not future.done():
            future.set_result(True)
        return Response(status=202)


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    executor_endpoint: _Endpoint

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = _Endpoint(self)
        self._lock = threading.RLock()
        self._env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._port: int | None = None
        self._invocation: Invocation | None = None
        self._ring: deque[str] = deque(maxlen=LOG_RING_LINES)
        self._init_duration_ms: float | None = None
        self._stopped = False

    # RuntimeExecutor interface ---------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        self._env = self._build_env(env_vars)
        self._start_process()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc = self._proc
        if proc is not None:
            kill_process_tree(proc, STOP_GRACE_SECONDS)
        try:
            self.executor_endpoint.shutdown()
        except Exception as e:  # not registered yet / already unregistered
            LOG.debug("Error shutting down executor endpoint %s: %s", self.id, e)
        _LIVE_EXECUTORS.discard(self)

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        if host in ("", "0.0.0.0", "::", "localhost"):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    def get_runtime_endpoint(self) -> str:
        return (
            f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
            f"{self.executor_endpoint.get_endpoint_prefix()}"
        )

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        self._ensure_running()
        invocation = Invocation(request_id)
        with self._lock:
            self._invocation = invocation
            # So that endpoint.shutdown() (function update/delete) cancels a running invocation.
            self.executor_endpoint.invocation_future = invocation.future  # type: ignore[assignment]
            port = self._port
            init_duration = self._init_duration_ms
            self._init_duration_ms = None
        started = time.monotonic()
        try:
            response, is_error = self._run_invocation(invocation, port, payload)
            if invocation.outcome == "done":
                # The runtime writes its end marker before answering; let our reader catch up.
                invocation.end_seen.wait(timeout=2)
        finally:
            with self._lock:
                self._invocation = None
        elapsed_ms = (time.monotonic() - started) * 1000
        logs = compose_logs(invocation, self.function_version, elapsed_ms, init_duration)
        return InvocationResult(request_id, response, is_error=is_error, logs=logs)

    def get_logs(self) -> str:
        return "".join(self._ring)

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.runtime:
            raise LambdaRuntimeException(
                "The local-process Lambda executor supports zip-packaged Python functions only"
            )
        resolve_interpreter(cfg.runtime)
        cfg.code.prepare_for_execution()
        for layer in cfg.layers:
            layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # we use LocalStack's unpacked code cache in place; LocalStack removes it

    @classmethod
    def validate_environment(cls) -> bool:
        LOG.info("Lambda functions run as local processes (local-process executor)")
        return True

    # process lifecycle -----------------------------------------------------------------------

    def _build_env(self, env_vars: dict[str, str]) -> dict[str, str]:
        cfg = self.function_version.config
        env = {key: str(value) for key, value in env_vars.items()}
        code_dir = str(cfg.code.get_unzipped_code_location())
        version = resolve_interpreter(cfg.runtime).version
        layer_paths: list[str] = []
        for layer in cfg.layers:
            layer_dir = layer.code.get_unzipped_code_location()
            layer_paths += [
                str(layer_dir / "python"),
                str(layer_dir / "python" / "lib" / f"python{version}" / "site-packages"),
            ]
        env.update(
            {
                # The process sees real host paths instead of the container's /var/task.
                "LAMBDA_TASK_ROOT": code_dir,
                "LAMBDA_RUNTIME_DIR": str(RUNTIME_SCRIPT.parent),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{cfg.runtime}",
                "PATH": search_path(),
                "LANG": "C.UTF-8",
                "_LOCAL_LAMBDA_SYS_PATH": os.pathsep.join(layer_paths),
                "_LOCAL_LAMBDA_RUNTIME_LIBS": runtime_libs(version),
                "_LOCAL_LAMBDA_PARENT_PID": str(os.getpid()),
            }
        )
        for name in ("TMPDIR", "LD_LIBRARY_PATH"):
            if name in os.environ:
                env[name] = os.environ[name]
        # The function's own variables win, as in LocalStack's environment handling.
        env.update({key: str(value) for key, value in (cfg.environment or {}).items()})
        return env

    def _start_process(self) -> None:
        """Spawn the runtime and wait until it reported ready (or died)."""
        interpreter = resolve_interpreter(self.function_version.config.runtime)
        code_dir = self.function_version.config.code.get_unzipped_code_location()
        with self._lock:
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment stopped before start")
            startup: Future[bool] = Future()
            self.executor_endpoint.startup_future = startup
            # Bind here and hand the listening socket over: no free-port race, and invocations
            # sent before the runtime's server loop runs simply wait in the backlog.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.listen(16)
                env = dict(self._env, _LOCAL_LAMBDA_LISTEN_FD=str(sock.fileno()))
                command = [
                    interpreter.path,
                    "-I",  # isolated: no PYTHON* env, no user site, no script dir on sys.path
                    "-S",  # no site-packages at all: only the deployment package is importable
                    "-u",  # unbuffered, so output interleaves in order with our control lines
                    "-X",
                    "utf8",
                    str(RUNTIME_SCRIPT),
                    self.function_version.id.function_name,
                    self.id,
                ]
                proc = subprocess.Popen(
                    command,
                    cwd=code_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,  # own process group: killpg reaches its children
                )
                self._port = sock.getsockname()[1]
            self._proc = proc
            _LIVE_EXECUTORS.add(self)
            reader = threading.Thread(target=self._read_output, args=(proc,), name=f"lambda-out-{self.id}", daemon=True)
            self._reader = reader
            reader.start()
            threading.Thread(
                target=self._monitor, args=(proc, reader), name=f"lambda-mon-{self.id}", daemon=True
            ).start()
        LOG.debug(
            "Started Lambda runtime pid %s for %s (%s, port %s)",
            proc.pid,
            self.function_version.qualified_arn,
            interpreter.path,
            self._port,
        )
        spawned = time.monotonic()
        try:
            # ExecutionEnvironment has its own startup timer that calls stop(); this is a backstop.
            startup.result(timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT + 10)
        except CancelledError:
            raise ShutdownDuringStartup("Execution environment stopped during startup") from None
        except FutureTimeoutError:
            kill_process_tree(proc, 0)
            raise LambdaRuntimeException("Lambda runtime process did not become ready") from None
        self._init_duration_ms = (time.monotonic() - spawned) * 1000

    def _ensure_running(self) -> None:
        with self._lock:
            proc = self._proc
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment is stopped")
        if proc is None or proc.poll() is not None:
            # Previous invocation timed out or crashed: fresh process, like AWS's sandbox reset.
            LOG.debug("Restarting Lambda runtime for %s", self.function_version.qualified_arn)
            self._start_process()

    def _monitor(self, proc: subprocess.Popen[bytes], reader: threading.Thread) -> None:
        code = proc.wait()
        reader.join(timeout=2)  # collect the last output before reporting
        with self._lock:
            if proc is not self._proc:
                return
            startup = self.executor_endpoint.startup_future
            if startup is not None and not startup.done():
                tail = "".join(list(self._ring)[-20:])
                startup.set_exception(
                    LambdaRuntimeException(f"Lambda runtime process exited with code {code} during startup:\n{tail}")
                )
            invocation = self._invocation
            if invocation is not None and invocation.outcome == "pending":
                invocation.outcome = "exited"
                invocation.exit_code = code
                status = f"signal: {signal_name(-code)}" if code < 0 else f"exit status {code}"
                message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {status}"
                invocation.output.append(f"{message}\nRuntime.ExitError\n")
                body = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message})
                if not invocation.future.done():
                    invocation.future.set_result((body.encode(), True))
        if not self._stopped:
            LOG.debug("Lambda runtime pid %s of %s exited with %s", proc.pid, self.id, code)

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._on_line(line.decode("utf-8", "replace"), newline=True)
        if pending:
            self._on_line(pending.decode("utf-8", "replace"), newline=False)
        proc.stdout.close()

    def _on_line(self, line: str, newline: bool) -> None:
        text, _, control = line.partition(CONTROL_MARK)
        if text or not control:
            text += "\n" if newline else ""
            self._ring.append(text)
            with self._lock:
                if self._invocation is not None:
                    self._invocation.capture(text)
        if control:
            self._on_control(control.split())

    def _on_control(self, words: list[str]) -> None:
        if words[:1] == ["end"] and len(words) == 4:
            with self._lock:
                invocation = self._invocation
            if invocation is not None and invocation.request_id == words[1]:
                invocation.duration_ms = float(words[2])
                invocation.max_memory_mb = int(words[3])
                invocation.end_seen.set()
        else:
            LOG.debug("Lambda runtime %s: %s", self.id, " ".join(words))

    # invocation helpers ----------------------------------------------------------------------

    def _run_invocation(self, invocation: Invocation, port: int | None, payload: dict[str, str]) -> tuple[bytes, bool]:
        timeout = float(self.function_version.config.timeout)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invoke",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                response.read()
        except OSError as e:
            # If the process just died, the monitor reports Runtime.ExitError instead.
            try:
                return invocation.future.result(timeout=3)
            except (FutureTimeoutError, CancelledError):
                raise LambdaRuntimeException(f"Could not deliver invocation: {e}") from e
        try:
            return invocation.future.result(timeout=timeout)
        except FutureTimeoutError:
            return self._on_timeout(invocation, timeout)
        except CancelledError:
            raise ShutdownDuringStartup("Execution environment stopped during invocation") from None

    def _complete(self, request_id: str, body: bytes, is_error: bool) -> None:
        with self._lock:
            invocation = self._invocation
            if invocation is None or invocation.request_id != request_id or invocation.outcome != "pending":
                LOG.debug("Ignoring late result for request %s", request_id)
                return
            invocation.outcome = "done"
            if not invocation.future.done():
                invocation.future.set_result((body, is_error))

    def _on_timeout(self, invocation: Invocation, timeout: float) -> tuple[bytes, bool]:
        with self._lock:
            if invocation.outcome != "pending":  # answered (or crashed) right at the deadline
                return invocation.future.result()
            invocation.outcome = "timeout"
            proc = self._proc
            reader = self._reader
        if proc is not None:
            invocation.max_memory_mb = peak_rss_mb(proc.pid)
            kill_process_tree(proc, 0)
        if reader is not None:
            reader.join(timeout=2)
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        invocation.output.append(f"{stamp} {invocation.request_id} Task timed out after {timeout:.2f} seconds\n")
        message = f"RequestId: {invocation.request_id} Error: Task timed out after {timeout:.2f} seconds"
        body = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message})
        return body.encode(), True


@atexit.register
def _stop_all() -> None:
    for executor in list(_LIVE_EXECUTORS):
        proc = executor._proc
        if proc is not None:
            kill_process_tree(proc, 0)
