"""The enrichment functions of spark/enrichment.py: user agents, IPs, referrers and campaigns.

The IP and URL parsers are tested on generated input too: whatever the text, they answer (None where it is not
an address or a URL) and never raise.

The batch's enrichment (computed once per distinct value, with Arrow) is held to the functions applied row by row.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlencode

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrichment import (
    AGENT_COLUMNS,
    CAMPAIGN_FIELDS,
    agent,
    anonymised_ip,
    campaign,
    country,
    enriched_arrays,
    referrer_medium,
    scrub_ips,
)

CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_LINUX, ("Chrome", "156", "Linux", None, "desktop", False)),
        (IPHONE, ("Mobile Safari", "18", "iOS", "18.1", "mobile", False)),
        (IPAD, ("Mobile Safari", "17", "iOS", "17.0", "tablet", False)),
        (ANDROID_TABLET, ("Chrome", "130", "Android", "14", "tablet", False)),
        (GOOGLEBOT, ("Googlebot", "2", None, None, "bot", True)),
        ("python-requests/2.32.0", ("Python Requests", "2", None, None, "bot", True)),
        ("\x00 not a browser ☃", (None, None, None, None, None, False)),
        ("", (None, None, None, None, None, None)),
    ],
)
def test_user_agents(user_agent: str, expected: tuple) -> None:
    assert tuple(agent(user_agent)) == expected


@given(st.text(max_size=300))
def test_any_user_agent_text_is_parsed_without_error(text: str) -> None:
    parsed = agent(text)
    assert parsed.device_class in (None, "desktop", "mobile", "tablet", "bot")


def test_addresses_are_truncated_dropped_or_kept() -> None:
    assert anonymised_ip("81.2.69.160") == "81.2.69.0"
    assert anonymised_ip("2001:4860:4860::8888") == "2001:4860:4860::"
    assert anonymised_ip("::ffff:81.2.69.160") == "81.2.69.0"  # an IPv4 client seen through an IPv6 socket
    assert anonymised_ip("81.2.69.160", "full") == "81.2.69.160"
    assert anonymised_ip("81.2.69.160", "drop") is None
    assert anonymised_ip("not an address") is None
    assert anonymised_ip("999.1.1.1") is None
    with pytest.raises(ValueError, match="IP_MODE"):
        anonymised_ip("81.2.69.160", "hash")


@given(st.ip_addresses(v=4))
def test_ipv4_keeps_its_slash_24_only(address: ipaddress.IPv4Address) -> None:
    kept = anonymised_ip(str(address))
    assert kept is not None and kept.endswith(".0")
    assert address in ipaddress.ip_network(f"{kept}/24")


@given(st.ip_addresses(v=6))
def test_ipv6_keeps_its_slash_48_only(address: ipaddress.IPv6Address) -> None:
    kept = anonymised_ip(str(address))
    assert kept is not None
    if address.ipv4_mapped is None:
        network = ipaddress.ip_network(f"{kept}/48")
        assert address in network and ipaddress.ip_address(kept) == network.network_address


@given(st.text(max_size=100))
def test_any_text_is_an_address_or_none(text: str) -> None:
    kept = anonymised_ip(text)
    assert kept is None or ipaddress.ip_address(kept)


@given(st.lists(st.ip_addresses(), max_size=5), st.text(alphabet=' ,:{}"abc', max_size=20))
def test_no_full_address_survives_scrubbing(addresses: list, filler: str) -> None:
    text = filler.join(f'"ip": "{address}"' for address in addresses)
    scrubbed = scrub_ips(text)
    for address in addresses:
        shown = str(address.ipv4_mapped or address) if address.version == 6 else str(address)
        if anonymised_ip(shown) != shown:
            assert f'"{address}"' not in scrubbed


def test_countries_come_from_the_full_address() -> None:
    assert country("8.8.8.8") == "US"
    assert country("81.2.69.160") == "GB"
    assert country("198.51.100.7") is None  # documentation range: allocated to no one
    assert country("10.1.2.3") is None
    assert country("nonsense") is None


@pytest.mark.parametrize(
    ("referrer", "page", "expected"),
    [
        (None, "https://shop.example/", (None, "direct")),
        ("", "/home", (None, "direct")),
        ("/products", "/product/101", (None, "internal")),
        ("https://shop.example/a", "https://shop.example/b", ("shop.example", "internal")),
        ("https://www.google.co.uk/search?q=x", "/home", ("www.google.co.uk", "search")),
        ("https://duckduckgo.com/", "/home", ("duckduckgo.com", "search")),
        ("https://mail.google.com/mail/u/0", "/home", ("mail.google.com", "email")),
        ("https://t.co/abc", "/home", ("t.co", "social")),
        ("https://m.facebook.com/", "/home", ("m.facebook.com", "social")),
        ("https://news.example/story", "/home", ("news.example", "other")),
        ("http://[::1", "/home", (None, "other")),
    ],
)
def test_referrer_media(referrer: str | None, page: str, expected: tuple) -> None:
    assert referrer_medium(referrer, page) == expected


campaign_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


origins = st.sampled_from(["https://shop.example", ""])


@given(st.dictionaries(st.sampled_from(CAMPAIGN_FIELDS), campaign_values), origins)
def test_campaign_parameters_round_trip(parameters: dict[str, str], origin: str) -> None:
    page = f"{origin}/product/101?{urlencode(parameters)}"
    found = campaign(page)
    assert found == {name: parameters.get(name) for name in CAMPAIGN_FIELDS}


@given(st.text(max_size=200))
def test_any_page_text_gives_a_campaign_or_nones(text: str) -> None:
    found = campaign(text)
    assert set(found) == set(CAMPAIGN_FIELDS)
    referrer_medium(text, text)


def _row_by_row(ua: str | None, fallback: str | None, ip: str | None, seen: str | None, page: str | None,
                referrer: str | None, ip_mode: str) -> dict:  # fmt: skip
    host, medium = referrer_medium(referrer, page)
    return {
        **dict(zip(AGENT_COLUMNS, agent(ua or fallback), strict=True)),
        "geo_country": country(ip) or country(seen),
        "referrer_host": host,
        "referrer_medium": medium,
        **campaign(page),
        "ip": anonymised_ip(ip, ip_mode),
        "source_ip": anonymised_ip(seen, ip_mode),
    }


agents = st.sampled_from([None, "", CHROME_LINUX, IPHONE, GOOGLEBOT, "\x00 junk"])
addresses = st.sampled_from([None, "", "8.8.8.8", "81.2.69.160", "10.1.2.3", "2001:db8::1", "::ffff:8.8.4.4", "x"])
pages = st.sampled_from(
    [None, "", "/home", "https://shop.example/p?utm_source=a&gclid=g", "https://www.google.com/", "http://[::1"]
)
referrers = st.sampled_from([None, "", " ", "/products", "https://shop.example/a", "https://www.google.com/", "x:"])
rows = st.tuples(agents, agents, addresses, addresses, pages, referrers)


@given(st.lists(rows, max_size=30), st.sampled_from(["truncate", "full", "drop"]))
def test_a_batch_is_enriched_as_each_of_its_rows(batch: list[tuple], ip_mode: str) -> None:
    columns = [pa.array([row[k] for row in batch], pa.string()) for k in range(6)]
    found = enriched_arrays(*columns, ip_mode=ip_mode).to_pylist()
    assert found == [_row_by_row(*row, ip_mode) for row in batch]
