"""The runtime's process tree: found through /proc, signalled as a group and one by one, measured."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

LOG = logging.getLogger(__name__)


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
