"""``@api_work``: ``@work(exclusive=True)`` for methods that call the coordinator.

Every coordinator call goes through :meth:`MitosisApp.call`, which shows a failure to the
user (notification, output panel, the login screen on 401) and raises :class:`Reported`.
This decorator ends such a worker quietly, and also one whose widget was removed while its
call was in flight (the user closed the screen, or quit): there is nothing left to show the
answer in. Any other exception is a bug and still surfaces.

Loads are exclusive (a newer load of the same thing makes an older one moot); actions and
transfers pass ``exclusive=False``, since a second drain or download must not cancel the
first half-way.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from textual import work
from textual.css.query import NoMatches
from textual.dom import DOMNode


class Reported(Exception):
    """A coordinator call failed and the user has been told."""


def api_work(
    group: str, *, exclusive: bool = True
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Any]]:
    """Run the method as a worker of ``group``; when ``exclusive`` a newer call cancels an
    older one."""

    def decorate(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def quietly(node: DOMNode, *args: Any, **kwargs: Any) -> Any:
            try:
                return await method(node, *args, **kwargs)
            except Reported:
                return None
            except NoMatches:
                # Textual flags every node of a subtree it is removing (as its signals do).
                if node.is_attached and not (node._pruning or node._closing):
                    raise
                return None

        return work(exclusive=exclusive, group=group)(quietly)

    return decorate
