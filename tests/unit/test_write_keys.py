"""Write keys and rate limits: where a request carries its key, the parameter's shape, the cache and revocation, the
token bucket, and the collector's answers with them (an in-memory sink; the real path is tests/localstack)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.rate_limit import RateLimiter, retry_after
from chalicelib.sinks.memory import MemorySink
from chalicelib.write_keys import WriteKeys, WriteKeysUnavailable, key_of, parse_keys
from generator.synthetic import synthetic_events
from pipeline.config import Config


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


def test_an_unknown_key_reloads_the_keys_early_but_not_on_every_request() -> None:
    now = [0.0]
    parameter = Parameter({"shop": ["acme.shop"]})
    keys = WriteKeys("/acme/keys", 60, lambda: parameter, miss_reload_s=5, clock=lambda: now[0])
    assert keys.lookup("new") is None and parameter.calls == 1
    parameter.set({"shop": ["acme.shop"], "new": ["acme.new"]})
    now[0] = 3
    assert keys.lookup("new") is None and parameter.calls == 1  # a flood of unknown keys costs one read per 5 s
    now[0] = 5
    assert keys.lookup("new") is not None and parameter.calls == 2


def test_a_key_may_carry_its_own_rate() -> None:
    keys = parse_keys(json.dumps({"keys": {"a": {"packages": ["*"], "events_per_s": 5}, "b": {"packages": ["*"]}}}))
    assert (keys["a"].events_per_s, keys["b"].events_per_s) == (5.0, None)
    for bad in (-1, "5", True):
        with pytest.raises(ValueError):
            parse_keys(json.dumps({"keys": {"a": {"packages": ["*"], "events_per_s": bad}}}))


def test_the_token_bucket_allows_the_rate_and_its_burst_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(events_per_s=10, burst_s=2, clock=lambda: now[0])
    assert limiter.take("k", 20) == 0  # the burst: two seconds' worth
    assert limiter.take("k", 5) == pytest.approx(0.5)  # nothing left: five events need half a second
    assert limiter.take("other", 20) == 0  # per key
    now[0] = 0.5
    assert limiter.take("k", 5) == 0
    # Over a long run, what passes is the rate (plus the first burst), exactly: one process, one bucket.
    passed = 20 + 5
    for step in range(1, 1001):
        now[0] = 0.5 + step * 0.01
        passed += 1 if limiter.take("k", 1) == 0 else 0
    assert passed == 25 + 100
    assert limiter.take("k", 1, events_per_s=0) == 0  # a key's own 0: unlimited
    # A batch larger than the burst passes when the bucket is full, else it never could.
    big = RateLimiter(events_per_s=10, burst_s=2, clock=lambda: now[0])
    assert big.take("k", 100) == 0 and big.take("k", 1) > 0
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def keyed_collector(sink: MemorySink, rate: float = 1000) -> Collector:
    parameter = Parameter({"gen": ["acme.shop.generator"], "shop": ["acme.shop.web"]})
    write_keys = WriteKeys("/acme/keys", 60, lambda: parameter)
    return Collector(Config.defaults(), sink, write_keys, RateLimiter(rate, 1))


def test_the_collector_refuses_a_missing_or_unknown_key_with_401_and_keeps_the_refusal() -> None:
    sink = MemorySink()
    collector = keyed_collector(sink)
    body = json.dumps(synthetic_events(3, seed=1)).encode()
    for key in (None, "nope"):
        outcome = collector.collect(body, RequestInfo("application/json", write_key=key))
        assert (outcome.status_code, outcome.body["code"], outcome.body["valid_count"]) == (401, "auth.write_key", 0)
    kept = [json.loads(r.value) for r in sink.records]
    assert [(k["code"], k["status_code"]) for k in kept] == [("auth.write_key", 401)] * 2
    assert all(r.topic == Config.defaults().kafka.invalid_topic for r in sink.records)


def test_the_collector_refuses_events_of_packages_the_key_may_not_write() -> None:
    sink = MemorySink()
    events = synthetic_events(4, seed=2)
    events[1]["package_id"] = "acme.shop.web"
    outcome = keyed_collector(sink).collect(json.dumps(events).encode(), RequestInfo(write_key="gen"))
    assert (outcome.status_code, outcome.body["valid_count"], outcome.body["invalid_count"]) == (200, 3, 1)
    assert [(e["index"], e["code"], e["path"]) for e in outcome.body["errors"]] == [(1, "auth.package", "$.package_id")]


def test_the_collector_answers_429_with_retry_after_past_the_rate_and_keeps_nothing() -> None:
    sink = MemorySink()
    collector = keyed_collector(sink, rate=10)
    body = json.dumps(synthetic_events(8, seed=3)).encode()
    assert collector.collect(body, RequestInfo(write_key="gen")).status_code == 200
    stored = len(sink.records)
    throttled = collector.collect(body, RequestInfo(write_key="gen"))
    assert (throttled.status_code, throttled.body["code"], throttled.retry_after_s) == (429, "rate.limit", "1")
    assert len(sink.records) == stored  # the client resends it: not kept


def test_the_collector_answers_503_when_the_keys_cannot_be_read() -> None:
    parameter = Parameter({})
    parameter.failing = True
    collector = Collector(Config.defaults(), MemorySink(), WriteKeys("/k", 60, lambda: parameter))
    outcome = collector.collect(b"[]", RequestInfo(write_key="gen"))
    assert (outcome.status_code, outcome.body["status"], outcome.retry_after_s) == (503, "unavailable", "1")
