"""The Litestar application factory: wiring only, no business rules.

``create_app(settings)`` is used by ``mitosis-server serve`` and, unchanged, by the tests
(in-process through httpx's ASGI transport).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from mitosis_sdk import __version__
from mitosis_server.api import admin, auth, groups, health
from mitosis_server.api.errors import EXCEPTION_HANDLERS
from mitosis_server.api.guards import (
    PUBLIC_PATHS,
    TokenAuthentication,
    provide_db,
    provide_principal,
)
from mitosis_server.config import CoordinatorSettings
from mitosis_server.db.engine import create_engine, session_factory
from mitosis_server.db.migrate import upgrade
from mitosis_server.services.auth import Authenticator
from mitosis_server.services.passwords import configure_hashing
from mitosis_server.services.ratelimit import FailureLimiter
from mitosis_server.services.tokens import TokenSigner, generate_key_pair
from mitosis_server.services.users import bootstrap_admin
from mitosis_server.state import Coordinator

log = logging.getLogger(__name__)


async def start_coordinator(settings: CoordinatorSettings) -> Coordinator:
    """Connect, migrate, load (or create) the signing keys and the first admin."""
    configure_hashing(settings.password_hash_memory // 1024, settings.password_hash_rounds)
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    if generate_key_pair(settings.private_key_path, settings.public_key_path):
        log.info("keys.generated path=%s", settings.private_key_path)
    signer = TokenSigner.from_files(settings.private_key_path, settings.public_key_path)
    sessions = session_factory(engine)
    async with sessions.begin() as db:
        created, weak = await bootstrap_admin(
            db,
            settings.admin_user,
            settings.admin_password,
            settings.default_group_quota,
            settings.default_storage_quota,
        )
    if created:
        log.info("admin.created user=%s", settings.admin_user)
    if weak:
        log.warning(
            "SECURITY WARNING: admin %r still uses the default password; change it with "
            "`mitosis-tui --batch users change-password`",
            settings.admin_user,
        )
    authenticator = Authenticator(
        signer,
        settings.token_lifetime,
        FailureLimiter(settings.login_attempts, settings.login_window),
    )
    return Coordinator(
        settings=settings,
        engine=engine,
        sessions=sessions,
        authenticator=authenticator,
        default_admin_password=weak,
    )


def create_app(settings: CoordinatorSettings) -> Litestar:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        coordinator = await start_coordinator(settings)
        app.state.coordinator = coordinator
        log.info("coordinator.started database=%s", coordinator.engine.url.get_backend_name())
        try:
            yield
        finally:
            await coordinator.engine.dispose()
            log.info("coordinator.stopped")

    return Litestar(
        route_handlers=[*health.ROUTES, *auth.ROUTES, *groups.ROUTES, *admin.ROUTES],
        lifespan=[lifespan],
        dependencies={
            "db": Provide(provide_db),
            "principal": Provide(provide_principal),
        },
        middleware=[DefineMiddleware(TokenAuthentication, exclude=PUBLIC_PATHS)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body,
        openapi_config=OpenAPIConfig(
            title="Mitosis coordinator",
            version=__version__,
            path="/schema",
            description="Distributed task execution. Errors are {error, message, details?}.",
        ),
        debug=False,
        logging_config=None,
    )
