"""Write keys: the public keys that may write, and the package_ids each may write, from SSM Parameter Store.

A key is a source's public token, like a tracker's project key (RudderStack's and Segment's write key, PostHog's
project token): not a secret, it names the source and lets it be revoked. The keys live in one SecureString
parameter (WRITE_KEYS_PARAMETER), JSON: {"keys": {"<key>": {"packages": ["acme.shop", ...], "events_per_s": 500}}}
("*" allows any package; events_per_s, optional, is the key's own rate limit). They are loaded once per cold start
and again after WRITE_KEYS_CACHE_S, so a revoked key stops working within that time. An unknown key reloads them
early, at most every MISS_RELOAD_S, so a key just created works within seconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config_sections import CollectorConfig

#: Where a request carries its key, in the order they are read: a header, HTTP Basic (the key as the user name,
#: as RudderStack and Segment take it), or a query parameter (navigator.sendBeacon cannot set headers).
KEY_HEADER = "x-write-key"
KEY_QUERY_PARAMETER = "key"
ANY_PACKAGE = "*"
#: An unknown key reloads the keys at most this often (a key just created works within this time).
MISS_RELOAD_S = 5.0


@dataclass(frozen=True)
class WriteKey:
    key: str
    packages: frozenset[str]
    #: The key's own rate limit in events/s (0: unlimited), or None for the collector's default.
    events_per_s: float | None = None

    def allows(self, package_id: Any) -> bool:
        return ANY_PACKAGE in self.packages or package_id in self.packages


class WriteKeysUnavailable(Exception):
    """The keys could not be loaded (the parameter is missing or unreadable, SSM does not answer)."""


def key_of(headers: Mapping[str, str], query: Mapping[str, str] | None) -> str | None:
    """The write key a request carries, or None."""
    header = headers.get(KEY_HEADER)
    if header and header.strip():
        return header.strip()
    authorization = headers.get("authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        if user:
            return user
    value = (query or {}).get(KEY_QUERY_PARAMETER)
    return value.strip() if value and value.strip() else None


def parse_keys(document: str) -> dict[str, WriteKey]:
    """The parameter's JSON as keys; raises ValueError on another shape."""
    parsed = json.loads(document)
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, dict):
        raise ValueError('write keys: expected {"keys": {"<key>": {"packages": [...]}}}')
    keys = {}
    for key, entry in entries.items():
        packages = entry.get("packages") if isinstance(entry, dict) else None
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise ValueError(f"write keys: {key!r} needs a list of packages")
        rate = entry.get("events_per_s")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0):
            raise ValueError(f"write keys: {key!r} has an events_per_s that is not a number >= 0")
        keys[key] = WriteKey(key, frozenset(packages), None if rate is None else float(rate))
    return keys


class WriteKeys:
    """The keys, from SSM (the client injected: boto3's on Lambda, LocalStack's locally), cached for `cache_s`."""

    def __init__(
        self,
        parameter: str,
        cache_s: float,
        ssm: Callable[[], Any],
        miss_reload_s: float = MISS_RELOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parameter, self.cache_s, self.miss_reload_s = parameter, cache_s, miss_reload_s
        self._ssm, self._clock = ssm, clock
        self._keys: dict[str, WriteKey] | None = None
        self._loaded_at = 0.0

    @classmethod
    def from_config(cls, collector: CollectorConfig, ssm: Callable[[], Any]) -> WriteKeys:
        """The keys of the configured parameter, cached as configured (WRITE_KEYS_PARAMETER, WRITE_KEYS_CACHE_S)."""
        return cls(collector.write_keys_parameter, collector.write_keys_cache_s, ssm)

    def lookup(self, key: str | None) -> WriteKey | None:
        """The key's entry, or None for a missing or unknown key. Raises WriteKeysUnavailable if the keys cannot
        be loaded and none were loaded before (else the last ones are used until SSM answers again)."""
        if key is None:
            return None
        found = self._current(self.cache_s).get(key)
        return found if found is not None else self._current(self.miss_reload_s).get(key)

    def _current(self, max_age_s: float) -> dict[str, WriteKey]:
        now = self._clock()
        if self._keys is None or now - self._loaded_at >= max_age_s:
            try:
                answer = self._ssm().get_parameter(Name=self.parameter, WithDecryption=True)
                self._keys = parse_keys(answer["Parameter"]["Value"])
            except Exception as exc:  # boto3's errors, a missing parameter, a malformed document
                if self._keys is None:
                    raise WriteKeysUnavailable(f"write keys from {self.parameter}: {exc}") from exc
            self._loaded_at = now
        return self._keys
