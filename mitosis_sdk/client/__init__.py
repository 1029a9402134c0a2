"""The Mitosis HTTP client: :class:`AsyncClient`, and :class:`Client` for blocking code.

Each resource area is a small mixin module; ``AsyncClient`` is all of them together::

    async with AsyncClient("http://127.0.0.1:5000") as mito:
        await mito.login("alice", "secret")
        print(await mito.whoami())
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from mitosis_sdk.client.accounts import AccountsAPI
from mitosis_sdk.client.admin import AdminAPI
from mitosis_sdk.client.base import DEFAULT_URL, BaseClient
from mitosis_sdk.client.files import FilesAPI
from mitosis_sdk.client.groups import GroupsAPI
from mitosis_sdk.client.streams import StreamsAPI
from mitosis_sdk.client.tasks import TasksAPI
from mitosis_sdk.client.workers import WorkersAPI

__all__ = ["DEFAULT_URL", "AsyncClient", "BaseClient", "Client"]


# StreamsAPI first: its stream-driven wait_tasks replaces the polling one of TasksAPI.
class AsyncClient(StreamsAPI, AccountsAPI, GroupsAPI, AdminAPI, TasksAPI, WorkersAPI, FilesAPI):
    """Every coordinator API as typed async methods; errors raise ``mitosis_sdk.errors``."""


class Client:
    """Blocking twin of :class:`AsyncClient`: same methods, run on a private event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_make(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(attribute(*args, **kwargs))

        return blocking

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make(*args: Any, **kwargs: Any) -> AsyncClient:
    # httpx binds its connection pool to the loop it first runs on: build it on ours.
    return AsyncClient(*args, **kwargs)
