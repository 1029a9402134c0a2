"""``mitosis-server``: serve (the default), migrate, keygen, check.

Every option is a flag, a ``MITO_*`` variable and a ``[coordinator]`` key in the config file
(see ``mitosis_server.config``); bad values exit with status 2 and say which option.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mitosis_sdk.config import ConfigError, add_option_flags, flag_values, load_settings
from mitosis_server.config import CoordinatorSettings
from mitosis_server.logs import configure_logging

COMMANDS = ("serve", "migrate", "keygen", "check")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitosis-server",
        description="The Mitosis coordinator. With no --db, --redis or --s3-url it runs on the"
        " embedded default (SQLite, local objects, in-process events) under --data-dir.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=COMMANDS,
        help="serve (default): run the coordinator; migrate: apply database migrations;"
        " keygen: create the token signing keys; check: verify the database and storage",
    )
    parser.add_argument("--config", metavar="FILE", help="config file ([coordinator] section)")
    parser.add_argument(
        "--force", action="store_true", help="keygen: replace existing keys (ends all sessions)"
    )
    add_option_flags(parser, CoordinatorSettings, short={"bind": "-b"})
    return parser


def load(args: argparse.Namespace) -> CoordinatorSettings:
    settings = load_settings(
        CoordinatorSettings,
        "coordinator",
        config_file=args.config,
        flags=flag_values(args, CoordinatorSettings),
    )
    try:
        settings.validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return settings


KEEP_ALIVE_SECONDS = 75


def serve(settings: CoordinatorSettings) -> int:
    import uvicorn

    from mitosis_server.app import create_app
    from mitosis_server.serving import CoordinatorServer

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        # Idle keep-alive connections outlive the clients' own expiry (httpx drops theirs
        # after 5 s): with both at 5 s a client reused a connection in the instant the
        # coordinator closed it, and the request failed with a read error.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
    )
    print(f"mitosis-server: serving on http://{settings.bind}", file=sys.stderr, flush=True)
    server = CoordinatorServer(config)
    server.run()
    return 0 if server.started else 1


async def migrate(settings: CoordinatorSettings) -> int:
    from mitosis_server.db.engine import create_engine
    from mitosis_server.db.migrate import upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print("mitosis-server: the database schema is up to date", file=sys.stderr)
    return 0


def keygen(settings: CoordinatorSettings, force: bool) -> int:
    from mitosis_server.services.tokens import generate_key_pair

    if generate_key_pair(settings.private_key_path, settings.public_key_path, overwrite=force):
        print(f"mitosis-server: wrote {settings.private_key_path}", file=sys.stderr)
        return 0
    print(
        f"mitosis-server: {settings.private_key_path} exists; --force replaces it",
        file=sys.stderr,
    )
    return 1


async def check(settings: CoordinatorSettings) -> int:
    """Try each dependency and say what is missing; exit 1 if anything is."""
    from sqlalchemy import text

    from mitosis_server.db.engine import create_engine
    from mitosis_server.db.migrate import pending_revisions

    problems = 0

    def report(name: str, ok: bool, detail: str) -> None:
        nonlocal problems
        problems += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            pending = await pending_revisions(connection)
        report("database", True, engine.url.render_as_string(hide_password=True))
        report(
            "schema",
            not pending,
            "up to date" if not pending else f"{len(pending)} migration(s) to apply: run migrate",
        )
    except Exception as exc:
        report("database", False, f"{type(exc).__name__}: {exc}")
    finally:
        await engine.dispose()
    key = settings.private_key_path
    report("signing key", key.exists(), str(key) if key.exists() else f"{key} missing: keygen")
    await check_objects(settings, report)
    if settings.redis is not None:
        await check_redis(settings, report)
    return 1 if problems else 0


async def check_redis(settings: CoordinatorSettings, report) -> None:
    """Does the event bus's Redis answer?"""
    from mitosis_server.events import create_event_bus

    bus = create_event_bus(settings.redis, settings.redis_prefix)
    try:
        ok = await bus.ping()
    finally:
        await bus.close()
    where = settings.redis.split("@")[-1]  # never print a password
    report("redis", ok, where if ok else f"{where} unreachable")


async def check_objects(settings: CoordinatorSettings, report) -> None:
    """Can the object store be reached, and do its buckets exist (serve creates them)?"""
    from mitosis_server.storage.base import StorageError
    from mitosis_server.storage.factory import build_store

    where = settings.s3_url or str(settings.objects_dir)
    try:
        async with build_store(settings) as store:
            missing = await asyncio.wait_for(store.missing_buckets(), 60)
    except (StorageError, OSError, TimeoutError) as exc:
        report("object store", False, f"{where}: {type(exc).__name__}: {exc}")
        return
    report("object store", True, where)
    if missing:
        report("buckets", False, f"missing (serve creates them): {', '.join(missing)}")
    else:
        report("buckets", True, "present")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load(args)
    except ConfigError as exc:
        print(f"mitosis-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level, settings.log_file)
    if args.command == "serve":
        return serve(settings)
    if args.command == "migrate":
        return asyncio.run(migrate(settings))
    if args.command == "keygen":
        return keygen(settings, args.force)
    return asyncio.run(check(settings))


if __name__ == "__main__":
    sys.exit(main())
