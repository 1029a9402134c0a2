"""A task's stdout and stderr: live lines in bounded memory, and optional capped files.

A task may print anything: a gigabyte of short lines, one 100 MB line, or nothing for an
hour. The child must never wait for the worker and the worker must not grow with the
output, so capture is shaped like this:

* The capture owns the pipes and handles each chunk as the event loop reads it (no
  ``readline``, which buffers a whole line; no StreamReader buffer). A line longer than
  ``max_line_bytes`` keeps its head and ends with ``… [line truncated, N bytes dropped]``;
  the rest is counted as it arrives, never held.
* Lines of both streams go into one buffer bounded in lines *and* bytes. A separate pump
  hands batches to the async sink; the readers never await the sink. When the sink falls
  behind, the oldest lines go and the next batch starts with ``[… N lines dropped]``, so the
  end of the output, where errors usually are, survives.
* After each delivery the pump lets lines gather for ``linger`` seconds (unless the output
  has ended), so a task printing 50,000 lines a second is shipped in a few large batches,
  not thousands of small ones, while a quiet task's line still goes out at once.
* With ``--terminal`` the raw bytes also go to ``stdout.log`` and ``stderr.log``: the first
  ``std_log_bytes`` of each, then a line saying how much was cut.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import fcntl
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["STDERR", "STDOUT", "LogCapture", "LogLimits", "LogLine", "LogSink"]

logger = logging.getLogger(__name__)

STDOUT = "stdout"
STDERR = "stderr"
READ_SIZE = 256 * 1024  # bytes taken from a pipe per read, as asyncio's pipe transport
PIPE_SIZE = 1024 * 1024  # the default limit for unprivileged processes on Linux


class LogLine(NamedTuple):
    stream: str  # STDOUT or STDERR
    text: str


LogSink = Callable[[list[LogLine]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Memory and disk bounds of one attempt's capture."""

    max_line_bytes: int = 64 * 1024
    buffer_lines: int = 50_000
    buffer_bytes: int = 8 * 1024 * 1024
    batch_lines: int = 50_000  # per delivery (the shipper sends it in pieces)
    linger: float = 0.1  # seconds between deliveries while lines keep coming
    std_log_bytes: int = 100 * 1024 * 1024  # per stream, with --terminal


def _truncated(head: bytes, dropped: int) -> bytes:
    return head + f" … [line truncated, {dropped} bytes dropped]".encode()


class _LineSplitter:
    """Cuts a byte stream into lines, keeping at most ``limit`` bytes of any one line."""

    __slots__ = ("_extra", "_head", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._head = bytearray()  # start of the unfinished line, at most `limit` bytes
        self._extra = 0  # bytes of the unfinished line beyond `limit`, already discarded

    def feed(self, chunk: bytes) -> list[bytes]:
        pieces = chunk.split(b"\n")
        self._extend(pieces[0])
        if len(pieces) == 1:
            return []
        limit = self._limit
        lines = [self._take()]
        if max(map(len, pieces)) <= limit:  # the usual case, without a Python-level loop
            lines.extend(pieces[1:-1])
        else:
            lines.extend(
                piece if len(piece) <= limit else _truncated(piece[:limit], len(piece) - limit)
                for piece in pieces[1:-1]
            )
        self._extend(pieces[-1])
        return lines

    def flush(self) -> bytes | None:
        """The last line when the stream ended without a newline."""
        return self._take() if self._head or self._extra else None

    def _extend(self, data: bytes) -> None:
        room = self._limit - len(self._head)
        if len(data) <= room:
            self._head += data
        else:
            self._head += data[:room]
            self._extra += len(data) - room

    def _take(self) -> bytes:
        line = bytes(self._head)
        if self._extra:
            line = _truncated(line, self._extra)
        self._head.clear()
        self._extra = 0
        return line


def _decode(stream: str, raws: list[bytes]) -> list[LogLine]:
    """One decode call per batch; a CR before the newline is part of the line ending."""
    text = (b"\n".join(raws) + b"\n").decode("utf-8", "replace").replace("\r\n", "\n")
    return [LogLine(stream, line) for line in text.split("\n")[:-1]]


class _LineBuffer:
    """Bounded FIFO between the readers and the sink; when full, the oldest lines go.

    Lines are kept in the lists the splitter made, one segment per chunk, so a flood of
    short lines costs a few C-level list operations per chunk rather than Python per line,
    and lines that are dropped are never decoded.
    """

    def __init__(self, sink: LogSink, limits: LogLimits) -> None:
        self._sink = sink
        self._limits = limits
        self._segments: collections.deque[tuple[str, list[bytes], int]] = collections.deque()
        self._lines = 0
        self._bytes = 0
        self._dropped = {STDOUT: 0, STDERR: 0}
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._closed = False
        # Delivers to the sink (``run``), started by the first lines: most short tasks
        # print nothing, and then cost no task, no wake-ups and no cancel at their end.
        self.pump: asyncio.Task[None] | None = None

    def put(self, stream: str, lines: list[bytes]) -> None:
        """Never blocks: the caller is the reader the child is waiting on."""
        size = sum(map(len, lines))
        self._segments.append((stream, lines, size))
        self._lines += len(lines)
        self._bytes += size
        self._trim()
        self._ready.set()
        if self.pump is None:
            self.pump = asyncio.get_running_loop().create_task(self.run(), name="logs.pump")

    def close(self) -> None:
        self._closed = True
        self._ended.set()
        self._ready.set()

    async def run(self) -> None:
        """Deliver batches until closed and empty; a failing sink loses its batch only."""
        while True:
            await self._ready.wait()
            batch = self._take_batch()
            if batch:
                started = asyncio.get_running_loop().time()
                try:
                    await self._sink(batch)
                except Exception as exc:
                    logger.warning("logs.sink_failed: %s", exc)
                # Yield even when the sink did not, so the readers always get their turn;
                # then let the next batch gather (the end of the output cuts it short).
                await asyncio.sleep(0)
                rest = started + self._limits.linger - asyncio.get_running_loop().time()
                if rest > 0 and len(batch) < self._limits.batch_lines:  # else: more waits
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(rest):
                            await self._ended.wait()
            elif self._closed:
                return
            else:
                self._ready.clear()

    def _trim(self) -> None:
        max_lines, max_bytes = self._limits.buffer_lines, self._limits.buffer_bytes
        while self._lines > max_lines or self._bytes > max_bytes:
            stream, lines, size = self._segments[0]
            excess_lines, excess_bytes = self._lines - max_lines, self._bytes - max_bytes
            if excess_lines >= len(lines) or excess_bytes >= size:
                self._segments.popleft()
                self._forget(stream, len(lines), size)
                continue
            count = max(excess_lines, 0)
            if excess_bytes > 0:  # the shortest prefix that frees enough bytes
                ends = list(itertools.accumulate(map(len, lines)))
                count = max(count, bisect.bisect_left(ends, excess_bytes) + 1)
            cut = sum(map(len, lines[:count]))
            self._segments[0] = (stream, lines[count:], size - cut)
            self._forget(stream, count, cut)

    def _forget(self, stream: str, lines: int, size: int) -> None:
        self._lines -= lines
        self._bytes -= size
        self._dropped[stream] += lines

    def _take_batch(self) -> list[LogLine]:
        # Drops always hit the oldest lines, so the gap sits right before what is left.
        batch = [LogLine(s, f"[… {n} lines dropped]") for s, n in self._dropped.items() if n]
        self._dropped = dict.fromkeys(self._dropped, 0)
        room = self._limits.batch_lines
        while room and self._segments:
            stream, lines, size = self._segments[0]
            taken = lines[:room]
            if len(taken) == len(lines):
                self._segments.popleft()
                taken_size = size
            else:
                taken_size = sum(map(len, taken))
                self._segments[0] = (stream, lines[room:], size - taken_size)
            self._lines -= len(taken)
            self._bytes -= taken_size
            room -= len(taken)
            batch.extend(_decode(stream, taken))
        return batch


class _CappedFile:
    """The first ``limit`` bytes of a stream, then a note of how much was cut."""

    def __init__(self, path: Path, limit: int) -> None:
        self._file = path.open("wb")  # closed by close(): the file outlives this call
        self._room = limit
        self._cut = 0

    def write(self, chunk: bytes) -> None:
        if self._file.closed:
            return
        keep = min(len(chunk), self._room)
        self._room -= keep
        self._cut += len(chunk) - keep
        try:
            if keep:
                self._file.write(memoryview(chunk)[:keep])
        except OSError as exc:  # a full disk must not stop the reader the child waits on
            logger.warning("logs.std_log_failed path=%s: %s", self._file.name, exc)
            self._file.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self._cut and not self._file.closed:
                self._file.write(f"\n… [output truncated, {self._cut} bytes dropped]\n".encode())
        self._file.close()


class _StreamProtocol:
    """Handles each chunk as it arrives: nothing waits on it, nothing accumulates in it."""

    def __init__(
        self,
        name: str,
        buffer: _LineBuffer | None,
        file: _CappedFile | None,
        max_line: int,
        done: asyncio.Future[None],
    ) -> None:
        self._name = name
        self._buffer = buffer
        self._file = file
        self._splitter = _LineSplitter(max_line)
        self._done = done

    def data_received(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
        if self._buffer is not None and (lines := self._splitter.feed(data)):
            self._buffer.put(self._name, lines)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buffer is not None and (last := self._splitter.flush()) is not None:
            self._buffer.put(self._name, [last])
        if not self._done.done():
            self._done.set_result(None)


class _PipeReader:
    """Reads our end of a pipe whenever the loop sees data on it, into a protocol, until
    EOF or :meth:`close`.

    What ``loop.connect_read_pipe`` does, set up without an await: the capture is ready in
    the same step as the spawn, so a fresh task's process is not started behind whatever
    else the loop runs in between (measured: 2.5 ms from claim to spawn, 0.6 ms without)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, protocol: _StreamProtocol):
        os.set_blocking(fd, False)
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        loop.add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self.close()

    def close(self, exc: Exception | None = None) -> None:
        """Stop reading; the protocol hears of it once (its unterminated last line goes)."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._protocol.connection_lost(exc)


class LogCapture:
    """A child's stdout and stderr, read to the end; see the module docstring.

    ``sink`` receives batches of lines (None: no live lines); ``std_log_dir`` (None: no
    files) receives ``stdout.log`` and ``stderr.log``. The capture owns the pipes, so the
    end of the output is EOF on them, independent of when the main process exits.
    """

    def __init__(
        self,
        sink: LogSink | None,
        limits: LogLimits | None = None,
        std_log_dir: Path | None = None,
    ) -> None:
        self._limits = limits or LogLimits()
        self._buffer = _LineBuffer(sink, self._limits) if sink is not None else None
        self._std_log_dir = std_log_dir
        self._files: list[_CappedFile] = []
        self._child_ends: list[int] = []
        self._readers: list[_PipeReader] = []
        self._eof: list[asyncio.Future[None]] = []

    def open(self) -> tuple[int, int]:
        """Start reading; returns the write ends to hand to the child as stdout and stderr.

        Call :meth:`release_child_ends` once the child has them (or failed to start).
        """
        loop = asyncio.get_running_loop()
        for name in (STDOUT, STDERR):
            ours, theirs = os.pipe()
            self._child_ends.append(theirs)
            if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: room for bursts while the loop is busy
                with contextlib.suppress(OSError):
                    fcntl.fcntl(theirs, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            file = None
            if self._std_log_dir is not None:
                file = _CappedFile(self._std_log_dir / f"{name}.log", self._limits.std_log_bytes)
                self._files.append(file)
            done: asyncio.Future[None] = loop.create_future()
            self._eof.append(done)
            protocol = _StreamProtocol(name, self._buffer, file, self._limits.max_line_bytes, done)
            self._readers.append(_PipeReader(loop, ours, protocol))
        return self._child_ends[0], self._child_ends[1]

    def release_child_ends(self) -> None:
        """Close our copies of the child's ends, so that EOF can come."""
        for fd in self._child_ends:
            os.close(fd)
        self._child_ends.clear()

    async def finish(self, *, eof_timeout: float = 5.0, drain_timeout: float = 30.0) -> None:
        """Read to EOF, close the files and deliver what is buffered, each wait bounded.

        EOF comes once every process holding the pipes is gone; one that escaped the process
        group could hold them forever, hence ``eof_timeout``. A sink that cannot take the
        rest within ``drain_timeout`` loses it.
        """
        self.release_child_ends()
        try:
            if not all(eof.done() for eof in self._eof):  # else the reading is over already
                _, late = await asyncio.wait(self._eof, timeout=eof_timeout)
                if late:
                    logger.warning("logs.no_eof: stopped reading after %.0fs", eof_timeout)
        finally:
            self._close_pipes()
        if self._buffer is not None:
            self._buffer.close()
            if (pump := self._buffer.pump) is not None:
                _, late = await asyncio.wait([pump], timeout=drain_timeout)
                if late:
                    logger.warning(
                        "logs.drain_timeout: dropped the rest after %.0fs", drain_timeout
                    )
                await _cancel(pump)

    async def abort(self) -> None:
        """Stop at once (the attempt itself is being torn down)."""
        self.release_child_ends()
        self._close_pipes()
        if self._buffer is not None and self._buffer.pump is not None:
            await _cancel(self._buffer.pump)

    def _close_pipes(self) -> None:
        for reader in self._readers:
            reader.close()  # delivers the unterminated last line, if any
        self._readers.clear()
        for file in self._files:
            file.close()
        self._files.clear()


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel and await ``task``; its failure is logged, not raised."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception as exc:
            logger.warning("logs.pump_failed: %r", exc)
