"""Background services as plain processes: started detached with a pidfile and a log, stopped by PID.

Each service runs in its own session (process group), so stopping it also stops whatever it spawned.
A pidfile is trusted only while /proc says the process still runs the command we started, so a
recycled PID is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service of the stack did not start (its message carries the last lines of its log)."""


@dataclass(frozen=True)
class Service:
    name: str
    runtime_dir: Path
    #: A string that the service's command line contains; guards against recycled PIDs.
    marker: str

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.runtime_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID of the running service, or None (a stale pidfile is removed)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        command = _cmdline(pid)
        # An empty command line is a zombie, or a process between two programs (spark-class's bash exec-ing java):
        # the second lasts an instant, so look again before calling the service gone.
        for _ in range(20):
            if command is not None or not _running(pid):
                break
            time.sleep(0.05)
            command = _cmdline(pid)
        if command is not None and self.marker in command:
            return pid
        self.pidfile.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start the service in the background unless it already runs; return its PID."""
        running = self.pid()
        if running is not None:
            return running
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        # Until exec completes, /proc shows our own command line; wait so pid() recognises the service.
        deadline = time.monotonic() + 10
        while proc.poll() is None and self.marker not in (_cmdline(proc.pid) or "") and time.monotonic() < deadline:
            time.sleep(0.01)
        self.pidfile.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the service; True if something was stopped.

        SIGTERM goes to the service's own process first, so it can shut down in order (Spark finishes its
        micro-batch, LocalStack stops its Lambda processes); once it has exited, or after `timeout_s`, what
        remains of its process group is killed.
        """
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _cmdline(pid) is not None:
            time.sleep(0.1)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGTERM)
            grace = time.monotonic() + 2
            while time.monotonic() < grace and _group_alive(pid):
                time.sleep(0.05)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # A zombie has an empty command line: it is dead for our purposes.
    return raw.replace(b"\0", b" ").decode(errors="replace") or None


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (its state in /proc/<pid>/stat, after the command's parentheses)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"], [])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process remains in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state is the 1st, pgrp the 3rd.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_for_port(host: str, port: int, timeout_s: float, alive: Callable[[], bool] | None = None) -> bool:
    """Wait until something accepts TCP connections on host:port; give up early if `alive()` turns False."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.2)
    return False


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_peak_rss_mb(pgid: int | None) -> int:
    """The sum of the peak resident memory (VmHWM) of the live processes of a process group, in MiB."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or pgid is None:
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        total_kb += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return total_kb // 1024
