"""Provenance recorded in every result file: software versions, git commit, host, time."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path

import h5py
import numpy as np
import torch

import gcstudy


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that produce the numbers."""
    return {
        "gcstudy": gcstudy.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": importlib.metadata.version("torchvision"),
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
    }


@cache
def git_commit() -> str:
    """``git describe --always --dirty --abbrev=40`` of the gcstudy source tree, or
    "unknown" when gcstudy is not installed from a git checkout."""
    source = Path(gcstudy.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(source), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def now() -> str:
    """The current time in UTC, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def host() -> str:
    return platform.node()
