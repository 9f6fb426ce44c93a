"""`make down` on the suite stack, the last of its tests: every service stops, LocalStack its Lambda processes
itself, and nothing of the stack is left running. (A test after it that needs the stack starts it again.)"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stack import localstack
from stack.process import free_port
from tests.localstack.lambda_support import create_function, invoke, lambda_client, runtime_pids
from tests.stacks import Stack, StackError

pytestmark = pytest.mark.slow

SLEEP_ONE = """
import os, time

def handler(event, context):
    time.sleep(1)
    return os.getpid()
"""


def test_make_down_stops_everything_and_localstack_its_lambda_processes(suite_stack: Stack) -> None:
    client = lambda_client()
    create_function(client, "lpe-shutdown", {"app.py": SLEEP_ONE}, Timeout=30)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda _: invoke(client, "lpe-shutdown"), range(2)))
    assert len(runtime_pids("lpe-shutdown")) == 2  # two warm environments when the stack goes down

    down = suite_stack.stop()

    assert "leftover" not in down.stdout, down.stdout  # LocalStack itself stopped its Lambda processes
    assert runtime_pids("lpe-shutdown") == [] and localstack.service().pid() is None
    assert list(suite_stack.runtime.glob("*.pid")) == []
    assert not any(suite_stack.alive().values())
    # Processes of the stack name its runtime folder; this process's own children (its in-process Spark's JVM)
    # inherited its settings, and are not the stack's.
    ours = _descendants(os.getpid())
    leftovers = [
        p for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) not in ours and _mentions(p, str(suite_stack.runtime))
    ]  # fmt: skip
    assert leftovers == [], [_command(p) for p in leftovers]


def test_one_nodes_runtime_refuses_to_be_started_as_a_cluster_and_says_how(suite_stack: Stack) -> None:
    """`CLUSTER=1 make up` over the runtime `make run` made with one node: refused before anything starts or stops
    (its topics would keep one replica while the stack claimed three)."""
    ports = [str(free_port()) for _ in range(9)]
    three = {
        "CLUSTER": "1",
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(f"127.0.0.1:{port}" for port in ports[:3]),
        "KAFKA_CONTROLLER_PORT": ",".join(ports[3:6]),
        "KAFKA_SASL_SSL_PORT": ",".join(ports[6:]),
    }
    before = suite_stack.alive()
    with pytest.raises(StackError, match=r"is 1 node; CLUSTER=1 wants 3, .*: `CLUSTER=0 make up`; or "):
        Stack(suite_stack.name, suite_stack.runtime, {**suite_stack.env, **three}).cli("up")
    assert suite_stack.alive() == before
    assert not list(suite_stack.runtime.glob("kafka-*/data"))


def _mentions(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes() or text.encode() in (proc / "environ").read_bytes()
    except OSError:
        return False


def _command(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "(gone)"


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else None
        except OSError:
            continue
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found
