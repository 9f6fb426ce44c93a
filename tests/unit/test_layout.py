"""README's layout table matches the tree: every top-level entry of the repository has a row, every row names
something that exists, and the tests row names every suite folder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def layout_rows() -> dict[str, str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first, _, rest = line[2:].partition(" | ")
            for name in re.findall(r"`([^`]+)`", first):
                rows[name.rstrip("/")] = rest
    return rows


def tracked_top_level() -> set[str]:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    # Dotfiles that only configure git stay out of the table.
    return {path.split("/")[0] for path in files} - {".gitignore"}


def test_every_top_level_entry_has_a_row_and_every_row_exists() -> None:
    rows = layout_rows()
    assert sorted(tracked_top_level() - set(rows)) == []
    assert sorted(name for name in rows if not (REPO / name).exists()) == []


def test_the_tests_row_names_every_suite_folder() -> None:
    suites = {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    named = set(re.findall(r"`([a-z0-9_]+)/`", layout_rows()["tests"]))
    assert sorted(suites - named) == []
