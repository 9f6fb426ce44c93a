"""Fixtures: a real LocalStack (host mode, local-process Lambda executor) started via localstack_ctl.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lambda_executor_support import LocalStack, create_function, start_localstack


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    instance = start_localstack(tmp_path_factory.mktemp("localstack-runtime"))
    yield instance
    instance.ctl("stop")


@pytest.fixture
def make_function(localstack: LocalStack) -> Iterator[Callable[..., str]]:
    """Create a python3.11 function from {path: source}; deleted after the test."""
    lambda_client = localstack.client("lambda")
    created: list[str] = []

    def make(name: str, files: dict[str, str], **extra: Any) -> str:
        create_function(lambda_client, name, files, **extra)
        created.append(name)
        return name

    yield make
    for name in created:
        try:
            lambda_client.delete_function(FunctionName=name)
        except lambda_client.exceptions.ResourceNotFoundException:
            pass
