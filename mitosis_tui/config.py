"""The client's settings: the ``[client]`` section, ``MITO_*`` variables and global flags."""

from __future__ import annotations

from typing import Annotated

import msgspec

from mitosis_sdk.config import DURATION, Option


class ClientSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    coordinator: Annotated[
        str | None, Option("coordinator URL (default: the last one used, else 127.0.0.1:5000)")
    ] = None
    user: Annotated[str | None, Option("user name (default: the last one logged in)")] = None
    password: Annotated[str | None, Option("password, to log in when no cached token works")] = None
    timeout: Annotated[float, Option("network timeout per request", DURATION)] = 30.0
