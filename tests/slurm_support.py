"""Helpers shared by the tests that need a real SLURM (test_slurm_cluster.py,
test_slurm_workflow.py); the `slurm` fixture itself is in conftest.py.

SLURM comes from scripts/slurm/install.sh + scripts/slurm/start.sh (Debian's slurm-wlm 22.05,
no slurmdbd). `ensure_slurm()` starts it when `sinfo` does not answer and leaves it running.
Without SLURM the tests skip with the reason, except in CI (see `in_ci`), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "slurm" / "start.sh"


def in_ci(environ=os.environ) -> bool:
    """Whether the tests run in CI: CI services set ``CI`` (``true``, ``1``, ``yes``, ...);
    any non-empty value other than ``false`` or ``0`` counts, so that a missing SLURM fails
    there rather than skipping with exit status 0."""
    return environ.get("CI", "").strip().lower() not in ("", "false", "0")


IN_CI = in_ci()


def run_cmd(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def sinfo_ready() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = run_cmd(["sinfo", "-h", "-o", "%T"], timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and any(
        s in ("idle", "mixed", "allocated", "completing") for s in out.stdout.split()
    )


def unavailable(reason: str):
    """Skip (developer machine) or fail (CI): SLURM is missing."""
    if IN_CI:
        pytest.fail(f"SLURM is required in CI (CI={os.environ['CI']!r}): {reason}", pytrace=False)
    pytest.skip(f"no SLURM: {reason}")


def ensure_slurm() -> None:
    """A SLURM that answers: started with scripts/slurm/start.sh if needed (left running)."""
    if sinfo_ready():
        return
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        unavailable("slurmctld/munged not installed (run scripts/slurm/install.sh as root)")
    if os.geteuid() != 0:
        unavailable("sinfo does not answer and starting SLURM needs root (scripts/slurm/start.sh)")
    try:
        out = run_cmd(["bash", str(START)], timeout=120)
    except subprocess.TimeoutExpired:
        unavailable("scripts/slurm/start.sh did not finish within 120 s")
    if out.returncode != 0 or not sinfo_ready():
        unavailable(f"scripts/slurm/start.sh failed:\n{(out.stdout + out.stderr)[-3000:]}")


def jobcomp_path() -> Path:
    out = run_cmd(["scontrol", "show", "config"]).stdout
    m = re.search(r"^JobCompLoc\s*=\s*(\S+)", out, re.M)
    assert m, "JobCompLoc missing from `scontrol show config` (start.sh sets jobcomp/filetxt)"
    return Path(m.group(1))


def jobcomp_records(**match: str) -> list[dict[str, str]]:
    """Lines of the jobcomp/filetxt log as dicts, those whose fields equal `match`."""
    path = jobcomp_path()
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            rec = dict(re.findall(r"(\w+)=(\S*)", line))
            if all(rec.get(k) == v for k, v in match.items()):
                records.append(rec)
    return records


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def clean_env() -> dict[str, str]:
    """The environment without SLURM job variables (when the tests run inside a job)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
