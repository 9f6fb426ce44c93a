"""One invocation: its outcome, its output, the AWS-shaped log LocalStack shows for it, AWS's error answers."""

from __future__ import annotations

import datetime
import json
import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from localstack.services.lambda_.invocation.lambda_models import FunctionVersion

from localstack import config

from .processes import signal_name

# Output kept per invocation (Tail shows the last 4 KiB; CloudWatch Logs gets all of it).
MAX_INVOCATION_OUTPUT_CHARS = 1 << 20


@dataclass
class Invocation:
    request_id: str
    future: Future[tuple[bytes, bool]] = field(default_factory=Future)
    output: list[str] = field(default_factory=list)
    output_chars: int = 0
    end_seen: threading.Event = field(default_factory=threading.Event)
    outcome: str = "pending"  # pending | done | timeout | exited
    exit_code: int | None = None
    duration_ms: float | None = None
    max_memory_mb: int | None = None

    def capture(self, text: str) -> None:
        if self.output_chars < MAX_INVOCATION_OUTPUT_CHARS:
            self.output.append(text)
            self.output_chars += len(text)
            if self.output_chars >= MAX_INVOCATION_OUTPUT_CHARS:
                self.output.append("[local-process executor: output truncated]\n")


def compose_logs(
    invocation: Invocation, function_version: FunctionVersion, elapsed_ms: float, init_duration_ms: float | None
) -> str:
    """The AWS-shaped log of one invocation: START, the function's output, END, REPORT."""
    request_id = invocation.request_id
    output = "".join(invocation.output)
    if output and not output.endswith("\n"):
        output += "\n"
    duration = invocation.duration_ms if invocation.duration_ms is not None else elapsed_ms
    memory = function_version.config.memory_size
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration)} ms\tMemory Size: {memory} MB\t"
    )
    if invocation.max_memory_mb is not None:
        report += f"Max Memory Used: {invocation.max_memory_mb} MB\t"
    if init_duration_ms is not None:
        report += f"Init Duration: {init_duration_ms:.2f} ms\t"
    return (
        f"START RequestId: {request_id} Version: {function_version.id.qualifier}\n"
        f"{output}END RequestId: {request_id}\n{report}\n"
    )


def max_response_bytes() -> int:
    """The limit on a synchronous invocation's response, in bytes: AWS Lambda's 6 MB (6,291,556), or what LocalStack's
    LAMBDA_LIMITS_MAX_FUNCTION_PAYLOAD_SIZE_BYTES sets, as for LocalStack's own executors."""
    return int(config.LAMBDA_LIMITS_MAX_FUNCTION_PAYLOAD_SIZE_BYTES)


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def checked_response(body: bytes, is_error: bool) -> tuple[bytes, bool]:
    """The function's answer, or ``Function.ResponseSizeTooLarge`` (AWS's words) if it is over the limit."""
    limit = max_response_bytes()
    if len(body) <= limit:
        return body, is_error
    message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
    return error_body("Function.ResponseSizeTooLarge", message), True


def exit_error(invocation: Invocation, code: int) -> tuple[bytes, bool]:
    """What AWS answers when the runtime process dies during an invocation; logged in its output too."""
    status = f"signal: {signal_name(-code)}" if code < 0 else f"exit status {code}"
    message = f"RequestId: {invocation.request_id} Error: Runtime exited with error: {status}"
    invocation.output.append(f"{message}\nRuntime.ExitError\n")
    return error_body("Runtime.ExitError", message), True


def timeout_error(invocation: Invocation, timeout: float) -> tuple[bytes, bool]:
    now = datetime.datetime.now(datetime.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    invocation.output.append(f"{stamp} {invocation.request_id} Task timed out after {timeout:.2f} seconds\n")
    message = f"RequestId: {invocation.request_id} Error: Task timed out after {timeout:.2f} seconds"
    return error_body("Sandbox.Timedout", message), True
