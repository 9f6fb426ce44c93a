"""Every setting the code reads from the environment is documented in README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from chalicelib.settings import DEFAULTS

REPO = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, str]:
    readme = (REPO / "README.md").read_text()
    return dict(re.findall(r"^\| `([A-Z_]+)` \| `?([^|`]*)`? \|", readme, flags=re.M))


def test_collector_defaults_are_documented_with_their_values() -> None:
    documented = _documented()
    for name, default in DEFAULTS.items():
        assert documented.get(name) == default, f"README documents {name} as {documented.get(name)!r}"


def test_every_environment_variable_read_by_the_stack_is_documented() -> None:
    read = set()
    sources = ["stack/*.py", "chalice_app/chalicelib/**/*.py", "spark/*.py", "lake/*.py", "localstack/*.py"]
    for path in [p for pattern in sources for p in REPO.glob(pattern)]:
        read |= set(re.findall(r'environ(?:\.get)?[\[(]"([A-Z_]+)"', path.read_text()))
    assert read, "no environment variables found: the pattern is stale"
    names = set(re.findall(r"^\| `([A-Z_]+)` \|", (REPO / "README.md").read_text(), flags=re.M))
    assert sorted(read - names) == []
