"""POST /collect: a batch (or one) of events in, records in Kafka, counts and reasons out."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.collector import RequestInfo
from chalicelib.cors import cors_headers, preflight_headers
from chalicelib.dependencies import get_collector
from chalicelib.write_keys import key_of

bp = Blueprint(__name__)


# '*/*': the collector checks the content type itself, so a wrong one gets the same error shape as
# every other refusal instead of Chalice's generic one.
@bp.route("/collect", methods=["POST"], content_types=["*/*"])
def collect() -> Response:
    request = bp.current_request
    identity = (request.context or {}).get("identity") or {}
    collector = get_collector()
    outcome = collector.collect(
        request.raw_body or b"",
        RequestInfo(
            content_type=request.headers.get("content-type"),
            source_ip=identity.get("sourceIp"),
            user_agent=request.headers.get("user-agent") or identity.get("userAgent"),
            write_key=key_of(request.headers, request.query_params),
        ),
    )
    headers = {
        "Content-Type": "application/json",
        "X-Correlation-Id": outcome.body["correlation_id"],
        **cors_headers(request.headers, collector.limits.cors_allowed_origins),
    }
    if outcome.retry_after_s:
        headers["Retry-After"] = outcome.retry_after_s
    return Response(body=outcome.body, status_code=outcome.status_code, headers=headers)


@bp.route("/collect", methods=["OPTIONS"])
def collect_preflight() -> Response:
    request = bp.current_request
    allowed = get_collector().limits.cors_allowed_origins
    headers = preflight_headers(request.headers, allowed, "POST, OPTIONS")
    return Response(body="", status_code=204 if headers else 403, headers=headers)
