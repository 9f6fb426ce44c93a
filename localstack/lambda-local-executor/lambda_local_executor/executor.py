"""LocalStack Lambda runtime executor that runs Python handlers as local processes.

LocalStack's built-in executor starts a Docker container per execution environment. This one starts, per
execution environment, one local Python process running ``runtime.py`` (next to this file) with the
function's unpacked code as working directory. The process speaks LocalStack's executor-endpoint protocol
(ready/response/error callbacks), so LocalStack's invocation machinery (assignment, scaling to concurrent
environments, keep-alive, logs) works unchanged.

Like LocalStack's Docker executor, the class is thin and delegates: ``interpreters`` picks the Python,
``environment`` builds the process's environment and command line, ``processes`` spawns, reads, watches and
kills it, ``output`` splits its output, ``invocations`` composes each invocation's log and AWS's error answers,
``endpoint`` receives LocalStack's callbacks.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeoutError

from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import ShutdownDuringStartup
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

from localstack import config

from .endpoint import RuntimeEndpoint
from .environment import code_dir, function_environment, runtime_command
from .interpreters import resolve_interpreter
from .invocations import Invocation, checked_response, compose_logs, exit_error, timeout_error
from .output import RuntimeOutput
from .processes import RuntimeProcess

LOG = logging.getLogger(__name__)

# Seconds between SIGTERM and SIGKILL when an environment is stopped.
STOP_GRACE_SECONDS = 1.0

# Executors with a live process, so that an interpreter exit never leaves one behind.
_LIVE_EXECUTORS: weakref.WeakSet[LocalProcessRuntimeExecutor] = weakref.WeakSet()


class LocalProcessRuntimeExecutor(RuntimeExecutor):
    executor_endpoint: RuntimeEndpoint

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self.executor_endpoint = RuntimeEndpoint(id, self)
        self._lock = threading.RLock()
        self._env: dict[str, str] = {}
        self._process: RuntimeProcess | None = None
        self._output = RuntimeOutput(self._on_text, self._on_end)
        self._invocation: Invocation | None = None
        self._init_duration_ms: float | None = None
        self._stopped = False

    # RuntimeExecutor interface ---------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        interpreter = resolve_interpreter(self.function_version.config.runtime)
        self._env = function_environment(self.function_version, env_vars, interpreter)
        self._start_process()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            process = self._process
        if process is not None:
            process.kill(STOP_GRACE_SECONDS)
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
        process = self._ensure_running()
        invocation = Invocation(request_id)
        with self._lock:
            self._invocation = invocation
            # So that endpoint.shutdown() (function update/delete) cancels a running invocation.
            self.executor_endpoint.invocation_future = invocation.future  # type: ignore[assignment]
            init_duration, self._init_duration_ms = self._init_duration_ms, None
        started = time.monotonic()
        try:
            response, is_error = self._run_invocation(invocation, process, payload)
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
        return self._output.text()

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.runtime:
            raise LambdaRuntimeException("The local-process executor supports zip-packaged Python functions only")
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

    # the runtime process ---------------------------------------------------------------------

    def _start_process(self) -> RuntimeProcess:
        """Spawn the runtime and wait until it reported ready (or died)."""
        interpreter = resolve_interpreter(self.function_version.config.runtime)
        command = runtime_command(self.function_version, interpreter, self._env)
        with self._lock:
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment stopped before start")
            startup: Future[bool] = Future()
            self.executor_endpoint.startup_future = startup
            process = RuntimeProcess(
                command, str(code_dir(self.function_version)), self._env, self._output, self._on_exit, self.id
            )
            self._process = process
            _LIVE_EXECUTORS.add(self)
        LOG.debug("Started Lambda runtime pid %s for %s: %s", process.pid, self.function_version.qualified_arn, command)
        spawned = time.monotonic()
        try:
            # ExecutionEnvironment has its own startup timer that calls stop(); this is a backstop.
            startup.result(timeout=config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT + 10)
        except CancelledError:
            raise ShutdownDuringStartup("Execution environment stopped during startup") from None
        except FutureTimeoutError:
            process.kill()
            raise LambdaRuntimeException("Lambda runtime process did not become ready") from None
        self._init_duration_ms = (time.monotonic() - spawned) * 1000
        return process

    def _ensure_running(self) -> RuntimeProcess:
        with self._lock:
            process = self._process
            if self._stopped:
                raise ShutdownDuringStartup("Execution environment is stopped")
        if process is None or not process.alive():
            # Previous invocation timed out or crashed: fresh process, like AWS's sandbox reset.
            LOG.debug("Restarting Lambda runtime for %s", self.function_version.qualified_arn)
            process = self._start_process()
        return process

    def _on_exit(self, process: RuntimeProcess, code: int) -> None:
        with self._lock:
            if process is not self._process:
                return
            startup = self.executor_endpoint.startup_future
            if startup is not None and not startup.done():
                message = f"Lambda runtime process exited with code {code} during startup:\n{self._output.tail()}"
                startup.set_exception(LambdaRuntimeException(message))
            invocation = self._invocation
            if invocation is not None and invocation.outcome == "pending":
                invocation.outcome = "exited"
                invocation.exit_code = code
                if not invocation.future.done():
                    invocation.future.set_result(exit_error(invocation, code))
        if not self._stopped:
            LOG.debug("Lambda runtime pid %s of %s exited with %s", process.pid, self.id, code)

    def _on_text(self, text: str) -> None:
        with self._lock:
            if self._invocation is not None:
                self._invocation.capture(text)

    def _on_end(self, request_id: str, duration_ms: float, max_memory_mb: int) -> None:
        with self._lock:
            invocation = self._invocation
        if invocation is not None and invocation.request_id == request_id:
            invocation.duration_ms = duration_ms
            invocation.max_memory_mb = max_memory_mb
            invocation.end_seen.set()

    # one invocation --------------------------------------------------------------------------

    def _run_invocation(
        self, invocation: Invocation, process: RuntimeProcess, payload: dict[str, str]
    ) -> tuple[bytes, bool]:
        timeout = float(self.function_version.config.timeout)
        try:
            process.deliver(json.dumps(payload).encode())
        except OSError as e:
            # If the process just died, _on_exit reports Runtime.ExitError instead.
            try:
                return invocation.future.result(timeout=3)
            except (FutureTimeoutError, CancelledError):
                raise LambdaRuntimeException(f"Could not deliver invocation: {e}") from e
        try:
            return invocation.future.result(timeout=timeout)
        except FutureTimeoutError:
            return self._on_timeout(invocation, process, timeout)
        except CancelledError:
            raise ShutdownDuringStartup("Execution environment stopped during invocation") from None

    def complete(self, request_id: str, body: bytes, is_error: bool) -> None:
        """The runtime's answer to an invocation, called by the endpoint."""
        with self._lock:
            invocation = self._invocation
            if invocation is None or invocation.request_id != request_id or invocation.outcome != "pending":
                LOG.debug("Ignoring late result for request %s", request_id)
                return
            invocation.outcome = "done"
            if not invocation.future.done():
                invocation.future.set_result(checked_response(body, is_error))

    def _on_timeout(self, invocation: Invocation, process: RuntimeProcess, timeout: float) -> tuple[bytes, bool]:
        with self._lock:
            if invocation.outcome != "pending":  # answered (or crashed) right at the deadline
                return invocation.future.result()
            invocation.outcome = "timeout"
        invocation.max_memory_mb = process.peak_rss_mb()
        process.kill()
        process.drain_output()
        return timeout_error(invocation, timeout)


@atexit.register
def _stop_all() -> None:
    for executor in list(_LIVE_EXECUTORS):
        if executor._process is not None:
            executor._process.kill()
