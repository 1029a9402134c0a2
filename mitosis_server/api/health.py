"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from litestar import Request, Response, get
from sqlalchemy import text

from mitosis_sdk.schemas import Health


@get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", summary="Readiness: the database answers")
async def ready(request: Request) -> Response[Health]:
    coordinator = request.app.state.coordinator
    try:
        async with coordinator.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return Response(Health(status="ok", checks={"database": "ok"}))
    except Exception as exc:  # any failure means "not ready", never a 500
        return Response(
            Health(status="unavailable", checks={"database": f"error: {type(exc).__name__}"}),
            status_code=503,
        )


ROUTES = [health, ready]
