"""`make run`'s path end to end, on a small volume, with a stack of its own: then `make down`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stack.lifecycle import fresh_stack_environment
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _read_back(env: dict[str, str]) -> dict[str, list[str]]:
    """Ids in the raw and invalid topics and in the two lake prefixes, read by a separate process."""
    script = """
import json
from chalicelib.settings import Settings
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read
from tests.conftest import read_topic
s = Settings.from_env()
keys = lambda topic: [r.key.decode() for r in read_topic(s.kafka_bootstrap_servers, topic, {}, 10**9, 5)]
ids = lambda prefix: read(prefix, columns=["id"]).column("id").to_pylist()
print(json.dumps({"raw": keys(s.raw_topic), "invalid": keys(s.invalid_topic),
                  "lake": ids(LAKE_PREFIX), "lake_invalid": ids(INVALID_PREFIX)}))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_make_run_lands_every_event_then_make_down_stops_everything(tmp_path: Path) -> None:
    env = fresh_stack_environment(tmp_path / "runtime")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "run", "--events", "300", "--invalid-share", "0.1"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "every accepted event is in the lake" in run.stdout

        found = _read_back(env)
        # A fresh stack: the topics hold exactly this run's events, the lake each accepted one once.
        assert len(found["raw"]) + len(found["invalid"]) == 300
        assert Counter(found["lake"]) == Counter(set(found["raw"])) == Counter(found["raw"])
        assert sorted(found["lake_invalid"]) == sorted(found["invalid"]) and found["invalid"]

        reports = list((tmp_path / "runtime" / "report").glob("*.html"))
        assert reports and "<svg" in reports[0].read_text()
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "stack", "down"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stderr
    assert list((tmp_path / "runtime").glob("*.pid")) == []
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, str(tmp_path))]
    assert leftovers == []


def _mentions(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes() or text.encode() in (proc / "environ").read_bytes()
    except OSError:
        return False
