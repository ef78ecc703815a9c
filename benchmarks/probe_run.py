"""Probe a step budget on one run (not a test): train one spec, print its curve and CPU time.

    python benchmarks/probe_run.py OUT [KEY=VALUE ...]

Trains one run (``gcstudy.training.trainer.run``, 1 torch thread) of the default study's MNIST
setting (``config/config.yaml``'s ``defaults``), changed by ``KEY=VALUE`` run-spec keys
(values read as YAML: ``steps=900 batch_size=24 dataset=glyphs``), into the folder OUT, and
prints the process's CPU seconds (``os.times``, data loading included) and, at each
evaluation, train and test accuracy, the CDNV bound, NC and (transfer data sets) the
5-shot accuracy. How config/README.md's budgets were probed before a whole study was run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

from gcstudy.study import config as study_config
from gcstudy.study import traces
from gcstudy.study.spec import RunSpec
from gcstudy.training import trainer as train

REPO = Path(__file__).resolve().parents[1]
SHOWN = ("train_accuracy", "test_accuracy", "bound_cdnv", "nc_train", "fewshot_5shot_accuracy")


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    out, changes = Path(argv[0]), dict(arg.split("=", 1) for arg in argv[1:])
    torch.set_num_threads(1)
    defaults = study_config.load(REPO / "config" / "config.yaml")["defaults"]
    values = {**defaults, "device": "cpu", **{k: yaml.safe_load(v) for k, v in changes.items()}}
    spec = RunSpec.from_dict(values, source="probe_run arguments")
    shutil.rmtree(out, ignore_errors=True)
    before = os.times()
    train.run(spec, out, progress=False)
    after = os.times()
    cpu = after.user + after.system - before.user - before.system
    print(f"{changes}: {cpu:.1f} CPU s; steps {spec.steps}, batch {spec.batch_size}")
    trace = traces.load(out / "trace.h5")
    for index, step in enumerate(trace.steps):
        shown = [f"{k} {trace.values[k][index]:.4g}" for k in SHOWN if k in trace.values]
        print(f"step {step}: " + ", ".join(shown))


if __name__ == "__main__":
    main(sys.argv[1:])
