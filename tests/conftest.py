"""Test-wide settings.

OpenMP threads that spin while waiting make torch many times slower when the two cores of a
CI machine are shared with other processes (the SLURM daemons, a Snakemake subprocess);
passive waiting avoids it. It must be set before torch is first imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
