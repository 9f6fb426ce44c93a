"""Which Python runs a function: its runtime's interpreter (``python3.11``, PATH or pyenv), else the local one."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

LOG = logging.getLogger(__name__)

# Optional: force one interpreter for every Python runtime.
ENV_PYTHON_OVERRIDE = "LAMBDA_LOCAL_PYTHON"
# Optional: a folder of runtime-library sets, one per oldest Python served, appended to sys.path (boto3, as on AWS).
ENV_RUNTIME_LIBS = "LAMBDA_LOCAL_RUNTIME_LIBS"


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.11"


_interpreters: dict[str, Interpreter] = {}
_interpreters_lock = threading.Lock()


def _probe(candidate: str) -> Interpreter | None:
    """Run a candidate interpreter once: resolves shims (pyenv) to the real binary, checks it."""
    code = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"
    try:
        out = subprocess.run(
            [candidate, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            stdin=subprocess.DEVNULL,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 2:
        return None
    return Interpreter(path=out[0], version=out[1])


def _candidates(runtime: str) -> list[str]:
    """``python3.11`` on PATH, then pyenv's installed 3.11.x, newest first (its shims run only pyenv's global)."""
    found = [shutil.which(runtime, path=search_path()) or ""]
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    prefix = runtime[len("python") :] + "."
    if versions.is_dir():
        installed = [entry for entry in versions.iterdir() if entry.name.startswith(prefix)]
        installed.sort(key=lambda entry: [int(part) if part.isdigit() else -1 for part in entry.name.split(".")])
        found += [str(entry / "bin" / runtime) for entry in reversed(installed)]
    return [path for path in found if path and os.access(path, os.X_OK)]


def search_path() -> str:
    # Never pick an interpreter from LocalStack's own virtualenv via PATH.
    venv_bin = os.path.join(sys.prefix, "bin")
    entries = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(p for p in entries if p and os.path.abspath(p) != venv_bin)


def resolve_interpreter(runtime: str) -> Interpreter:
    """Interpreter for a Lambda runtime like ``python3.11``; cached per runtime."""
    if not runtime.startswith("python"):
        raise LambdaRuntimeException(
            f"Runtime '{runtime}' is not supported by the local-process Lambda executor (Python runtimes only)"
        )
    wanted = runtime[len("python") :]
    with _interpreters_lock:
        if runtime in _interpreters:
            return _interpreters[runtime]

        override = os.environ.get(ENV_PYTHON_OVERRIDE)
        if override:
            interpreter = _probe(override)
            if interpreter is None:
                raise LambdaRuntimeException(f"{ENV_PYTHON_OVERRIDE}={override} is not runnable")
            if interpreter.version != wanted:
                LOG.warning(
                    "Running %s functions with %s=%s (Python %s)",
                    runtime,
                    ENV_PYTHON_OVERRIDE,
                    interpreter.path,
                    interpreter.version,
                )
        else:
            interpreter = next(
                (found for found in map(_probe, _candidates(runtime)) if found and found.version == wanted), None
            )
            if interpreter is None:
                # The base interpreter of LocalStack's venv: with -I -S it brings no packages along.
                fallback = getattr(sys, "_base_executable", None) or sys.executable
                interpreter = _probe(fallback)
                if interpreter is None:
                    raise LambdaRuntimeException(f"No Python interpreter usable for {runtime}")
                LOG.warning(
                    "%s not found (PATH, pyenv); running %s functions with the local interpreter %s (Python %s)",
                    runtime,
                    runtime,
                    interpreter.path,
                    interpreter.version,
                )
        LOG.info("Lambda runtime %s -> %s", runtime, interpreter.path)
        _interpreters[runtime] = interpreter
        return interpreter


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


def runtime_libs(version: str) -> str:
    """The runtime libraries for a Python version: the newest set under ``$LAMBDA_LOCAL_RUNTIME_LIBS`` made for it.

    Each set is a folder named after the oldest Python it serves (``3.8``, ``3.9``, ``3.10``): botocore takes
    urllib3 < 1.27 below 3.10, and the last boto3 for 3.8 is older, so one set cannot serve every runtime. No set
    fits → none (the function packages its own boto3).
    """
    root = os.environ.get(ENV_RUNTIME_LIBS)
    if not root or not os.path.isdir(root):
        return ""
    wanted = _version_key(version)
    sets = [name for name in os.listdir(root) if name.replace(".", "").isdigit() and _version_key(name) <= wanted]
    return os.path.join(root, max(sets, key=_version_key)) if sets else ""
