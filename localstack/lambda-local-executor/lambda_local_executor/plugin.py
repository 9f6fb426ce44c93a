"""Plugin registration; kept import-light because plux imports every plugin of the namespace."""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class LocalProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    # plux names the plugin after this attribute, not after the entry point key.
    name = "local-process"

    def load(self, *args: Any, **kwargs: Any) -> Any:
        from lambda_local_executor.executor import LocalProcessRuntimeExecutor

        return LocalProcessRuntimeExecutor
