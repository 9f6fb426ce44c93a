"""Where the stack keeps things: downloads in a cache outside git, state and logs in a runtime folder."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.contract import runtime_dir

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Downloads (jars, virtualenvs) shared by every checkout: $CLICKSTREAM_HOME, default ~/.cache/clickstream."""
    return Path(os.environ.get("CLICKSTREAM_HOME") or Path.home() / ".cache" / "clickstream")


__all__ = ["REPO", "cache_dir", "runtime_dir"]
