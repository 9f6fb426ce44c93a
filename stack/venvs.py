"""Virtualenvs of their own for the services whose pins clash with the project's (LocalStack, the Kafka UIs), in
the download cache, rebuilt when what they are built from changes."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack.paths import REPO, cache_dir

log = logging.getLogger(__name__)

UV = Path(sys.executable).parent / "uv"


@dataclass(frozen=True)
class Virtualenv:
    """A virtualenv under <cache>/venvs/<name>, made from `sources` (requirements files and whatever else its
    packages are built from)."""

    name: str
    sources: tuple[Path, ...]

    @property
    def path(self) -> Path:
        return cache_dir() / "venvs" / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def digest(self, extra: str = "") -> str:
        """Hash of the Python and every source: the venv is rebuilt when one of them changes."""
        digest = hashlib.sha256(f"{sys.version_info[:2]} {extra}".encode())
        for path in self.sources:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def pip(self, *args: str) -> None:
        """`pip ARGS` in this venv, by uv (beside this Python, as the project's venv has it)."""
        subprocess.run([str(UV), "pip", *args[:1], "--python", str(self.python), "-q", *args[1:]], check=True)

    def ensure(self, fill: Callable[[Virtualenv], None], extra: str = "", what: str = "") -> None:
        """Make the venv and `fill` it (then `pip check`), unless it was made from the same sources already."""
        stamp = self.path / ".clickstream-install-stamp"
        digest = self.digest(extra)
        if stamp.is_file() and stamp.read_text().strip() == digest and self.python.exists():
            return
        started = time.monotonic()
        stamp.unlink(missing_ok=True)
        broken = subprocess.run([str(self.python), "-c", "pass"], capture_output=True).returncode if (
            self.python.exists()
        ) else 1  # fmt: skip
        if broken:  # missing, or its base Python is gone
            shutil.rmtree(self.path, ignore_errors=True)
            log.info("%s: creating its virtualenv %s", self.name, self.path)
            subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(self.path)], check=True)
        log.info("%s: installing %s (once)", self.name, what or "its packages")
        fill(self)
        self.pip("check")
        stamp.write_text(digest + "\n")
        log.info("%s: installed in %.0fs", self.name, time.monotonic() - started)


def requirements(*files: Path) -> Callable[[Virtualenv], None]:
    """A fill that installs requirements files."""

    def fill(venv: Virtualenv) -> None:
        args: Sequence[str] = [arg for path in files for arg in ("-r", str(path))]
        venv.pip("install", *args)

    return fill
