"""Where the stack keeps things: downloads in a cache outside git, state and logs in a runtime folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import REPO, Config, load
from pipeline.deployment import runtime_dir


def cache_dir(config: Config | None = None) -> Path:
    """Downloads (jars, virtualenvs) shared by every checkout: CLICKSTREAM_HOME (~/.cache/clickstream)."""
    return Path((config or load()).stack.home)


__all__ = ["REPO", "cache_dir", "runtime_dir"]
