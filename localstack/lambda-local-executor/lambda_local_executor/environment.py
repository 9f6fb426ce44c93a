"""What a function's runtime process is given: its environment and command line, as AWS Lambda sets them up.

Paths differ from AWS's sandbox (the code is in LocalStack's unpacked-code folder, not ``/var/task``), so the
environment names real host paths, and a wrapper script's ``/var/task`` or ``/opt`` path is mapped onto them.
"""

from __future__ import annotations

import os
from pathlib import Path

from localstack.services.lambda_.invocation.lambda_models import FunctionVersion
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

from .interpreters import Interpreter, runtime_libs, search_path

RUNTIME_SCRIPT = Path(__file__).with_name("runtime.py")
# Read by our runtime (renamed so that the function sees no LocalStack-internal variable), then removed.
PRIVATE_RENAMES = {
    "LOCALSTACK_RUNTIME_ENDPOINT": "_LOCAL_LAMBDA_RUNTIME_ENDPOINT",
    "LOCALSTACK_RUNTIME_ID": "_LOCAL_LAMBDA_RUNTIME_ID",
}
# LocalStack's public endpoint variables for function code; every other LOCALSTACK_* is its internal business.
PUBLIC_LOCALSTACK_VARIABLES = {"LOCALSTACK_HOSTNAME"}
# The unreserved variables AWS's Python runtimes set; the function's own variables may override them.
AWS_DEFAULTS = {"LANG": "en_US.UTF-8", "LC_CTYPE": "C.UTF-8", "TZ": ":UTC"}
WRAPPER_VARIABLE = "AWS_LAMBDA_EXEC_WRAPPER"


def code_dir(function_version: FunctionVersion) -> Path:
    return Path(function_version.config.code.get_unzipped_code_location())


def layer_dirs(function_version: FunctionVersion) -> list[Path]:
    return [Path(layer.code.get_unzipped_code_location()) for layer in function_version.config.layers]


def function_environment(
    function_version: FunctionVersion, env_vars: dict[str, str], interpreter: Interpreter
) -> dict[str, str]:
    """LocalStack's variables for the environment, host paths for the sandbox's, then the function's own."""
    cfg = function_version.config
    env = dict(AWS_DEFAULTS)
    for key, value in env_vars.items():
        if key in PRIVATE_RENAMES:
            env[PRIVATE_RENAMES[key]] = str(value)
        elif not key.startswith("LOCALSTACK_") or key in PUBLIC_LOCALSTACK_VARIABLES:
            env[key] = str(value)
    layer_paths: list[str] = []
    for layer_dir in layer_dirs(function_version):
        layer_paths += [
            str(layer_dir / "python"),
            str(layer_dir / "python" / "lib" / f"python{interpreter.version}" / "site-packages"),
        ]
    env.update(
        {
            # The process sees real host paths instead of the container's /var/task.
            "LAMBDA_TASK_ROOT": str(code_dir(function_version)),
            "LAMBDA_RUNTIME_DIR": str(RUNTIME_SCRIPT.parent),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{cfg.runtime}",
            "PATH": search_path(),
            "_LOCAL_LAMBDA_SYS_PATH": os.pathsep.join(layer_paths),
            "_LOCAL_LAMBDA_RUNTIME_LIBS": runtime_libs(interpreter.version),
            "_LOCAL_LAMBDA_PARENT_PID": str(os.getpid()),
        }
    )
    # A library path the interpreter may need; never the host's TMPDIR: on AWS, temporary files go to /tmp.
    if "LD_LIBRARY_PATH" in os.environ:
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    # The function's own variables win, as in LocalStack's environment handling.
    env.update({key: str(value) for key, value in (cfg.environment or {}).items()})
    return env


def runtime_command(function_version: FunctionVersion, interpreter: Interpreter, env: dict[str, str]) -> list[str]:
    """The runtime's command line, behind the function's ``AWS_LAMBDA_EXEC_WRAPPER`` if it names one."""
    command = [
        interpreter.path,
        "-I",  # isolated: no PYTHON* env, no user site, no script dir on sys.path
        "-S",  # no site-packages at all: only the deployment package is importable
        "-u",  # unbuffered, so output interleaves in order with our control lines
        "-X",
        "utf8",
        str(RUNTIME_SCRIPT),
        function_version.id.function_name,
        env.get("_LOCAL_LAMBDA_RUNTIME_ID", ""),
    ]
    wrapper = env.get(WRAPPER_VARIABLE)
    if not wrapper:
        return command
    # As AWS's bootstrap does: the wrapper gets the runtime's command line and must exec it.
    return [str(resolve_wrapper(function_version, wrapper)), *command]


def resolve_wrapper(function_version: FunctionVersion, wrapper: str) -> Path:
    """The host path of a wrapper script: ``/var/task/…`` is the code, ``/opt/…`` the layers (the last one wins)."""
    path = Path(wrapper)
    candidates = [path]
    if path.is_relative_to("/var/task"):
        candidates = [code_dir(function_version) / path.relative_to("/var/task")]
    elif path.is_relative_to("/opt"):
        candidates = [layer / path.relative_to("/opt") for layer in reversed(layer_dirs(function_version))]
    for candidate in candidates:
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                raise LambdaRuntimeException(
                    f"Runtime.InvalidEntrypoint: {WRAPPER_VARIABLE} {wrapper} is not executable"
                )
            return candidate
    raise LambdaRuntimeException(f"Runtime.InvalidEntrypoint: {WRAPPER_VARIABLE} {wrapper}: no such file")
