"""What the live-stream benchmarks measure with: process CPU, the machine's load, cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from mitosis_server.events.log_user import log_user_name

REDIS = "redis://127.0.0.1:6379/0"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(port: int) -> int:
    """The coordinator listening on ``port`` (found through /proc, no extra packages)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":
            inode = parts[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError("coordinator process not found")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def cleanup_redis(prefix: str) -> None:
    """Delete a run's keys and the log user its coordinators created."""
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.execute_command("ACL", "DELUSER", log_user_name(prefix))
    client.close()
