"""Write keys: where a request carries its key, the parameter's shape, the cache and revocation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chalicelib.write_keys import WriteKeys, WriteKeysUnavailable, key_of, parse_keys


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def test_the_key_comes_from_the_header_then_basic_auth_then_the_query() -> None:
    assert key_of({"x-write-key": " k1 "}, {"key": "k3"}) == "k1"
    assert key_of({"authorization": basic("k2")}, {"key": "k3"}) == "k2"
    assert key_of({}, {"key": "k3"}) == "k3"
    assert key_of({"authorization": "Basic !!!"}, None) is None
    assert key_of({"authorization": "Bearer k2"}, None) is None
    assert key_of({"x-write-key": "  "}, {"key": ""}) is None


def test_the_parameter_names_each_keys_packages() -> None:
    keys = parse_keys(json.dumps({"keys": {"shop": {"packages": ["acme.shop"]}, "admin": {"packages": ["*"]}}}))
    assert keys["shop"].allows("acme.shop") and not keys["shop"].allows("acme.other")
    assert keys["admin"].allows("anything")
    for bad in ("[]", '{"keys": []}', '{"keys": {"k": {"packages": "acme.shop"}}}'):
        with pytest.raises(ValueError):
            parse_keys(bad)


class Parameter:
    """SSM's get_parameter answer for one parameter whose value the test changes."""

    def __init__(self, keys: dict[str, list[str]]) -> None:
        self.set(keys)
        self.calls = 0
        self.failing = False

    def set(self, keys: dict[str, list[str]]) -> None:
        self.value = json.dumps({"keys": {k: {"packages": p} for k, p in keys.items()}})

    def get_parameter(self, Name: str, WithDecryption: bool) -> dict[str, Any]:
        self.calls += 1
        if self.failing:
            raise ConnectionError("SSM does not answer")
        return {"Parameter": {"Name": Name, "Value": self.value}}


def test_keys_are_cached_and_a_revoked_key_stops_within_the_cache_time() -> None:
    now = [0.0]
    parameter = Parameter({"shop": ["acme.shop"]})
    keys = WriteKeys("/acme/keys", 60, lambda: parameter, clock=lambda: now[0])
    assert keys.lookup("shop") is not None and keys.lookup("nope") is None and keys.lookup(None) is None
    parameter.set({})
    now[0] = 59
    assert keys.lookup("shop") is not None and parameter.calls == 1
    now[0] = 60
    assert keys.lookup("shop") is None and parameter.calls == 2
    # SSM failing later: the last keys stay in use; failing before any load: the keys are unavailable.
    parameter.failing, now[0] = True, 200
    assert keys.lookup("shop") is None
    with pytest.raises(WriteKeysUnavailable):
        WriteKeys("/acme/keys", 60, lambda: parameter).lookup("shop")
