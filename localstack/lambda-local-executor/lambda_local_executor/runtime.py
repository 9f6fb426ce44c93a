"""Lambda runtime process for the local-process executor.

The executor (``executor.py``, inside LocalStack; ``environment.py`` builds the command line) starts one
of these per execution environment as ``python -I -S -u -X utf8 runtime.py <function-name> <environment-id>``,
with the function's code directory as working directory and an already-listening loopback
socket inherited as file descriptor ``_LOCAL_LAMBDA_LISTEN_FD``.

It speaks the same protocol as LocalStack's containerised runtime init:

* LocalStack (via the executor) sends ``POST /invoke`` with
  ``{"invoke-id", "invoked-function-arn", "payload", "trace-id"}``;
* we answer at LocalStack's runtime endpoint (``$_LOCAL_LAMBDA_RUNTIME_ENDPOINT``): ``/status/<id>/ready``
  once initialised, ``/invocations/<request-id>/response`` or ``/invocations/<request-id>/error`` per invocation.

Handler output is not captured here: stdout/stderr go to a pipe read by the executor, which
assembles the per-invocation log. After each invocation we write a control line (prefixed with
``CONTROL_MARK``) into that same stream, so the executor knows where the invocation's output ends.

Runs under the function's own interpreter (any supported Python runtime, 3.8+), with ``-I -S``
so that nothing but the standard library, the deployment package, layers and the optional
runtime libraries (boto3, as on AWS) is importable. Standard library only, on purpose.
"""

from __future__ import annotations

import http.server
import importlib
import json
import logging
import os
import queue
import resource
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

# Keep in sync with output.CONTROL_MARK.
CONTROL_MARK = "\x1elocal-lambda\x1e"

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_INVOCATIONS: queue.Queue[dict[str, Any]] = queue.Queue()
_HANDLER_CACHE: dict[str, Callable[..., Any]] = {}
_current_request_id = ""
# Where LocalStack's callbacks go; given by the executor under a private name, removed before the handler loads.
_RUNTIME_ENDPOINT = ""


class InitError(Exception):
    """Failure to load the handler, reported the way the AWS Python runtime reports it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


class LambdaContext:
    """The ``context`` argument, with the attributes of the AWS Python runtime's context."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name!r}, aws_request_id={self.aws_request_id!r})"


def _control(message: str) -> None:
    """Write a control line into the output stream, ordered after everything printed before."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, (CONTROL_MARK + message + "\n").encode("utf-8"))


def _post(path: str, body: bytes) -> None:
    url = _RUNTIME_ENDPOINT + path
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(request, timeout=30) as response:
            response.read()
    except OSError as exc:  # LocalStack gone or endpoint unregistered: nothing left to report to
        _control(f"diag cannot POST {path}: {exc}")


def _load_handler() -> Callable[..., Any]:
    if "handler" in _HANDLER_CACHE:
        return _HANDLER_CACHE["handler"]
    spec = os.environ.get("_HANDLER", "")
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from None
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        raise InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    except Exception as exc:
        raise InitError(type(exc).__name__, str(exc)) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    _HANDLER_CACHE["handler"] = handler
    return handler


def _user_frames(exc: BaseException | None) -> traceback.StackSummary:
    """The traceback without this runtime's and importlib's frames, as AWS reports it."""
    if exc is None:
        return traceback.StackSummary()
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename != __file__
        and not frame.filename.startswith("<frozen importlib")
        and frame.filename != importlib.__file__
    ]
    return traceback.StackSummary.from_list(frames)


def _error_payload(error_type: str, message: str, exc: BaseException | None, request_id: str) -> bytes:
    payload = {"errorMessage": message, "errorType": error_type}
    # AWS's python3.8 runtime sends no requestId with an uncaught exception; its later runtimes do.
    if sys.version_info >= (3, 9):  # noqa: UP036  this file runs on the function's Python, 3.8 included
        payload["requestId"] = request_id
    payload["stackTrace"] = _user_frames(exc).format()
    return json.dumps(payload).encode("utf-8")


def _print_error(error_type: str, message: str, exc: BaseException | None) -> None:
    text = f"[ERROR] {error_type}: {message}\n"
    if exc is not None:
        text += "Traceback (most recent call last):\n"
        text += "".join(_user_frames(exc).format())
        text += "".join(traceback.format_exception_only(type(exc), exc))
    sys.stderr.write(text)


def _peak_rss_mb() -> int:
    # VmHWM, not getrusage(): ru_maxrss survives exec and would count LocalStack's own memory,
    # as we were forked from it.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _invoke(invocation: dict[str, Any]) -> None:
    global _current_request_id
    request_id = str(invocation.get("invoke-id", ""))
    started = time.monotonic()
    timeout = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT") or 3)
    context = LambdaContext(request_id, str(invocation.get("invoked-function-arn", "")), time.time() + timeout)
    _current_request_id = request_id
    os.environ["_X_AMZN_TRACE_ID"] = str(invocation.get("trace-id") or "")

    outcome: tuple[str, bytes]
    try:
        handler = _load_handler()
        raw = invocation.get("payload") or "{}"
        event = json.loads(raw) if isinstance(raw, str) else raw
        result = handler(event, context)
        try:
            outcome = ("response", json.dumps(result).encode("utf-8"))
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            _print_error("Runtime.MarshalError", message, None)
            outcome = ("error", _error_payload("Runtime.MarshalError", message, None, request_id))
    except InitError as exc:
        _print_error(exc.error_type, exc.message, exc.__cause__)
        # As AWS's runtime: an init failure belongs to no request, so its payload names none.
        outcome = ("error", _error_payload(exc.error_type, exc.message, exc.__cause__, ""))
    except Exception as exc:
        _print_error(type(exc).__name__, str(exc), exc)
        outcome = (
            "error",
            _error_payload(type(exc).__name__, str(exc), exc, request_id),
        )
    # Anything else (SystemExit, os._exit, signals) ends the process; the executor reports
    # Runtime.ExitError then, like AWS.
    duration_ms = (time.monotonic() - started) * 1000
    max_rss_mb = _peak_rss_mb()
    _current_request_id = ""
    _control(f"end {request_id} {duration_ms:.3f} {max_rss_mb}")
    kind, body = outcome
    _post(f"/invocations/{request_id}/{kind}", body)


class _InvokeHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/invoke":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            invocation = json.loads(body)
        except ValueError:
            self.send_error(400)
            return
        # Answer at once; the handler runs on the main thread (signal handlers only work there).
        _INVOCATIONS.put(invocation)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # our stdout is the function's log; keep request lines out of it


def _watch_parent(parent_pid: int) -> None:
    # If LocalStack dies without stopping us we would be reparented: take our process group down.
    while True:
        time.sleep(1)
        if os.getppid() != parent_pid:
            os.killpg(os.getpgrp(), signal.SIGKILL)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_request_id
        return True


def _configure_logging() -> None:
    # The AWS runtime pre-installs a root handler with this format; code relies on it
    # (e.g. logging.getLogger().setLevel(logging.INFO) then logger.info(...)).
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _setup_sys_path(task_root: str) -> None:
    extra: list[str] = [p for p in os.environ.pop("_LOCAL_LAMBDA_SYS_PATH", "").split(os.pathsep) if p]
    libs: list[str] = [p for p in os.environ.pop("_LOCAL_LAMBDA_RUNTIME_LIBS", "").split(os.pathsep) if p]
    # Same precedence as AWS: function code, then layers, then the interpreter's stdlib, then
    # the runtime's own libraries (boto3); nothing from the host's or LocalStack's site-packages.
    sys.path[:0] = [task_root, *extra]
    sys.path.extend(libs)


def main() -> None:
    global _RUNTIME_ENDPOINT
    listen_fd = int(os.environ.pop("_LOCAL_LAMBDA_LISTEN_FD"))
    parent_pid = int(os.environ.pop("_LOCAL_LAMBDA_PARENT_PID"))
    _RUNTIME_ENDPOINT = os.environ.pop("_LOCAL_LAMBDA_RUNTIME_ENDPOINT")
    runtime_id = os.environ.pop("_LOCAL_LAMBDA_RUNTIME_ID")
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    _setup_sys_path(task_root)
    _configure_logging()

    server = http.server.HTTPServer(("127.0.0.1", 0), _InvokeHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=listen_fd)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # Init phase: import the handler module now, as AWS does. A failure is reported on every
    # invocation (and the import retried), not as a failed environment.
    try:
        _load_handler()
    except InitError as exc:
        _print_error(exc.error_type, exc.message, exc.__cause__)
    _post(f"/status/{runtime_id}/ready", b"")

    while True:
        _invoke(_INVOCATIONS.get())


if __name__ == "__main__":
    main()
