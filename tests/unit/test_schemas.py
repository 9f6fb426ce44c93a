"""The three forms of the event schema: up to date with the source, and each accepted by its official tool."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import avro.io
import avro.schema
import jsonschema
from google.protobuf import json_format

from generator.synthetic import synthetic_events

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SOURCE = SCHEMAS / "acme.clickstream.raw.events.json"


def test_generated_forms_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(SCHEMAS / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_json_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads(SOURCE.read_text()))


def test_avro_schema_parses_and_accepts_events() -> None:
    schema = avro.schema.parse((SCHEMAS / "acme.clickstream.raw.events.avsc").read_text())
    assert schema.fullname == "acme.clickstream.ClickstreamEvent"
    nested = {"ip", "query", "product_id", "product_name", "price", "referrer"}
    for event in synthetic_events(50, seed=5):
        # Avro records carry every field; the JSON form leaves absent the optional ones.
        record = {**event, "event": {**dict.fromkeys(nested), **event["event"]}}
        assert avro.io.validate(schema, record), event


def test_proto_compiles_with_protoc_and_accepts_events(tmp_path: Path) -> None:
    from grpc_tools import protoc

    proto = "acme.clickstream.raw.events.proto"
    assert protoc.main(["protoc", f"-I{SCHEMAS}", f"--python_out={tmp_path}", proto]) == 0
    # protoc maps the dotted file name to packages: acme/clickstream/raw/events_pb2.py
    spec = importlib.util.spec_from_file_location("events_pb2", tmp_path / "acme/clickstream/raw/events_pb2.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for event in synthetic_events(50, seed=5):
        message = json_format.ParseDict(
            {**event, "type": f"EVENT_TYPE_{event['type'].upper()}"}, module.ClickstreamEvent()
        )
        assert message.id == event["id"]
        assert message.event.customer_id == event["event"]["customer_id"]
        assert message.event.HasField("price") == ("price" in event["event"])
