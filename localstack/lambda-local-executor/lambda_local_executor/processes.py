"""The runtime's process: spawned, read, watched; its tree found through /proc, signalled as a group and one by one."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Callable

from .output import RuntimeOutput

LOG = logging.getLogger(__name__)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def descendants(pid: int) -> list[int]:
    """All descendant pids of ``pid`` (Linux /proc), including ones that left the process group."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Format: "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    result: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            result.append(child)
            todo.append(child)
    return result


def signal_tree(pgid: int, pids: list[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_process_tree(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop the runtime, its process group and every descendant; reaps the runtime."""
    if proc.poll() is not None:
        return
    # Scan only while the runtime is alive: once reaped, its pid may belong to someone else.
    pids = descendants(proc.pid)
    if grace > 0:
        signal_tree(proc.pid, pids, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pids += descendants(proc.pid)
    # SIGKILL even if the runtime exited on SIGTERM: its children may still be alive.
    signal_tree(proc.pid, pids, signal.SIGKILL)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        LOG.warning("Lambda runtime process %s did not die after SIGKILL", proc.pid)


def peak_rss_mb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class RuntimeProcess:
    """One runtime process: spawned holding a listening socket, its output read and its exit reported on threads."""

    def __init__(
        self,
        command: list[str],
        cwd: str,
        env: dict[str, str],
        output: RuntimeOutput,
        on_exit: Callable[[RuntimeProcess, int], None],
        name: str,
    ) -> None:
        # Bind here and hand the listening socket over: no free-port race, and invocations sent
        # before the runtime's server loop runs simply wait in the backlog.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            self.port: int = sock.getsockname()[1]
            env = dict(env, _LOCAL_LAMBDA_LISTEN_FD=str(sock.fileno()), AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{self.port}")
            self._proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                start_new_session=True,  # own process group: killpg reaches its children
            )
        self.pid = self._proc.pid
        self._reader = threading.Thread(target=self._read, args=(output,), name=f"lambda-out-{name}", daemon=True)
        self._reader.start()
        threading.Thread(target=self._monitor, args=(on_exit,), name=f"lambda-mon-{name}", daemon=True).start()

    def deliver(self, invocation: bytes) -> None:
        """Hand one invocation to the runtime (it answers at once and reports the result to LocalStack)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/invoke", data=invocation, headers={"Content-Type": "application/json"}
        )
        with _OPENER.open(request, timeout=10) as response:
            response.read()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def kill(self, grace: float = 0) -> None:
        kill_process_tree(self._proc, grace)

    def peak_rss_mb(self) -> int | None:
        return peak_rss_mb(self.pid)

    def drain_output(self, timeout: float = 2) -> None:
        """Wait until everything the process wrote has been read (after it died)."""
        self._reader.join(timeout=timeout)

    def _read(self, output: RuntimeOutput) -> None:
        assert self._proc.stdout is not None
        output.read(self._proc.stdout.fileno())
        self._proc.stdout.close()

    def _monitor(self, on_exit: Callable[[RuntimeProcess, int], None]) -> None:
        code = self._proc.wait()
        self.drain_output()  # the last output belongs to the report
        on_exit(self, code)
