"""docker-compose.yaml read as Compose reads it: services, their environment and command, `${VAR:-default}`
values filled from a given environment (empty by default: what a fresh `docker compose up` gets)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "docker-compose.yaml"
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: Any, environ: Mapping[str, str] | None = None) -> str:
    """`${X:-d}` is X if set and not empty, else d; `${X-d}` is X if set, else d; `${X}` and `$X` are X or empty."""
    environ = environ or {}

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        if match[3] is None:  # no default
            return environ.get(name, "")
        unset = not environ.get(name) if match[2] else name not in environ
        return match[3] if unset else environ[name]

    return _VARIABLE.sub(substitute, str(value))


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    return compose["services"][name]


def environment(svc: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: interpolate(value, environ) for key, value in env.items()}


def command(svc: dict[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    cmd = svc.get("command") or []
    return shlex.split(interpolate(cmd, environ)) if isinstance(cmd, str) else [interpolate(p, environ) for p in cmd]
