"""Training checkpoints: atomic writes, newest-valid lookup, bounded history.

Checkpoints live in ``<run dir>/ckpt/`` as ``step-00000100.pt`` (names:
``gcstudy.study.runfolder``), written to a temporary name, fsynced and renamed
(``gcstudy.files``), so a file with the final name is complete unless the disk
corrupted it later. ``latest`` returns the newest checkpoint that loads and has the
expected keys, falling back to older ones (a truncated file is reported and skipped).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gcstudy import files
from gcstudy.study.runfolder import CHECKPOINT_GLOB, checkpoint_name

log = logging.getLogger(__name__)
KEEP = 2
REQUIRED = ("step", "model", "optimizer")


def save(directory: Path, step: int, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with ``step``) as ``directory/step-<step>.pt``; keep the newest 2."""
    path = directory / checkpoint_name(step)
    with files.replacing(path, sync=True) as tmp:
        torch.save({**payload, "step": step}, tmp)
    for old in sorted(directory.glob(CHECKPOINT_GLOB))[:-KEEP]:
        old.unlink()
    return path


def latest(directory: Path) -> dict[str, Any] | None:
    """The newest valid checkpoint's payload, or None when there is none."""
    for path in sorted(directory.glob(CHECKPOINT_GLOB), reverse=True):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, e)
            continue
        if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED):
            log.warning("checkpoint %s lacks %s; trying an older one", path, REQUIRED)
            continue
        log.info("resuming from checkpoint %s (step %d)", path, payload["step"])
        return payload
    return None
