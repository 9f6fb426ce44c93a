"""The local-process Lambda executor against a real LocalStack: results, logs, env, isolation,
timeouts, crashes, concurrency and process cleanup."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stack import localstack
from tests.localstack.lambda_support import (
    build_zip,
    invoke,
    lambda_client,
    pid_alive,
    runtime_pids,
    wait_until,
)
from tests.stacks import SUITE_SETTINGS

# Real LocalStack processes: the project's marker for tests that need real services.
pytestmark = pytest.mark.slow


ECHO = """
import os

print("module loaded")

def handler(event, context):
    print("handling", event["n"])
    return {"n": event["n"], "pid": os.getpid(), "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis()}
"""


def test_invoke_returns_result_and_tail_logs(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-echo", {"app.py": ECHO}, Timeout=10)
    client = lambda_client()

    first = invoke(client, name, {"n": 1})
    second = invoke(client, name, {"n": 2})

    assert first["error"] is None, first
    assert first["payload"]["n"] == 1
    assert 0 < first["payload"]["remaining_ms"] <= 10_000
    assert "handling 1" in first["log"]
    request_id = first["payload"]["request_id"]
    assert f"START RequestId: {request_id}" in first["log"]
    assert f"END RequestId: {request_id}" in first["log"]
    assert f"REPORT RequestId: {request_id}" in first["log"]
    assert "Init Duration" in first["log"]  # cold start
    # Warm: same process, only this invocation's output, no init.
    assert second["payload"]["pid"] == first["payload"]["pid"]
    assert "handling 2" in second["log"] and "handling 1" not in second["log"]
    assert "Init Duration" not in second["log"]


ENV_REPORT = """
import importlib.util, os, sys
import vendored_dep

def handler(event, context):
    return {
        "env": {k: os.environ.get(k) for k in
                ["FOO", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "_HANDLER", "AWS_ENDPOINT_URL",
                 "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_LAMBDA_RUNTIME_API", "LANG",
                 "LC_CTYPE", "TZ", "TMPDIR"]},
        "localstack_variables": sorted(k for k in os.environ if k.startswith("LOCALSTACK_")),
        "private_variables": sorted(k for k in os.environ if k.startswith("_LOCAL_LAMBDA")),
        "cwd": os.getcwd(),
        "sys_path_0": sys.path[0],
        "vendored": vendored_dep.VALUE,
        "localstack_importable": importlib.util.find_spec("localstack") is not None,
        "boto3_path": getattr(importlib.util.find_spec("boto3"), "origin", None),
    }
"""


def test_environment_and_import_isolation(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function(
        "lpe-env",
        {"app.py": ENV_REPORT, "vendored_dep/__init__.py": "VALUE = 'from the zip'\n"},
        Environment={"Variables": {"FOO": "bar"}},
        Timeout=7,
    )
    result = invoke(lambda_client(), name)

    assert result["error"] is None, result
    body = result["payload"]
    env = body["env"]
    assert env["FOO"] == "bar"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_ENDPOINT_URL"] == localstack_endpoint
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
    # As AWS's Python runtimes set them; LocalStack's internals and the host's TMPDIR stay out.
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"]), env
    assert (env["LANG"], env["LC_CTYPE"], env["TZ"]) == ("en_US.UTF-8", "C.UTF-8", ":UTC")
    assert env["TMPDIR"] is None
    assert body["localstack_variables"] == ["LOCALSTACK_HOSTNAME"]
    assert body["private_variables"] == []
    # The unpacked deployment package is the working directory and comes first on sys.path.
    assert body["cwd"] == env["LAMBDA_TASK_ROOT"] == body["sys_path_0"]
    assert body["vendored"] == "from the zip"
    # LocalStack's own packages must not leak into the function...
    assert body["localstack_importable"] is False
    # ...but boto3 is there, as in the AWS runtime (from the runtime libraries, not LocalStack).
    assert body["boto3_path"] and "lambda-runtime-libs" in body["boto3_path"]


SLOW = """
import os, subprocess, time

def handler(event, context):
    if event.get("sleep"):
        child = subprocess.Popen(["sleep", "300"])
        print(f"pid {os.getpid()} child {child.pid}", flush=True)
        time.sleep(event["sleep"])
    return os.getpid()
"""


def test_timeout_kills_process_tree_and_next_invoke_recovers(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-timeout", {"app.py": SLOW}, Timeout=2)
    client = lambda_client()

    started = time.monotonic()
    result = invoke(client, name, {"sleep": 10})
    elapsed = time.monotonic() - started

    assert result["error"] == "Unhandled", result
    assert "Task timed out after 2.00 seconds" in result["payload"]["errorMessage"]
    assert elapsed < 8, elapsed
    assert "Task timed out after 2.00 seconds" in result["log"]
    match = re.search(r"pid (\d+) child (\d+)", result["log"])
    assert match, result["log"]
    runtime_pid, child_pid = int(match[1]), int(match[2])
    assert wait_until(lambda: not pid_alive(runtime_pid) and not pid_alive(child_pid), 5)

    again = invoke(client, name, {})
    assert again["error"] is None, again
    assert again["payload"] != runtime_pid  # a fresh process


CRASHY = """
import os

def handler(event, context):
    if event.get("exit"):
        print("exiting now", flush=True)
        os._exit(1)
    raise ValueError("boom: " + event.get("what", ""))
"""


def test_exception_is_reported_as_unhandled_function_error(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-exception", {"app.py": CRASHY}, Timeout=5)

    result = invoke(lambda_client(), name, {"what": "bad input"})

    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] == "ValueError"
    assert result["payload"]["errorMessage"] == "boom: bad input"
    assert re.fullmatch(r"[0-9a-f-]{36}", result["payload"]["requestId"])  # the failed request's
    assert any("app.py" in frame for frame in result["payload"]["stackTrace"])
    assert "[ERROR] ValueError: boom: bad input" in result["log"]
    assert "Traceback" in result["log"]


def test_process_exit_is_a_function_error_not_a_hang(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-exit", {"app.py": CRASHY}, Timeout=30)
    client = lambda_client()

    started = time.monotonic()
    result = invoke(client, name, {"exit": True})
    elapsed = time.monotonic() - started

    assert result["error"] == "Unhandled", result
    assert result["payload"]["errorType"] == "Runtime.ExitError"
    assert "exit status 1" in result["payload"]["errorMessage"]
    assert "exiting now" in result["log"]
    assert elapsed < 10, elapsed  # far below the function timeout: the crash was detected
    # The environment recovers with a fresh process.
    assert invoke(client, name, {"what": "x"})["payload"]["errorType"] == "ValueError"


def test_import_error_is_reported_per_invocation(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-import", {"app.py": "import not_packaged_module\n"}, Timeout=5)

    result = invoke(lambda_client(), name)

    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] == "Runtime.ImportModuleError"
    assert "not_packaged_module" in result["payload"]["errorMessage"]
    assert result["payload"]["requestId"] == ""  # AWS: an init error belongs to no request


WRAPPED = """
import os, sys

def handler(event, context):
    return {"wrapped_by": os.environ.get("WRAPPED_BY"), "argv0": sys.argv[0], "flags": sys.flags.dont_write_bytecode}
"""
# A wrapper as AWS documents them: it gets the runtime's command line, may change it, and must exec it.
WRAPPER = """#!/bin/sh
export WRAPPED_BY="$0"
runtime="$1"
shift
exec "$runtime" -B "$@"
"""


def test_exec_wrapper_starts_the_runtime_from_task_and_layer_paths(
    localstack_endpoint: str, make_function: Any
) -> None:
    client = lambda_client()
    layer = client.publish_layer_version(
        LayerName="lpe-wrapper-layer", Content={"ZipFile": build_zip({"bin/wrap.sh": WRAPPER})}
    )["LayerVersionArn"]
    in_task = make_function(
        "lpe-wrapper-task",
        {"app.py": WRAPPED, "wrap.sh": WRAPPER},
        Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrap.sh"}},
    )
    in_layer = make_function(
        "lpe-wrapper-layer",
        {"app.py": WRAPPED},
        Layers=[layer],
        Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bin/wrap.sh"}},
    )

    task_result, layer_result = invoke(client, in_task), invoke(client, in_layer)

    assert task_result["error"] is None and layer_result["error"] is None, (task_result, layer_result)
    # The wrapper ran (its variable is set), from the function's code folder and from the layer...
    assert task_result["payload"]["wrapped_by"].endswith("/wrap.sh")
    assert layer_result["payload"]["wrapped_by"].endswith("/bin/wrap.sh")
    assert task_result["payload"]["wrapped_by"] != layer_result["payload"]["wrapped_by"]
    # ...and the option it added reached the interpreter it exec'd.
    assert task_result["payload"]["flags"] == layer_result["payload"]["flags"] == 1
    assert task_result["payload"]["argv0"].endswith("runtime.py")


BIG = """
def handler(event, context):
    return "x" * event["chars"]
"""


def test_a_response_over_the_limit_is_refused_in_aws_words_and_the_limit_follows_localstacks_variable(
    localstack_endpoint: str, make_function: Any
) -> None:
    """AWS's limit is 6 MB (6,291,556 bytes); the suite's LocalStack raises it with LocalStack's own variable, as a
    user may: a response past AWS's limit fits, one past the raised limit is refused with AWS's sentence."""
    limit = int(SUITE_SETTINGS["LAMBDA_LIMITS_MAX_FUNCTION_PAYLOAD_SIZE_BYTES"])
    assert limit > 6_291_556
    name = make_function("lpe-big", {"app.py": BIG}, MemorySize=512, Timeout=30)
    client = lambda_client()

    fits = invoke(client, name, {"chars": limit - 2})  # the limit exactly, JSON quotes included
    too_big = invoke(client, name, {"chars": limit - 1})

    assert fits["error"] is None and len(fits["payload"]) == limit - 2
    assert too_big["error"] == "Unhandled"
    assert too_big["payload"] == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size exceeded maximum allowed payload size ({limit} bytes).",
    }


RUNTIME_REPORT = """
import sys
import boto3, urllib3

def handler(event, context):
    return {"python": "%d.%d" % sys.version_info[:2], "boto3": boto3.__version__, "urllib3": urllib3.__version__}
"""


#: The boto3 each runtime gets (localstack/lambda-runtime-requirements.txt): python3.8 the last that supports it.
@pytest.mark.parametrize(
    ("lambda_runtime", "boto3_version", "urllib3_major"),
    [("python3.8", "1.37.38", "1"), ("python3.9", "1.42.34", "1"), ("python3.12", "1.42.34", "2")],
)
def test_each_runtime_runs_on_its_own_python_with_boto3(
    localstack_endpoint: str, make_function: Any, lambda_runtime: str, boto3_version: str, urllib3_major: str
) -> None:
    name = make_function(f"lpe-{lambda_runtime.replace('.', '')}", {"app.py": RUNTIME_REPORT}, runtime=lambda_runtime)

    result = invoke(lambda_client(), name)

    assert result["error"] is None, result
    assert result["payload"]["python"] == lambda_runtime.removeprefix("python")
    assert result["payload"]["boto3"] == boto3_version
    assert result["payload"]["urllib3"].split(".")[0] == urllib3_major


CALLS_LOCALSTACK = """
import os
import boto3

def handler(event, context):
    caller = boto3.client("sts").get_caller_identity()
    return {"account": caller["Account"], "boto3": boto3.__version__, "module": __name__}
"""


def test_a_python38_handler_in_a_submodule_imports_boto3_and_calls_localstack(
    localstack_endpoint: str, make_function: Any
) -> None:
    name = make_function(
        "lpe-py38-calls",
        {"service/__init__.py": "", "service/api.py": CALLS_LOCALSTACK},
        runtime="python3.8",
        handler="service.api.handler",
    )

    result = invoke(lambda_client(), name)

    assert result["error"] is None, result
    assert result["payload"] == {"account": "000000000000", "boto3": "1.37.38", "module": "service.api"}


def test_python38s_error_payload_has_no_request_id_as_on_aws(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-py38-exception", {"app.py": CRASHY}, Timeout=5, runtime="python3.8")

    result = invoke(lambda_client(), name, {"what": "bad input"})

    assert result["error"] == "Unhandled"
    assert set(result["payload"]) == {"errorMessage", "errorType", "stackTrace"}
    assert (result["payload"]["errorType"], result["payload"]["errorMessage"]) == ("ValueError", "boom: bad input")


SLEEP_ONE = """
import os, time

def handler(event, context):
    time.sleep(1)
    return os.getpid()
"""


def test_concurrent_invocations_run_in_separate_processes(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-concurrent", {"app.py": SLEEP_ONE}, Timeout=30)
    client = lambda_client()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: invoke(client, name), range(4)))

    assert all(r["error"] is None for r in results), results
    assert len({r["payload"] for r in results}) == 4
    assert len(runtime_pids(name)) >= 4


VERSIONED = "import os\n\ndef handler(event, context):\n    return [{version!r}, os.getpid()]\n"


def test_update_and_delete_stop_runtime_processes(localstack_endpoint: str, make_function: Any) -> None:
    name = make_function("lpe-lifecycle", {"app.py": VERSIONED.format(version="v1")})
    client = lambda_client()
    version, old_pid = invoke(client, name)["payload"]
    assert version == "v1" and pid_alive(old_pid)

    client.update_function_code(FunctionName=name, ZipFile=build_zip({"app.py": VERSIONED.format(version="v2")}))
    localstack.wait_for_function(client, name)
    assert wait_until(lambda: not pid_alive(old_pid), 10)
    assert invoke(client, name)["payload"][0] == "v2"
    assert runtime_pids(name)

    client.delete_function(FunctionName=name)
    assert wait_until(lambda: not runtime_pids(name), 10), runtime_pids(name)
