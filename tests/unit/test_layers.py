"""The house's floors: the ground floor (pipeline/) is standard library only, under every stage; the stages import the
ground floor and each other, stack/ imports the stages, and run/, bench/ and the tests everything; nothing imports a
floor above its own. Only the collector, its packaging, its tests and the bench import the Lambda's package, and no
other stage needs the Lambda's runtime packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import APP_DIR, REPO

#: Top-level modules by floor. The lake writer's job modules are top-level modules of spark/ (spark-submit runs them
#: as scripts), and the collector's app.py and chalicelib are the collector's.
FLOORS = {
    "pipeline": 1,
    "chalicelib": 2,
    "app": 2,
    "generator": 2,
    "lake": 2,
    "schemas": 2,
    "registry": 2,
    **{path.stem: 2 for path in (REPO / "spark").glob("*.py")},
    "stack": 3,
    "run": 4,
    "bench": 4,
    "tests": 4,
}
SOURCES = ["pipeline", "chalice_app", "generator", "lake", "schemas", "registry", "spark", "stack", "run", "bench"]
LAMBDA_RUNTIME_PACKAGES = ("orjson", "jsonschema_rs", "kafka", "crc32c", "chalice")


def floor_of(path: Path) -> int:
    relative = path.relative_to(REPO)
    top = relative.parts[0]
    if top == "chalice_app":
        return FLOORS["chalicelib"]
    if top == "spark":
        return FLOORS[path.stem]
    return FLOORS[top]


def imported(path: Path) -> set[str]:
    """The top-level modules a file imports (relative imports are its own package's)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def project_files() -> list[Path]:
    return [p for folder in SOURCES for p in (REPO / folder).rglob("*.py")]


def test_nothing_imports_a_floor_above_its_own() -> None:
    upward = []
    for path in project_files():
        for name in imported(path) & set(FLOORS):
            if FLOORS[name] > floor_of(path):
                upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert upward == []


def test_the_ground_floor_is_standard_library_only() -> None:
    foreign = []
    for path in (REPO / "pipeline").glob("*.py"):
        for name in imported(path) - {"pipeline", "__future__"}:
            if name not in sys.stdlib_module_names:
                foreign.append(f"{path.name} imports {name}")
    assert foreign == []


def test_only_the_collector_its_packaging_its_tests_and_the_bench_import_the_lambdas_package() -> None:
    allowed = ("chalice_app/", "bench/", "tests/")
    importers = [
        str(path.relative_to(REPO))
        for path in [*project_files(), *(REPO / "tests").rglob("*.py")]
        if {"chalicelib", "app"} & imported(path) and not str(path.relative_to(REPO)).startswith(allowed)
    ]
    assert importers == []


def test_the_lake_writer_imports_none_of_the_lambdas_runtime_packages() -> None:
    script = f"import sys, lake_writer; print(sorted(p for p in {LAMBDA_RUNTIME_PACKAGES!r} if p in sys.modules))"
    env_path = f"{REPO / 'spark'}:{REPO}"
    out = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    assert not (APP_DIR / "chalicelib" / "settings.py").exists()  # the collector's settings live on the ground floor


def test_the_ground_floor_and_the_lake_writer_run_on_the_compose_images_python() -> None:
    """Python 3.10 (apache/spark's image): no syntax or standard library of a later version."""
    for path in [*(REPO / "pipeline").glob("*.py"), *(REPO / "spark").glob("*.py")]:
        ast.parse(path.read_text(), feature_version=(3, 10))
        source = path.read_text()
        assert "from datetime import UTC" not in source and "typing import Self" not in source, path.name
