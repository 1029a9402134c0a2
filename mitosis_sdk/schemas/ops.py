"""Operational endpoints: health and readiness."""

from __future__ import annotations

from mitosis_sdk.schemas.common import Struct


class Health(Struct):
    status: str
    checks: dict[str, str] | None = None
