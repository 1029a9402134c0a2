"""Log capture: bounded memory for huge output, truncated lines, dropping for slow sinks."""

from __future__ import annotations

import asyncio
import re

import psutil

from mitosis_worker.executor import Reason
from mitosis_worker.logs import LogLimits
from tests.unit.worker.conftest import PY, Collector

GIB = 2**30
MB = 10**6


class CountingSink:
    """Keeps only counts, the last line and the drop markers: the cheapest possible sink."""

    def __init__(self) -> None:
        self.lines = 0
        self.dropped = 0
        self.last = ""

    async def __call__(self, batch) -> None:
        for line in batch:
            if match := re.fullmatch(r"\[… (\d+) lines dropped\]", line.text):
                self.dropped += int(match[1])
            else:
                self.lines += 1
                self.last = line.text


async def peak_rss_during(coro) -> tuple[object, int]:
    """Run ``coro`` and return its result with this process's peak RSS growth meanwhile."""
    me = psutil.Process()
    base = peak = me.memory_info().rss
    task = asyncio.ensure_future(coro)
    while not task.done():
        peak = max(peak, me.memory_info().rss)
        await asyncio.sleep(0.02)
    return task.result(), peak - base


async def test_one_gib_of_output_in_bounded_memory(make_attempt):
    """1 GiB of 1 KiB lines passes through with RSS growth under 100 MB and no line lost."""
    script = (
        "import sys; block = (b'x' * 1023 + b'\\n') * 1024\n"
        "for _ in range(1023): sys.stdout.buffer.write(block)\n"
        "sys.stdout.buffer.write(block[:-1024] + b'the end\\n')"
    )
    sink = CountingSink()
    attempt = make_attempt([PY, "-c", script], sink=sink, timeout=600)
    outcome, growth = await peak_rss_during(asyncio.wait_for(attempt.run(), 600))
    assert outcome.reason is Reason.COMPLETED
    assert growth < 100 * MB, f"RSS grew by {growth / MB:.0f} MB"
    assert sink.lines + sink.dropped == GIB // 1024
    assert sink.last == "the end"


async def test_hundred_megabyte_line_is_truncated(make_attempt):
    """A 100 MB line arrives as its first 64 KiB plus a marker; memory stays flat."""
    script = (
        "import sys; w = sys.stdout.buffer.write\n"
        "for _ in range(100): w(b'y' * 1_000_000)\n"
        "w(b'\\nafter\\n')"
    )
    sink = Collector()
    attempt = make_attempt([PY, "-c", script], sink=sink, timeout=60)
    outcome, growth = await peak_rss_during(asyncio.wait_for(attempt.run(), 60))
    assert outcome.reason is Reason.COMPLETED
    assert growth < 50 * MB, f"RSS grew by {growth / MB:.0f} MB"
    kept = 64 * 1024
    assert sink.texts() == [
        "y" * kept + f" … [line truncated, {100 * MB - kept} bytes dropped]",
        "after",
    ]


async def test_slow_sink_drops_oldest_without_blocking_child(make_attempt):
    """A sink far slower than the task costs the oldest lines (marked), never the task's time."""
    script = (
        "import os, sys, time; start = time.monotonic()\n"
        "for i in range(200_000): print('line', i)\n"
        "sys.stdout.flush()\n"
        "open(os.environ['MITO_RESULT_DIR'] + '/took', 'w').write(str(time.monotonic() - start))"
    )
    sink = Collector(delay=0.2)
    limits = LogLimits(buffer_lines=1_000, batch_lines=500)
    attempt = make_attempt([PY, "-c", script], sink=sink, limits=limits, timeout=60)
    outcome = await asyncio.wait_for(attempt.run(), 60)
    assert outcome.reason is Reason.COMPLETED
    # Unthrottled, the loop takes well under a second; at 500 lines per 0.2 s it would be 80 s.
    assert float((attempt.dirs.result / "took").read_text()) < 40
    texts = sink.texts()
    markers = [t for t in texts if t.startswith("[…")]
    assert markers
    dropped = sum(int(re.search(r"\d+", m)[0]) for m in markers)
    assert dropped + len(texts) - len(markers) == 200_000
    assert texts[-1] == "line 199999"
    assert sink.batches < 40


async def test_streams_and_partial_lines(make_attempt):
    """Lines split across writes are joined; stderr is kept apart; a last unterminated line
    and CRLF endings come out as plain lines."""
    script = (
        "import sys, time; o = sys.stdout; e = sys.stderr\n"
        "o.write('ab'); o.flush(); time.sleep(0.1); o.write('cd\\r\\nef\\n'); o.flush()\n"
        "e.write('oops\\n'); e.flush(); o.write('tail'); o.flush()"
    )
    sink = Collector()
    await asyncio.wait_for(make_attempt([PY, "-c", script], sink=sink).run(), 10)
    assert sink.texts("stdout") == ["abcd", "ef", "tail"]
    assert sink.texts("stderr") == ["oops"]


async def test_failing_sink_does_not_fail_the_task(make_attempt):
    """A sink that raises loses its batch; the attempt still completes."""

    async def broken(batch):
        raise RuntimeError("coordinator unreachable")

    attempt = make_attempt([PY, "-c", "print('hello')"], sink=broken)
    outcome = await asyncio.wait_for(attempt.run(), 10)
    assert outcome.reason is Reason.COMPLETED


async def test_terminal_files_are_capped(make_attempt):
    """With --terminal, stdout.log and stderr.log hold the raw output up to the cap."""
    script = "import sys; sys.stdout.write('z' * 5000); sys.stderr.write('short\\n')"
    limits = LogLimits(std_log_bytes=1000)
    attempt = make_attempt(
        [PY, "-c", script], sink=Collector(), limits=limits, terminal_output=True
    )
    await asyncio.wait_for(attempt.run(), 10)
    stdout = (attempt.dirs.std_log / "stdout.log").read_text()
    assert stdout == "z" * 1000 + "\n… [output truncated, 4000 bytes dropped]\n"
    assert (attempt.dirs.std_log / "stderr.log").read_text() == "short\n"


async def test_terminal_files_keep_long_lines_whole(make_attempt):
    """The files are not subject to the live line limit: a 100 KiB line is kept whole."""
    script = "import sys; sys.stdout.write('q' * 100_000 + '\\n')"
    attempt = make_attempt([PY, "-c", script], sink=Collector(), terminal_output=True)
    await asyncio.wait_for(attempt.run(), 10)
    assert (attempt.dirs.std_log / "stdout.log").read_text() == "q" * 100_000 + "\n"


async def test_output_without_sink_or_files_is_drained(make_attempt):
    """With no consumer at all the pipes are still read, so a chatty task never stalls."""
    script = "import sys; sys.stdout.buffer.write(b'x' * 10_000_000)"
    outcome = await asyncio.wait_for(make_attempt([PY, "-c", script]).run(), 20)
    assert outcome.reason is Reason.COMPLETED
