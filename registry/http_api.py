"""Confluent Schema Registry's REST API over the registry's service, as its clients (confluent-kafka's
SchemaRegistryClient, python-schema-registry-client) call it. Every answer has Confluent's content type; every
refusal its error shape and a 4xx. A request the registry cannot serve for want of its log gets 50001, never a
success."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from registry.errors import NOT_FOUND, STORE_ERROR, RegistryError
from registry.schemas import AVRO, TYPES
from registry.service import SchemaRegistry, version_number
from registry.state import Version

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Bodies larger than this are refused (a schema is kilobytes).
MAX_BODY = 8 * 1024 * 1024

Handler = Callable[[SchemaRegistry, "Request"], Any]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def add(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}/?$"), handler))
        return handler

    return add


@dataclass(frozen=True)
class Request:
    """What a route's handler gets: the path's names (decoded), the query and the JSON body."""

    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() == "true"


def version_body(entry: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": entry.subject, "version": entry.version, "id": entry.id}
    body["schema"] = entry.schema.text
    if entry.schema.schema_type != AVRO:
        body["schemaType"] = entry.schema.schema_type
    return body


@route("GET", "")
def root(registry: SchemaRegistry, request: Request) -> Any:
    return {}


@route("GET", "/subjects")
def subjects(registry: SchemaRegistry, request: Request) -> Any:
    return registry.subjects(request.flag("deleted"))


@route("POST", "/subjects/(?P<subject>[^/]+)/versions")
def register(registry: SchemaRegistry, request: Request) -> Any:
    return {"id": registry.register(request.params["subject"], request.body)}


@route("GET", "/subjects/(?P<subject>[^/]+)/versions")
def versions(registry: SchemaRegistry, request: Request) -> Any:
    return registry.version_numbers(request.params["subject"], request.flag("deleted"))


@route("GET", "/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)")
def version(registry: SchemaRegistry, request: Request) -> Any:
    return version_body(registry.version(request.params["subject"], request.params["version"], request.flag("deleted")))


@route("GET", "/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)/schema")
def version_schema(registry: SchemaRegistry, request: Request) -> Any:
    return Raw(
        registry.version(request.params["subject"], request.params["version"], request.flag("deleted")).schema.text
    )


@route("POST", "/subjects/(?P<subject>[^/]+)")
def lookup(registry: SchemaRegistry, request: Request) -> Any:
    return version_body(registry.lookup(request.params["subject"], request.body, request.flag("deleted")))


@route("DELETE", "/subjects/(?P<subject>[^/]+)")
def delete_subject(registry: SchemaRegistry, request: Request) -> Any:
    return registry.delete_subject(request.params["subject"], request.flag("permanent"))


@route("DELETE", "/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)")
def delete_version(registry: SchemaRegistry, request: Request) -> Any:
    return registry.delete_version(request.params["subject"], request.params["version"], request.flag("permanent"))


def _id(request: Request) -> int:
    try:
        return int(request.params["id"])
    except ValueError:
        raise RegistryError.schema_not_found(f"Schema {request.params['id']} not found") from None


@route("GET", "/schemas")
def all_schemas(registry: SchemaRegistry, request: Request) -> Any:
    deleted = request.flag("deleted")
    return [version_body(v) for s in registry.subjects(deleted) for v in registry.state.listed(s, deleted)]


@route("GET", "/schemas/ids/(?P<id>[^/]+)")
def schema_by_id(registry: SchemaRegistry, request: Request) -> Any:
    schema = registry.schema(_id(request))
    return {"schema": schema.text} | ({} if schema.schema_type == AVRO else {"schemaType": schema.schema_type})


@route("GET", "/schemas/ids/(?P<id>[^/]+)/schema")
def raw_schema_by_id(registry: SchemaRegistry, request: Request) -> Any:
    return Raw(registry.schema(_id(request)).text)


@route("GET", "/schemas/ids/(?P<id>[^/]+)/subjects")
def subjects_of_id(registry: SchemaRegistry, request: Request) -> Any:
    return sorted({v.subject for v in registry.versions_of(_id(request), request.flag("deleted"))})


@route("GET", "/schemas/ids/(?P<id>[^/]+)/versions")
def versions_of_id(registry: SchemaRegistry, request: Request) -> Any:
    return [
        {"subject": v.subject, "version": v.version}
        for v in registry.versions_of(_id(request), request.flag("deleted"))
    ]


@route("GET", "/schemas/types")
def schema_types(registry: SchemaRegistry, request: Request) -> Any:
    return list(TYPES)


@route("GET", "/config")
def global_config(registry: SchemaRegistry, request: Request) -> Any:
    return {"compatibilityLevel": registry.level(None)}


@route("PUT", "/config")
def set_global(registry: SchemaRegistry, request: Request) -> Any:
    return {"compatibility": registry.set_level(None, request.body)}


@route("GET", "/config/(?P<subject>[^/]+)")
def subject_config(registry: SchemaRegistry, request: Request) -> Any:
    return {"compatibilityLevel": registry.subject_level(request.params["subject"], request.flag("defaultToGlobal"))}


@route("PUT", "/config/(?P<subject>[^/]+)")
def set_subject(registry: SchemaRegistry, request: Request) -> Any:
    return {"compatibility": registry.set_level(request.params["subject"], request.body)}


@route("DELETE", "/config/(?P<subject>[^/]+)")
def unset_subject(registry: SchemaRegistry, request: Request) -> Any:
    return {"compatibilityLevel": registry.unset_level(request.params["subject"])}


@route("POST", "/compatibility/subjects/(?P<subject>[^/]+)/versions/(?P<version>[^/]+)")
def compatible(registry: SchemaRegistry, request: Request) -> Any:
    if request.params["version"] not in ("latest", "-1"):
        version_number(request.params["version"])
    problems = registry.compatible(request.params["subject"], request.params["version"], request.body)
    return {"is_compatible": not problems} | ({"messages": problems} if request.flag("verbose") else {})


class Raw(str):
    """An answer that is the schema's own text, not a JSON document about it."""


class RegistryHandler(BaseHTTPRequestHandler):
    registry: SchemaRegistry  # set on the class the server makes
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would be most of the log

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            raw = self._read()  # first: on a kept-alive connection, the next request starts after it
            status, answer = 200, self._dispatch(method, url.path, parse_qs(url.query), raw)
        except RegistryError as refused:
            status, answer = refused.status, refused.body()
        except OSError as failed:  # the log (Kafka) did not take a write: nothing was stored
            status, answer = 500, {"error_code": STORE_ERROR, "message": f"Error while storing: {failed}"}
        text = answer if isinstance(answer, Raw) else json.dumps(answer)
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Any:
        matched = [(m, p.match(path), h) for m, p, h in ROUTES]
        allowed = [(m, found, h) for m, found, h in matched if found]
        if not allowed:
            raise RegistryError(404, NOT_FOUND, f"HTTP 404 Not Found: {path}")
        handler = next(((found, h) for m, found, h in allowed if m == method), None)
        if handler is None:
            raise RegistryError(405, 405, f"HTTP 405 Method Not Allowed: {method} {path}")
        found, call = handler
        params = {name: unquote(value) for name, value in found.groupdict().items()}
        request = Request(params, query, _json(raw))
        with self.registry.lock:
            return call(self.registry, request)

    def _read(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise RegistryError(400, 400, "the Content-Length header is not a number") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise RegistryError(413, 413, f"the request body is over {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RegistryError(400, 400, f"the request body is not JSON: {exc}") from None


def server(registry: SchemaRegistry, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server of the registry on host:port (serve_forever() to run it)."""
    handler = type("Handler", (RegistryHandler,), {"registry": registry})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd
