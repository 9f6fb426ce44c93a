"""Enrichment of the lake's rows, applied by the lake writer before the lake and the latest topic.

- User agent: browser family and major version, OS family and version (ua-parser with its Rust accelerator),
  device class (desktop, mobile, tablet, bot) and `is_bot` (the crawler-user-agents list, or ua-parser's
  Spider device). Parsed once per distinct user agent (a cache per Python worker).
- IPs: the client's country from the full address (iptocc: the Regional Internet Registries' allocations, offline),
  then the address made privacy-safe: IPv4 with its last octet zeroed, IPv6 cut to its /48 (`IP_MODE=truncate`,
  the default), kept whole (`full`) or dropped (`drop`). The same for the event's `ip`, the collector's
  `source_ip`, and any address inside the invalid table's kept texts.
- Referrer: its host and medium: direct (none), internal (no host, or the page's host), search, social, email
  (REFERRER_MEDIA below) or other.
- Campaign: `utm_source`, `utm_medium`, `utm_campaign`, `utm_term`, `utm_content` and the click ids `gclid`,
  `fbclid`, `msclkid`, from the page URL's query.
A value that cannot be parsed (a user agent of garbage, a malformed URL, an invalid IP) gives nulls, never an error.
The functions are plain Python; `enriched` and `scrubbed` apply them to Spark rows through Arrow UDFs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.contract import AGENT_COLUMNS, CAMPAIGN_FIELDS, ENRICHED_COLUMNS, IP_MODES

#: A referrer's medium by its host: a host listed, a subdomain of one, or (for the names) any host with that
#: label before its public suffix (google.de, www.google.co.uk). Email is looked at first: mail.google.com is mail.
REFERRER_MEDIA: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "email",
        ("mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com", "mail.yahoo.com"),
        ("webmail", "mail"),
    ),
    (
        "search",
        ("search.brave.com", "search.yahoo.com"),
        ("google", "bing", "duckduckgo", "baidu", "yandex", "ecosia", "qwant", "startpage", "yahoo"),
    ),
    (
        "social",
        ("t.co", "x.com", "lnkd.in", "bsky.app", "threads.net", "mastodon.social"),
        ("facebook", "instagram", "twitter", "linkedin", "reddit", "pinterest", "youtube", "tiktok"),
    ),
)
MOBILE_OS = ("iOS", "Android", "Windows Phone", "KaiOS", "BlackBerry OS")
TABLET_DEVICES = re.compile(r"iPad|Tablet|Kindle|Nexus (7|9|10)|SM-T\d|Tab\b", re.IGNORECASE)


class Agent(NamedTuple):
    browser_family: str | None
    browser_major: str | None
    os_family: str | None
    os_version: str | None
    device_class: str | None
    is_bot: bool | None


@lru_cache(maxsize=1)
def _crawler_patterns() -> list[re.Pattern[str]]:
    import crawleruseragents

    patterns = [entry["pattern"] for entry in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    # Chunks of alternations: one regex of all ~700 patterns is slower to match than a few smaller ones.
    return [re.compile("|".join(patterns[i : i + 50])) for i in range(0, len(patterns), 50)]


@lru_cache(maxsize=65536)
def agent(user_agent: str | None) -> Agent:
    """What a user agent string says about the browser, OS and device."""
    if not user_agent:
        return Agent(None, None, None, None, None, None)
    import ua_parser

    parsed = ua_parser.parse(user_agent)
    browser, os, device = parsed.user_agent, parsed.os, parsed.device
    is_bot = (device is not None and device.family == "Spider") or any(
        p.search(user_agent) for p in _crawler_patterns()
    )
    os_version = ".".join(v for v in (os.major, os.minor) if v) if os is not None and os.major else None
    if is_bot:
        device_class = "bot"
    elif browser is None and os is None and device is None:
        device_class = None  # nothing in it is a known browser, system or device
    elif TABLET_DEVICES.search(user_agent) or (
        os is not None and os.family == "Android" and "Mobile" not in user_agent
    ):
        device_class = "tablet"
    elif "Mobi" in user_agent or (os is not None and os.family in MOBILE_OS):
        device_class = "mobile"
    else:
        device_class = "desktop"
    return Agent(
        browser.family if browser is not None else None,
        browser.major if browser is not None else None,
        os.family if os is not None else None,
        os_version,
        device_class,
        is_bot,
    )


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def anonymised_ip(text: str | None, mode: str = "truncate") -> str | None:
    """The address as the lake keeps it: /24 of IPv4, /48 of IPv6 (truncate), whole (full) or none (drop);
    none for text that is no address."""
    if mode not in IP_MODES:
        raise ValueError(f"IP_MODE must be one of {', '.join(IP_MODES)}, not {mode!r}")
    address = _address(text)
    if address is None or mode == "drop":
        return None
    if mode == "full":
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@lru_cache(maxsize=65536)
def country(text: str | None) -> str | None:
    """The ISO 3166-1 country the address's block is allocated to; none for private or unknown addresses."""
    address = _address(text)
    if address is None or not address.is_global:
        return None
    import iptocc

    return iptocc.country_code(str(address))


# An IPv4 address, or a run of hex digits and colons with at least two colons (a candidate IPv6 address,
# checked by ipaddress before it is replaced).
_IP_IN_TEXT = re.compile(r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])")


def scrub_ips(text: str | None, mode: str = "truncate") -> str | None:
    """`text` with every IP address in it made as the lake keeps addresses (for kept payloads and bodies)."""
    if not text or mode == "full":
        return text

    def replace(match: re.Match[str]) -> str:
        if _address(match.group(0)) is None:
            return match.group(0)
        return anonymised_ip(match.group(0), mode) or ""

    return _IP_IN_TEXT.sub(replace, text)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host or None


def referrer_medium(referrer: str | None, page: str | None) -> tuple[str | None, str]:
    """The referrer's host and medium."""
    if not referrer or not referrer.strip():
        return None, "direct"
    host = _host(referrer)
    if host is None:
        # A path (or something no URL parser understands): another page of the same site.
        return None, "internal" if referrer.strip().startswith("/") else "other"
    if host == _host(page):
        return host, "internal"
    labels = host.split(".")[:-1]  # without the top-level domain
    for medium, hosts, names in REFERRER_MEDIA:
        if any(host == h or host.endswith("." + h) for h in hosts) or any(label in names for label in labels):
            return host, medium
    return host, "other"


def campaign(page: str | None) -> dict[str, str | None]:
    """The page URL's campaign parameters (the first value of each), none where absent or unparseable."""
    found: dict[str, str | None] = dict.fromkeys(CAMPAIGN_FIELDS)
    if not page or "?" not in page:
        return found
    try:
        query = parse_qs(urlsplit(page.strip()).query, keep_blank_values=False)
    except ValueError:
        return found
    for name in CAMPAIGN_FIELDS:
        values = query.get(name)
        found[name] = values[0][:512] if values else None
    return found


# --- Spark ----------------------------------------------------------------------------------------------

#: What the UDF answers: the columns enrichment adds (in order: contract.ENRICHED_COLUMNS, Agent's fields first),
#: and ip and source_ip made safe (they replace the row's own, in place).
ENRICHED = T.StructType(
    [
        *[T.StructField(n, T.BooleanType() if n == "is_bot" else T.StringType()) for n in ENRICHED_COLUMNS],
        T.StructField("ip", T.StringType()),
        T.StructField("source_ip", T.StringType()),
    ]
)


def _by_distinct(
    values: pa.Array, compute: Callable[[Any], Sequence[Any]], types: Sequence[pa.DataType]
) -> list[pa.Array]:
    """What `compute` answers for each of `values` (an array per item of its answer), computed once per distinct
    value: a batch holds few distinct agents, addresses and pages, and Python per row was most of a batch's time."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    answers = [compute(value) for value in encoded.dictionary.to_pylist()]
    return [pa.array([a[k] for a in answers], kind).take(encoded.indices) for k, kind in enumerate(types)]


def enriched_arrays(
    user_agent: pa.Array, fallback_agent: pa.Array, ip: pa.Array, source_ip: pa.Array, page: pa.Array,
    referrer: pa.Array, ip_mode: str,
) -> pa.StructArray:  # fmt: skip
    """ENRICHED's columns of a batch's columns: the agent from `user_agent`, else (null or empty) the collector's;
    the country from `ip`, else from `source_ip`; the medium from the referrer and the page's host."""
    text = pa.string()
    own = pc.invert(pc.fill_null(pc.equal(user_agent, ""), True))
    agents = _by_distinct(pc.if_else(own, user_agent, fallback_agent), agent, [text] * 5 + [pa.bool_()])

    def address(value: str | None) -> tuple[str | None, str | None]:
        return country(value) or None, anonymised_ip(value, ip_mode)

    client_country, client_ip = _by_distinct(ip, address, [text, text])
    seen_country, seen_ip = _by_distinct(source_ip, address, [text, text])
    # The medium as if the page had no host, then "internal" where the referrer's host is the page's.
    host, medium = _by_distinct(referrer, lambda r: referrer_medium(r, None), [text, text])
    page_host, *campaigns = _by_distinct(
        page, lambda url: (_host(url), *campaign(url).values()), [text] * (1 + len(CAMPAIGN_FIELDS))
    )
    internal = pc.fill_null(pc.equal(host, page_host), False)
    columns = {
        **dict(zip(AGENT_COLUMNS, agents, strict=True)),
        "geo_country": pc.coalesce(client_country, seen_country),
        "referrer_host": host,
        "referrer_medium": pc.if_else(internal, "internal", medium),
        **dict(zip(CAMPAIGN_FIELDS, campaigns, strict=True)),
        "ip": client_ip,
        "source_ip": seen_ip,
    }
    return pa.StructArray.from_arrays([columns[f.name] for f in ENRICHED.fields], names=ENRICHED.fieldNames())


def enriched(rows: DataFrame, ip_mode: str) -> DataFrame:
    """The lake's event rows with the enrichment's columns (after `referrer`), ip and source_ip made safe."""
    anonymised_ip(None, ip_mode)  # an unknown mode fails here, at the plan, not in a batch

    def enrich(
        user_agent: pa.Array, fallback_agent: pa.Array, ip: pa.Array, source_ip: pa.Array, page: pa.Array,
        referrer: pa.Array,
    ) -> pa.Array:  # fmt: skip
        return enriched_arrays(user_agent, fallback_agent, ip, source_ip, page, referrer, ip_mode)

    value = F.arrow_udf(enrich, ENRICHED)(
        F.col("user_agent"), F.col("collector_user_agent"), F.col("ip"), F.col("source_ip"), F.col("page"),
        F.col("referrer"),
    ).alias("e")  # fmt: skip
    columns: list[Column | str] = []
    for name in rows.columns:
        columns.append(F.col(f"e.{name}").alias(name) if name in ("ip", "source_ip") else F.col(name))
        if name == "referrer":
            columns += [F.col(f"e.{added}").alias(added) for added in ENRICHED_COLUMNS]
    return rows.withColumn("e", value).select(*columns)


def scrubbed(rows: DataFrame, ip_mode: str, columns: tuple[str, ...]) -> DataFrame:
    """`rows` with every address in the given text columns made as the lake keeps addresses."""
    anonymised_ip(None, ip_mode)

    def scrub(texts: pa.Array) -> pa.Array:
        return pa.array([scrub_ips(text, ip_mode) for text in texts.to_pylist()], pa.string())

    udf = F.arrow_udf(scrub, T.StringType())
    return rows.select(*[udf(F.col(c)).alias(c) if c in columns else F.col(c) for c in rows.columns])
