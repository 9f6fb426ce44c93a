"""LocalStack's callback endpoint for one execution environment, routing what the runtime reports to its executor."""

from __future__ import annotations

from typing import Protocol

from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint
from werkzeug import Request


class ResultReceiver(Protocol):
    def complete(self, request_id: str, body: bytes, is_error: bool) -> None: ...


class RuntimeEndpoint(ExecutorEndpoint):
    """``/invocations/<id>/response|error`` and ``/status/<id>/ready``, as LocalStack's init calls them."""

    def __init__(self, executor_id: str, receiver: ResultReceiver) -> None:
        super().__init__(executor_id, container_address="127.0.0.1", container_port=None)
        self._receiver = receiver

    def invocation_response(self, request: Request, req_id: str) -> Response:
        self._receiver.complete(req_id, request.data, is_error=False)
        return Response(status=202)

    def invocation_error(self, request: Request, req_id: str) -> Response:
        self._receiver.complete(req_id, request.data, is_error=True)
        return Response(status=202)

    def status_ready(self, request: Request, executor_id: str) -> Response:
        future = self.startup_future
        if future is not None and not future.done():
            future.set_result(True)
        return Response(status=202)
