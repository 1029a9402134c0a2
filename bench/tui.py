"""Tasks pane benchmark (issue 8): the real TUI, headless, on a group of 100,000 tasks.

A real ``mitosis-server`` (SQLite or PostgreSQL, with Redis so events can be injected), the
tasks written straight into its database (``bench.dispatch.add_finished_tasks``), and
``MitosisApp`` run headless in this process at 160x48, talking HTTP to it.

* open: from starting the app (cached token) to the first page of rows held for the screen;
* page down / up: from the key press (sent as a terminal driver sends it) to every visible
  row being held, over ``--pages`` presses each way, and End (a jump to the oldest page);
  plus what drawing the whole table once costs (the next frame's work);
* events: a second process appends ``--rate`` task events/s (for tasks on and near the
  screen) to the coordinator's Redis stream for twice ``--seconds``; for the first half this
  process presses Down every 50 ms: key-to-cursor latency, keys lost (none may be), and this
  process's CPU (the TUI's own; the injector runs elsewhere), against the same presses
  without events before, and the events alone after.

``python -m bench.tui [--tasks N] [--backend sqlite|postgres] [--quick]``; prints Markdown
rows for bench/REPORT.md. CPU is ``time.process_time`` of this process (the app, its HTTP
client and the pilot), so it includes Pilot's own bookkeeping: an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from textual import events

from bench.dispatch import add_finished_tasks
from bench.events import percentile
from bench.servers import coordinators, fresh_database
from mitosis_sdk.auth import CredentialCache
from mitosis_sdk.client import AsyncClient
from mitosis_sdk.schemas.events import Event, EventKind
from mitosis_server.events import create_event_bus
from mitosis_tui.app import MitosisApp

ADMIN = ("mitosis_admin", "mitosis_admin")
REDIS = "redis://127.0.0.1:6379/0"
SIZE = (160, 48)


def _visible_held(pane) -> bool:
    table = pane.table
    first = table.first_visible
    last = min((pane.window.total or 0) - 1, first + table.visible_rows - 1)
    return all(pane.window.row(i) is not None for i in range(first, last + 1))


async def _until(predicate, limit: float = 30.0) -> None:
    """Poll (0.5 ms) until ``predicate()``: the app's own tasks run meanwhile."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the pane never got there")
        await asyncio.sleep(0.0005)


def _key(app: MitosisApp, key: str) -> None:
    """A key press as a terminal driver delivers it (no test-harness waiting)."""
    app._driver.send_message(events.Key(key, None))


def render_cost(pane, repeats: int = 50) -> float:
    """Milliseconds to draw every line of the table once (what a full repaint costs)."""
    table = pane.table
    started = time.perf_counter()
    for _ in range(repeats):
        for y in range(table.size.height):
            table.render_line(y)
    return (time.perf_counter() - started) * 1000 / repeats


async def open_time(url: str, cache: CredentialCache) -> float:
    """Seconds from starting the app to the first page of rows held for the screen."""
    started = time.perf_counter()
    app = MitosisApp(url, ADMIN[0], cache=cache)
    async with app.run_test(size=SIZE):
        pane = app.main_screen.pane("tasks")
        await _until(lambda: pane.window.row(0) is not None and _visible_held(pane))
        return time.perf_counter() - started


async def paging(pilot, pane, presses: int) -> dict:
    """Key press → every visible row held, for PgDn, PgUp and End."""
    timings: dict[str, list[float]] = {"pagedown": [], "pageup": [], "end": []}
    table = pane.table
    for key, count in (("pagedown", presses), ("pageup", presses), ("end", 1)):
        for _ in range(count):
            top = table.first_visible
            before = time.perf_counter()
            _key(pilot.app, key)
            await _until(lambda t=top: table.first_visible != t and _visible_held(pane))
            timings[key].append((time.perf_counter() - before) * 1000)
            await pilot.pause()  # drawn before the next press
    return timings


def inject(prefix: str, rate: int, seconds: float, uuids: list[str]) -> None:
    """In another process: ``rate`` task.state events/s for ``uuids`` into Redis; prints
    ``ready`` once connected."""

    async def run() -> None:
        bus = create_event_bus(REDIS, prefix)
        await bus.start()
        print("ready", flush=True)
        states = ["running", "completed", "failed"]
        tick, sent = 0.05, 0
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < seconds:
            batch = [
                Event(
                    kind=EventKind.TASK_STATE,
                    groups=[ADMIN[0]],
                    object_id=uuids[(sent + i) % len(uuids)],
                    payload={"state": states[(sent + i) % 3], "attempt": 1},
                )
                for i in range(max(1, int(rate * tick)))
            ]
            await bus.publish(*batch)
            sent += len(batch)
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
        await bus.close()

    asyncio.run(run())


async def _press_downs(pilot, pane, seconds: float) -> tuple[list[float], int, int]:
    """Down every 50 ms: (key → cursor moved, in ms; keys pressed; rows moved). The move is
    noticed by a watcher, so measuring costs no polling CPU."""
    table = pane.table
    table.move_cursor(0)
    await pilot.pause()
    moved = asyncio.Event()
    pane.watch(table, "cursor_row", lambda _row: moved.set(), init=False)
    latencies, pressed = [], 0
    start_row = table.cursor_row
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        moved.clear()
        before = time.perf_counter()
        _key(pilot.app, "down")
        pressed += 1
        await asyncio.wait_for(moved.wait(), 10)
        latencies.append((time.perf_counter() - before) * 1000)
        await asyncio.sleep(max(0.0, 0.05 - (time.perf_counter() - before)))
    return latencies, pressed, table.cursor_row - start_row


async def under_events(pilot, pane, prefix: str, rate: int, seconds: float) -> dict:
    pane.table.move_cursor(0)
    await _until(lambda: pane.window.row(0) is not None and pane.window.row(150) is not None)
    rows = [pane.window.row(i) for i in range(min(pane.window.total, 200))]
    uuids = [str(row.uuid) for row in rows if row is not None]  # on and near the screen
    cpu0, wall0 = time.process_time(), time.monotonic()
    idle = await _press_downs(pilot, pane, seconds)
    idle_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    received0 = pilot.app.live.count
    code = "import sys; from bench.tui import inject; a = sys.argv; inject(a[1], int(a[2]), "
    code += "float(a[3]), a[4:])"
    injector = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        prefix,
        str(rate),
        str(2 * seconds),
        *uuids,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert (await asyncio.wait_for(injector.stdout.readline(), 30)).strip() == b"ready"
    cpu0, wall0 = time.process_time(), time.monotonic()
    busy = await _press_downs(pilot, pane, seconds)
    busy_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds * 0.9)  # events only, no keys
    events_cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    await asyncio.wait_for(injector.wait(), 30)
    await asyncio.sleep(2)
    return {
        "idle": idle,
        "busy": busy,
        "idle_cpu": idle_cpu,
        "busy_cpu": busy_cpu,
        "events_cpu": events_cpu,
        "received": pilot.app.live.count - received0,
    }


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.1f} / p95 {percentile(values, 95):.1f} ms"


async def run(args) -> int:
    prefix = f"mito-bench-tui-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="mito-bench-tui-") as tmp:
        workdir = Path(tmp)
        async with (
            fresh_database(args.backend, workdir) as db,
            coordinators(
                db,
                workdir,
                1,
                "--redis",
                REDIS,
                "--redis-prefix",
                prefix,
                "--password-hash-memory",
                "1MiB",
            ) as (url,),
        ):
            fill = await add_finished_tasks(db, args.tasks)
            print(f"[tui] {args.tasks:,} tasks written in {fill:.1f} s", file=sys.stderr)
            cache = CredentialCache(workdir / "credentials.json")
            async with AsyncClient(url) as admin:
                reply = await admin.login(*ADMIN)
            cache.put(url, reply.username, reply.token, reply.expires_at)
            opens = [await open_time(url, cache) for _ in range(args.opens)]
            app = MitosisApp(url, ADMIN[0], cache=cache)
            async with app.run_test(size=SIZE) as pilot:
                pane = app.main_screen.pane("tasks")
                await _until(lambda: pane.window.row(0) is not None)
                await _until(lambda: app.stream_state == "live")
                await pilot.pause()
                pages = await paging(pilot, pane, args.pages)
                paint = render_cost(pane)
                flood = await under_events(pilot, pane, prefix, args.rate, args.seconds)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", file=sys.stderr)
    busy_lat, pressed, moved = flood["busy"]
    idle_lat = flood["idle"][0]
    print(f"| figure ({args.backend}, {args.tasks:,} tasks, 160x48) | measured | target |")
    print("|---|---|---|")
    print(f"| open → first page drawn | median {statistics.median(opens) * 1000:.0f} ms | ≤ 1 s |")
    print(f"| PgDn → visible rows held | {_ms(pages['pagedown'])} | ≤ 50 ms |")
    print(f"| PgUp → visible rows held | {_ms(pages['pageup'])} | ≤ 50 ms |")
    print(f"| End (the oldest page, read from that end) → rows held | {pages['end'][0]:.0f} ms | |")
    print(f"| drawing the whole table once (a repaint) | {paint:.1f} ms | |")
    print(f"| Down, idle: key → cursor moved | {_ms(idle_lat)} | |")
    print(
        f"| Down, {args.rate} events/s: key → cursor moved | {_ms(busy_lat)} | input never waits |"
    )
    print(f"| keys lost during the flood | {pressed - moved} of {pressed} | 0 |")
    print(f"| events received by the app | {flood['received']:,} | |")
    print(
        f"| TUI process CPU: Down every 50 ms / the same with {args.rate} events/s / "
        f"{args.rate} events/s alone | {flood['idle_cpu']:.2f} / {flood['busy_cpu']:.2f} / "
        f"{flood['events_cpu']:.2f} cores | < 0.5 |"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tui", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--opens", type=int, default=5, help="times the pane is opened")
    parser.add_argument("--pages", type=int, default=40, help="PgDn presses (and PgUp)")
    parser.add_argument("--rate", type=int, default=200, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood length")
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, short runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.opens, args.pages, args.seconds = 10_000, 2, 10, 3.0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
