"""SPARK_HOME for every Spark JVM the stack starts: PySpark's own distribution (bin/, jars/, python/), linked into
the download cache once per PySpark version.

A path of the cache, not of the virtualenv: the same for every checkout, so the drivers' class-data archive
(class_archives.py), which names the jars it was made from, fits a clean clone's run too. The files are hard links
to the virtualenv's (a copy across file systems): no second 450 MB.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from stack.paths import cache_dir

#: What spark-submit, spark-class and the Python workers read of a Spark home.
PARTS = ("bin", "sbin", "jars", "python")


def spark_home() -> Path:
    import pyspark

    home = cache_dir() / f"spark-home-{pyspark.__version__}"
    if (home / ".complete").exists():
        return home
    source = Path(pyspark.__file__).resolve().parent
    staging = home.with_name(f"{home.name}.{os.getpid()}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    for part in PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, staging / part, copy_function=_linked, symlinks=True)
    (staging / ".complete").touch()
    try:
        staging.rename(home)
    except OSError:  # made meanwhile by another process: theirs is the same
        shutil.rmtree(staging, ignore_errors=True)
    return home


def _linked(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
