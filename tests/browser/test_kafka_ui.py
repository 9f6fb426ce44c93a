"""The Kafka UIs on the suite stack: kafka-viewer in Chromium (the pipeline's topics, and a latest record decoded from
Avro through the registry), and kaskade driven in tmux (the topics read off the screen)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, expect

from generator.synthetic import synthetic_events
from pipeline.config import Config
from stack import kafka_ui
from tests.browser.conftest import TIMEOUT_MS, save_screenshot
from tests.stacks import Stack

pytestmark = pytest.mark.slow


def tagged_events(chalice_local_url: str, tag: str) -> None:
    """Five events of one new customer, through the collector `make up` runs."""
    events = synthetic_events(5, seed=91)
    for event in events:
        event["id"] = f"{tag}-{event['id']}"
        event["event"]["customer_id"] = tag
    answer = requests.post(f"{chalice_local_url}/collect", data=json.dumps(events), timeout=30)
    assert answer.status_code == 200 and answer.json()["valid_count"] == 5, answer.text


def test_kafka_viewer_shows_the_topics_and_a_latest_record_decoded(
    browser: Browser, config: Config, suite_stack: Stack, chalice_local_url: str
) -> None:
    url = kafka_ui.url(config)
    status = suite_stack.cli("status").stdout
    assert "kafka-ui: running (pid " in status and f"on {url} (kafka-viewer): ok" in status
    tag = f"kafka-ui-{uuid.uuid4().hex[:8]}"
    tagged_events(chalice_local_url, tag)
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_text("Status: Connected")).to_be_visible(timeout=TIMEOUT_MS)
        page.locator("div[data-testid=stSelectbox]").first.click()
        expect(page.get_by_role("option").first).to_be_visible()
        topics = set(page.get_by_role("option").all_inner_texts())
        assert {config.kafka.raw_topic, config.kafka.invalid_topic, config.kafka.latest_topic} <= topics
        page.get_by_role("option", name=config.kafka.latest_topic).click()
        message_filter = page.get_by_role("textbox", name="Message Filter (optional)")
        message_filter.fill(tag)
        message_filter.press("Enter")
        # The latest topic has the events within a trigger or two of the lake writer: load until they show.
        deadline = time.monotonic() + 90
        found = page.get_by_text("partition=")
        while True:
            page.get_by_role("button", name="Load Messages").click()
            try:
                expect(found.first).to_be_visible(timeout=5000)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
        found.first.click()
        record = page.locator("div[data-testid=stCode]").first.inner_text()
        save_screenshot(page, "kafka-viewer")
    finally:
        page.close()
    decoded = json.loads(record)  # Avro through the registry, shown as JSON
    assert decoded["customer_id"] == tag and decoded["ua_browser_family"] and decoded["registry_schema_id"]


@pytest.fixture
def tmux_session() -> Iterator[str]:
    if not shutil.which("tmux"):
        pytest.fail("no tmux: run `make browser` (Debian's tmux)")
    name = f"kaskade-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def screen_once(session: str, wanted: set[str], timeout_s: float = 60) -> str:
    """The session's screen once it shows every text of `wanted` (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
        if all(text in screen for text in wanted) or time.monotonic() > deadline:
            return screen
        time.sleep(0.5)


def test_kaskade_shows_the_topics_in_a_terminal(config: Config, tmux_session: str) -> None:
    """`make kafka-tui`'s command in tmux: kaskade's admin screen lists the pipeline's topics."""
    kafka_ui.install()
    # The terminal's size is tmux's: a COLUMNS or LINES this process inherited would narrow kaskade's table.
    command = " ".join(["env", "-u", "COLUMNS", "-u", "LINES", *kafka_ui.terminal_command(config)])
    subprocess.run(["tmux", "new-session", "-d", "-s", tmux_session, "-x", "200", "-y", "50", command], check=True)
    topics = {config.kafka.raw_topic, config.kafka.invalid_topic, config.kafka.latest_topic}
    screen = screen_once(tmux_session, topics)
    assert topics <= {word for line in screen.splitlines() for word in line.split()}, screen
