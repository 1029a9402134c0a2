"""The Litestar application factory: wiring only, no business rules.

``create_app(settings)`` is used by ``mitosis-server serve`` and, unchanged, by the tests
(in-process through httpx's ASGI transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from sqlalchemy.exc import IntegrityError

from mitosis_sdk import __version__
from mitosis_sdk.errors import ErrorCode
from mitosis_server.api import (
    admin,
    artifacts,
    attachments,
    auth,
    events,
    groups,
    health,
    objects,
    tasks,
    worker_files,
    workers,
)
from mitosis_server.api.errors import EXCEPTION_HANDLERS
from mitosis_server.api.guards import (
    PUBLIC_PATHS,
    TokenAuthentication,
    provide_db,
    provide_objects,
    provide_principal,
)
from mitosis_server.config import CoordinatorSettings
from mitosis_server.db.engine import create_engine, session_factory
from mitosis_server.db.migrate import upgrade
from mitosis_server.errors import DomainError
from mitosis_server.events import EventFanout, create_event_bus
from mitosis_server.events.log_user import provision_log_user, without_credentials
from mitosis_server.jobs.files import FileSweeper
from mitosis_server.jobs.liveness import LivenessMonitor
from mitosis_server.services.auth import Authenticator
from mitosis_server.services.passwords import configure_hashing
from mitosis_server.services.ratelimit import FailureLimiter
from mitosis_server.services.stream_access import StreamAccess
from mitosis_server.services.tokens import TokenSigner, generate_key_pair
from mitosis_server.services.uploads import Objects
from mitosis_server.services.users import bootstrap_admin
from mitosis_server.state import Coordinator
from mitosis_server.storage.base import ObjectStore
from mitosis_server.storage.factory import build_store
from mitosis_server.storage.local import LocalStore

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
    created, weak = await _first_admin(sessions, settings)
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
    coordinator = Coordinator(
        settings=settings,
        engine=engine,
        sessions=sessions,
        authenticator=authenticator,
        default_admin_password=weak,
    )
    coordinator.liveness = LivenessMonitor(sessions, settings, coordinator.wakeups)
    return coordinator


@contextlib.asynccontextmanager
async def background_jobs(coordinator: Coordinator) -> AsyncIterator[None]:
    """Run the coordinator's loops (liveness monitor, file sweeper) for the app's lifetime."""
    stop = asyncio.Event()
    sweeper = FileSweeper(
        coordinator.sessions, Objects(coordinator.store, coordinator.settings.url_lifetime)
    )
    jobs = [
        asyncio.create_task(coordinator.liveness.run(stop), name="liveness"),
        asyncio.create_task(sweeper.run(stop), name="files"),
    ]
    coordinator.background.extend(jobs)
    try:
        yield
    finally:
        stop.set()
        _, pending = await asyncio.wait(jobs, timeout=10)
        for job in pending:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


AUTH_TOPIC = "auth.forget"
ALL_SESSIONS = "*"


@contextlib.asynccontextmanager
async def event_bus(coordinator: Coordinator) -> AsyncIterator[None]:
    """Start the event bus and hook wake-ups and token revocations to it (S4, A3)."""
    settings = coordinator.settings
    bus = create_event_bus(
        settings.redis,
        settings.redis_prefix,
        event_cap=settings.event_history,
        log_cap=settings.log_history,
    )
    await bus.start()
    coordinator.events = bus
    if settings.redis is not None and settings.redis_log_shipping:
        coordinator.log_shipping = await provision_log_user(
            settings.redis,
            settings.redis_prefix,
            settings.redis_worker_url or without_credentials(settings.redis),
            settings.log_history,
            bus.log_idle_ttl,
        )
    wakeups = coordinator.wakeups
    wakeups.attach(bus)
    authenticator = coordinator.authenticator

    access = coordinator.stream_access = StreamAccess(coordinator.sessions)

    def forgotten(message: str) -> None:
        authenticator.drop(None if message == ALL_SESSIONS else message)
        access.poke()

    def forget_elsewhere(session_id: str | None) -> None:
        access.poke()
        message = session_id or ALL_SESSIONS
        wakeups.spawn(bus.broadcast(AUTH_TOPIC, message, here=False), "auth-forget")

    stop_listening = bus.listen(AUTH_TOPIC, forgotten)
    authenticator.on_forget = forget_elsewhere
    fanout = coordinator.fanout = EventFanout(bus, events.sse_item, events.TOO_SLOW)
    await fanout.start()
    checks = asyncio.create_task(access.run(), name="stream-access")
    log.info("events.ready backend=%s", type(bus).__name__)
    try:
        yield
    finally:
        authenticator.on_forget = None
        stop_listening()
        checks.cancel()
        await fanout.close(events.SHUTTING_DOWN)
        await asyncio.gather(checks, return_exceptions=True)
        await wakeups.drain()
        await bus.close()


@contextlib.asynccontextmanager
async def object_store(coordinator: Coordinator, store: ObjectStore) -> AsyncIterator[None]:
    """Open the object store, creating missing buckets, for the app's lifetime."""
    async with store:
        await store.ensure_buckets()
        coordinator.store = store
        log.info("objects.ready store=%s", type(store).__name__)
        yield


async def _first_admin(sessions, settings: CoordinatorSettings) -> tuple[bool, bool]:
    """Create the first admin if there is none; (created, default password in use).

    Two coordinators starting at once on an empty database may both try: the loser sees
    the winner's name (a conflict) or hits the unique index, and finds the winner's admin
    on its second look.
    """
    for _ in range(2):
        try:
            async with sessions.begin() as db:
                return await bootstrap_admin(
                    db,
                    settings.admin_user,
                    settings.admin_password,
                    settings.default_group_quota,
                    settings.default_storage_quota,
                )
        except (IntegrityError, DomainError) as exc:
            if isinstance(exc, DomainError) and exc.code != ErrorCode.CONFLICT:
                raise
            log.info("admin.created_by_another_coordinator")
    raise RuntimeError(
        f"could not create or find the first admin {settings.admin_user!r}: is the name "
        "taken by a group?"
    )


def create_app(settings: CoordinatorSettings) -> Litestar:
    # Built here, opened in the lifespan: the local store's URL routes depend on it.
    store = build_store(settings)
    served = [objects.create_router(store)] if isinstance(store, LocalStore) else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        coordinator = await start_coordinator(settings)
        app.state.coordinator = coordinator
        log.info("coordinator.started database=%s", coordinator.engine.url.get_backend_name())
        try:
            async with (
                event_bus(coordinator),
                object_store(coordinator, store),
                background_jobs(coordinator),
            ):
                yield
        finally:
            await coordinator.engine.dispose()
            log.info("coordinator.stopped")

    return Litestar(
        route_handlers=[
            *health.ROUTES,
            *auth.ROUTES,
            *groups.ROUTES,
            *admin.ROUTES,
            *tasks.ROUTES,
            *workers.ROUTES,
            *attachments.ROUTES,
            *artifacts.ROUTES,
            *worker_files.ROUTES,
            *events.ROUTES,
            *served,
        ],
        lifespan=[lifespan],
        dependencies={
            "db": Provide(provide_db),
            "principal": Provide(provide_principal),
            "objects": Provide(provide_objects, sync_to_thread=False),
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
