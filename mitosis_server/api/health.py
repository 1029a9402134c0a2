"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from litestar import Request, Response, get
from sqlalchemy import text

from mitosis_sdk.schemas import Health


@get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", summary="Readiness: the database answers (an event bus outage only degrades)")
async def ready(request: Request) -> Response[Health]:
    coordinator = request.app.state.coordinator
    checks = {}
    bus = coordinator.events
    # Without Redis the coordinator still serves (polling backstops every wake-up): degraded.
    bus_ok = bus is None or await bus.ping()
    checks["events"] = "ok" if bus_ok else "degraded: unreachable"
    try:
        async with coordinator.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", never a 500
        checks["database"] = f"error: {type(exc).__name__}"
        return Response(Health(status="unavailable", checks=checks), status_code=503)
    checks["database"] = "ok"
    return Response(Health(status="ok" if bus_ok else "degraded", checks=checks))


ROUTES = [health, ready]
