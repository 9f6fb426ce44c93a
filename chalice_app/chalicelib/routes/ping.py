"""GET /ping: the collector is up, and whether Kafka is reachable."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.cors import cors_headers
from chalicelib.dependencies import get_collector
from chalicelib.validation import SCHEMA_ID

bp = Blueprint(__name__)


@bp.route("/ping", methods=["GET"])
def ping() -> Response:
    collector = get_collector()
    body = {
        "status": "OK",
        "kafka": {
            "bootstrap_servers": collector.config.kafka.bootstrap_servers,
            "reachable": collector.sink.reachable(),
        },
        "schema_id": SCHEMA_ID,
    }
    headers = cors_headers(bp.current_request.headers, collector.limits.cors_allowed_origins)
    return Response(body=body, status_code=200, headers=headers)
