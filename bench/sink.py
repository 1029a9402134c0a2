"""The ceiling for the local object store: a bare ASGI app under uvicorn that only moves bytes.

``PUT /<name>`` streams the body into ``$SINK_DIR/<name>`` in 4 MiB writes and fsyncs it
before answering; ``GET /<name>,<name>,…`` streams those files back in order, 1 MiB at a time.
No framework, no signature, no checks: what one uvicorn process on this machine can move, to
compare the coordinator's ``/objects`` routes with (``python -m bench.files --backends sink``).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

BUFFER = 4 * 2**20
CHUNK = 2**20


def _folder() -> Path:
    return Path(os.environ["SINK_DIR"])


async def _put(path: Path, receive) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        buffer = bytearray()
        more = True
        while more:
            message = await receive()
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
            if len(buffer) >= BUFFER or not more:
                await anyio.to_thread.run_sync(os.write, fd, bytes(buffer))
                buffer.clear()
        await anyio.to_thread.run_sync(os.fsync, fd)
    finally:
        os.close(fd)


async def _get(paths: list[Path], send) -> None:
    size = sum(path.stat().st_size for path in paths)
    headers = [(b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for path in paths:
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    names = scope["path"].strip("/").split(",")
    paths = [_folder() / Path(name).name for name in names]
    if scope["method"] == "PUT":
        await _put(paths[0], receive)
        headers = [(b"etag", b'"sink"'), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    elif all(path.is_file() for path in paths):
        await _get(paths, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
