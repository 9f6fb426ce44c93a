"""The generator against the collector under `chalice local` and the suite's real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from generator.__main__ import DEFAULT_FILE
from pipeline.config import Config
from stack import kafka
from tests.conftest import REPO, whole_topic
from tests.stacks import Stack

pytestmark = pytest.mark.slow


def generator(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "generator", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def summary(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 130), err
    return json.loads(out.strip().splitlines()[-1])


def keys_in(settings: Config, topic: str, wanted: set[str]) -> list[str]:
    records = whole_topic(settings.kafka.bootstrap_servers, topic)
    return [r.key.decode() for r in records if r.key and r.key.decode() in wanted]


def test_a_stopped_replay_resumes_and_sends_every_line_once(
    chalice_local_url: str, config: Config, tmp_path: Path
) -> None:
    lines = DEFAULT_FILE.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    state = tmp_path / "replay.state"
    args = ["--url", chalice_local_url, "--state-file", str(state), "--batch-size", "100", "--rate", "1000"]

    first = generator(*args)
    deadline = time.monotonic() + 60
    while not state.exists() and time.monotonic() < deadline:  # a first batch was acknowledged
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # mid-file: the batch in flight is finished and recorded
    stopped = summary(first)
    assert first.returncode == 130 and 0 < stopped["sent"] < len(lines)
    assert json.loads(state.read_text())["lines_sent"] == stopped["sent"]

    rest = summary(generator(*args))
    assert stopped["sent"] + rest["sent"] == len(lines)
    assert stopped["accepted"] + rest["accepted"] + stopped["rejected"] + rest["rejected"] == len(lines)

    # Every line reached Kafka exactly once: valid ones in the raw topic, the rest in the invalid topic.
    landed = keys_in(config, config.kafka.raw_topic, set(ids))
    landed += keys_in(config, config.kafka.invalid_topic, set(ids))
    assert sorted(landed) == sorted(ids)

    again = summary(generator(*args))  # all sent already: nothing is sent twice
    assert again["sent"] == 0


def test_retries_until_kafka_takes_the_batch(chalice_local_url: str, config: Config, suite_stack: Stack) -> None:
    with suite_stack.held("kafka"):
        kafka.stop(config)
        restart = threading.Timer(4, kafka.start, args=(config,))
        restart.start()
        try:
            result = summary(generator("--url", chalice_local_url, "--synthetic", "300", "--seed", "51"))
        finally:
            restart.join()
    assert result["retried"] >= 1  # the collector said 503 while the broker was down
    assert result["sent"] == 300 and result["accepted"] == 300


def test_synthetic_traffic_is_reproducible_and_its_invalid_share_is_kept(
    chalice_local_url: str, config: Config, tmp_path: Path
) -> None:
    def write(path: Path, seed: int) -> list[dict]:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "generator",
                "--synthetic",
                "400",
                "--seed",
                str(seed),
                "--invalid-share",
                "0.2",
                "--start",
                "2026-11-01T09:00:00Z",
                "--output",
                str(path),
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        return [json.loads(line) for line in path.read_text().splitlines()]

    first, second, other = write(tmp_path / "a", 61), write(tmp_path / "b", 61), write(tmp_path / "c", 62)
    assert first == second and first != other

    result = summary(
        generator("--url", chalice_local_url, str(tmp_path / "a"), "--state-file", str(tmp_path / "state"))
    )
    assert result["sent"] == 400 and 40 < result["rejected"] < 120
    invalid = keys_in(config, config.kafka.invalid_topic, {e["id"] for e in first})
    assert len(invalid) == result["rejected"]


def test_the_shipped_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "generator",
            "--synthetic",
            "3000",
            "--seed",
            "42",
            "--invalid-share",
            "0.03",
            "--start",
            "2026-11-01T09:00:00Z",
            "--output",
            str(tmp_path / "events.json"),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "events.json").read_text() == DEFAULT_FILE.read_text()
