"""The README's worked example, "Your own data and networks", run as written.

The section's bash blocks are taken from README.md verbatim and run, one script, in a fresh
folder that holds the repository's workflow (Snakefile, workflow/, profiles/) as a clone
does: a folder of PNG images -> a declared data set -> a small transfer study through the
real Snakemake -> the report -> `gcstudy measure` on the trained networks. The test then
checks what the example promises against the files themselves: the prepared data set holds
every image of the folder at the declared size, the study trained every run of its config,
and the measured file holds the seed-0 runs, ranked by GC, with their few-shot accuracies
above chance.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your own data and networks"
WORKFLOW_FILES = ("Snakefile", "workflow", "profiles", "config")


def example_script(readme: str) -> str:
    """The bash blocks of the README section, joined in order."""
    start = readme.index(f"\n{SECTION}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end > 0 else None]
    blocks = re.findall(r"^```bash\n(.*?)^```$", section, re.S | re.M)
    assert blocks, f"README section {SECTION!r} has no bash block"
    return "\n".join(blocks)


@pytest.mark.slow
def test_the_worked_example_runs_as_written(tmp_path):
    script = example_script((REPO / "README.md").read_text(encoding="utf-8"))
    for name in WORKFLOW_FILES:
        (tmp_path / name).symlink_to(REPO / name)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, capture_output=True, text=True, timeout=1500, env=environment,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])

    config = yaml.safe_load((tmp_path / "my_study.yaml").read_text())
    ((name, declared),) = config["datasets"].items()
    images = list((tmp_path / declared["path"]).rglob("*.png"))
    manifest = json.loads((tmp_path / "data" / "prepared" / name / "manifest.json").read_text())
    prepared = manifest["recipe"]
    assert (prepared["image_size"], prepared["channels"]) == (32, 1)
    # every image of the folder is in the prepared set, once: source (train + test) + target
    assert prepared["train_size"] + prepared["test_size"] + prepared["target_size"] == len(images)
    assert len(prepared["source_classes"]) == len(prepared["target_classes"]) == 5

    results = tmp_path / config["results"]
    assert (results / "report.html").stat().st_size > 0
    study = next(iter(config["studies"]))
    runs = sorted(p.parent for p in (results / "runs" / study).glob("*/trace.h5"))
    (values,) = config["studies"][study]["sweeps"].values()
    assert len(runs) == len(values) * len(config["studies"][study]["seeds"])

    measured = xr.open_dataset(results / "measured.nc")
    seed0 = sorted(run.name for run in runs if run.name.endswith("_seed-0"))
    assert sorted(Path(p).parent.name for p in measured["source"].values) == seed0
    assert list(measured["rank"].values) == list(range(1, len(seed0) + 1))
    gc = measured["gc"].values
    assert np.all(gc > 0) and np.all(np.diff(gc) >= 0), f"not ranked by GC: {gc}"
    for shots in (1, 5):
        accuracy = measured[f"fewshot_{shots}shot_accuracy"].values
        assert np.all((accuracy > 0.2) & (accuracy <= 1)), accuracy  # 5-way: chance is 0.2
    for network in measured["network"].values:
        assert str(network) in done.stdout, done.stdout
