"""``@api_work``: ``@work(exclusive=True)`` for methods that call the coordinator.

Every coordinator call goes through :meth:`MitosisApp.call`, which shows a failure to the
user (notification, output panel, the login screen on 401) and raises :class:`Reported`.
This decorator ends such a worker quietly; any other exception is a bug and still surfaces.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from textual import work


class Reported(Exception):
    """A coordinator call failed and the user has been told."""


def api_work(group: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]:
    """Run the method as an exclusive worker of ``group`` (a newer call cancels an older)."""

    def decorate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def quietly(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except Reported:
                return None

        return work(exclusive=True, group=group)(quietly)

    return decorate
