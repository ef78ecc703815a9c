"""Test-wide settings.

OpenMP threads that spin while waiting make torch many times slower when the two cores of a
CI machine are shared with other processes (the SLURM daemons, a Snakemake subprocess);
passive waiting avoids it. It must be set before torch is first imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# --- SLURM (test_slurm_cluster.py, test_slurm_workflow.py) ---------------------------------
import pytest


@pytest.fixture(scope="session")
def slurm() -> None:
    """A SLURM that answers (scripts/slurm/start.sh if needed, left running); skips without
    one on a developer machine, fails in CI (CI set, not false/0; see slurm_support.py)."""
    from slurm_support import ensure_slurm

    ensure_slurm()
