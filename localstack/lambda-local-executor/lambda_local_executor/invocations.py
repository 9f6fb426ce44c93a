"""One invocation: its outcome, the output it printed, and the AWS-shaped log LocalStack shows for it."""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from localstack.services.lambda_.invocation.lambda_models import FunctionVersion

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
