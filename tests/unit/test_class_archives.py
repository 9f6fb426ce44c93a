"""The stack's class-data archives (stack/class_archives.py) on a real JVM: the first run records, the stack's stop
dumps and checks the archive, the next run maps it; a changed classpath makes another."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.class_archives import ClassArchive

WAITER = "public class Waiter { public static void main(String[] a) throws Exception { Thread.sleep(120_000); } }"


@pytest.fixture
def classpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A jar holding one class that waits, and a download cache of the test's own."""
    monkeypatch.setenv("CLICKSTREAM_HOME", str(tmp_path / "cache"))
    source = tmp_path / "src" / "Waiter.java"
    source.parent.mkdir()
    source.write_text(WAITER)
    subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(source)], check=True)
    jars = tmp_path / "jars"
    jars.mkdir()
    with zipfile.ZipFile(jars / "waiter.jar", "w") as jar:  # a jar: CDS archives no class of a folder
        jar.write(tmp_path / "classes" / "Waiter.class", "Waiter.class")
    yield jars


def started(archive: ClassArchive) -> subprocess.Popen[bytes]:
    argv = ["java", *archive.options(), "-cp", ":".join(archive.classpath), archive.main]
    return subprocess.Popen(argv, start_new_session=True)


def attachable(pid: int) -> bool:
    """Whether the JVM answers jcmd yet (a service the stack stops has long been running)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if subprocess.run(["jcmd", str(pid), "VM.uptime"], capture_output=True).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def mapped(pid: int, archive: Path) -> bool:
    """Whether the JVM has the archive mapped (it may still be starting)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if str(archive) in Path(f"/proc/{pid}/maps").read_text():
            return True
        time.sleep(0.1)
    return False


def stopped(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_a_recorded_jvm_leaves_an_archive_the_next_one_maps(classpath: Path) -> None:
    archive = ClassArchive("waiter", "Waiter", "java", (f"{classpath}/*",))
    assert "-XX:+RecordDynamicDumpInfo" in archive.options() and not archive.path.exists()
    first = started(archive)
    try:
        # The stack records before it stops a service, once its JVM has run.
        assert attachable(first.pid)
        assert archive.record(first.pid) is True
    finally:
        stopped(first)
    assert archive.path.exists() and f"-XX:SharedArchiveFile={archive.path}" in archive.options()
    second = started(archive)
    try:
        assert mapped(second.pid, archive.path)
        assert archive.record(second.pid) is False  # made once
    finally:
        stopped(second)
    # Another jar in the classpath: another archive, recorded afresh.
    (classpath / "other.jar").write_bytes((classpath / "waiter.jar").read_bytes())
    assert not archive.path.exists() and "-XX:+RecordDynamicDumpInfo" in archive.options()
