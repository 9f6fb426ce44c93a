"""README's two commands exist in the Makefile, and CI runs README's test command."""

from __future__ import annotations

import re
import subprocess

from tests.versions import REPO


def test_readme_commands_are_make_targets_with_recipes() -> None:
    # `make -n` prints what a target would run: a target without a recipe prints "Nothing to be done".
    for target in ("run", "test", "down"):
        dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0 and "Nothing to be done" not in dry.stdout + dry.stderr, target
    assert "-m pytest" in subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True).stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^make test\b", readme, flags=re.M)
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), flags=re.M)
