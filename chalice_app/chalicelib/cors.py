"""CORS for a list of allowed origins.

Chalice's CORSConfig allows one origin; the shop runs from several (local server, S3 website), so the
routes answer preflights themselves and echo the request's origin when it is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFLIGHT_MAX_AGE_S = 600


def cors_headers(request_headers: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """Headers that let the requesting origin read the answer, or none if it is not `allowed` (origins, or "*")."""
    origin = request_headers.get("origin")
    if not origin or not ("*" in allowed or origin in allowed):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        # The tracker reads Retry-After to back off as the collector asks.
        "Access-Control-Expose-Headers": "X-Correlation-Id, Retry-After",
        "Vary": "Origin",
    }


def preflight_headers(request_headers: Mapping[str, str], allowed: tuple[str, ...], methods: str) -> dict[str, str]:
    headers = cors_headers(request_headers, allowed)
    if headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": "Content-Type",
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            }
        )
    return headers
