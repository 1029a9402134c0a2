"""What a worker tells the coordinator about itself when it registers (FEATURES W1, W7):
its tags, labels, grants and slots, and the facts of the node it runs on."""

from __future__ import annotations

import os
import platform

import psutil

from mitosis_sdk import __version__
from mitosis_sdk.schemas.workers import HostFacts
from mitosis_worker.config import WorkerSettings, split_list


def host_facts() -> HostFacts:
    gpus = len([d for d in os.listdir("/dev") if d[:6] == "nvidia" and d[6:].isdigit()])
    return HostFacts(
        hostname=platform.node()[:255] or None,
        cores=os.cpu_count(),
        memory=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()}"[:255],
        arch=platform.machine()[:64] or None,
        gpus=gpus,
    )


def registration(settings: WorkerSettings) -> dict:
    """The body of the worker's registration."""
    return {
        "tags": split_list(settings.tags),
        "labels": split_list(settings.labels),
        "grants": settings.grants(),
        "slots": settings.slots,
        "facts": host_facts(),
        "version": __version__,
    }
