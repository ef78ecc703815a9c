"""Cost of the run-file check that the workflow runs each time Snakemake starts.

    python benchmarks/bench_run_check.py [--configfile config/config.yaml] [--repeats 5]

Writes the config's run folders (one per trained run, runs shared as the workflow shares
them) with result files of a real run's size: ``model.pt`` the ``state_dict`` of the run's
network (``torch.save``), ``trace.h5`` with the run's evaluation steps
(``gcstudy.study.traces.write``), the evaluation files the run gets; each sealed as the writers
seal them. Then times ``gcstudy.study.runfolder.check_study`` on the intact study (the check at
every parse: a ``stat`` and a seal read per file), on the same files without seals (each
file's format read: the path of runs written before seals), and the config's own
validation (``gcstudy.study.config.validate``, which every parse runs already), in CPU seconds
of this process (``time.process_time``, the median of ``--repeats``), and prints the
ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gcstudy.models import build
from gcstudy.study import config as study_config
from gcstudy.study import seals as runfiles
from gcstudy.study import traces
from gcstudy.study.datasets import DATASETS
from gcstudy.study.runfolder import RunFolder, check_study


def write_run(folder: RunFolder, run) -> None:
    spec = run.spec
    dataset = DATASETS[spec.dataset]
    classes = np.array(dataset.source_classes or range(dataset.num_classes))
    folder.path.mkdir(parents=True, exist_ok=True)
    model = build(spec.model, len(classes), dataset.channels, spec.width)
    torch.save({"state_dict": model.state_dict(), "spec": spec.to_dict()}, folder.model)
    steps = np.array(spec.evaluation_steps)
    values = {n: np.zeros(len(steps)) for n, v in traces.VARIABLES.items() if not v.transfer_only}
    values["gc_per_class"] = np.zeros((len(steps), len(classes)))
    values["examples_seen"] = steps * spec.batch_size
    traces.write(folder.trace, steps, classes, values, {"spec": spec.to_dict()}, "complete")
    for path in folder.evaluation_files:  # an HDF5 file of about an evaluation's size
        traces.write(path, steps, classes, values, {}, "complete")
    for path in folder.result_files:
        runfiles.seal(path)


def cpu_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        action()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = study_config.load(args.configfile)
    runs = study_config.expand(config)
    trained = study_config.trained_runs(runs)
    results = Path(tempfile.mkdtemp(prefix="bench_run_check_"))
    folders = [RunFolder.under(results, run.run_id, run.evaluations) for run in trained]
    for folder, run in zip(folders, trained, strict=True):
        write_run(folder, run)
    files = sum(len(folder.result_files) for folder in folders)
    size = sum(p.stat().st_size for p in results.rglob("*") if p.is_file()) / 2**20
    print(f"{len(runs)} runs, {len(trained)} run folders, {files} result files, {size:.1f} MiB")

    sealed = cpu_seconds(lambda: check_study(results, folders), args.repeats)
    for seal in results.rglob(f"*{runfiles.SEAL_SUFFIX}"):
        seal.unlink()
    unsealed = cpu_seconds(lambda: check_study(results, folders), args.repeats)
    validate = cpu_seconds(lambda: study_config.validate(study_config.load(args.configfile)),
                           args.repeats)  # fmt: skip
    print(f"check, sealed files:   {1000 * sealed:7.1f} ms CPU "
          f"({1e6 * sealed / files:.0f} us per file)")  # fmt: skip
    print(f"check, unsealed files: {1000 * unsealed:7.1f} ms CPU "
          f"({1e6 * unsealed / files:.0f} us per file)")  # fmt: skip
    print(f"config validation:     {1000 * validate:7.1f} ms CPU")
    print(f"ratio check/validation: sealed {sealed / validate:.2f}, "
          f"unsealed {unsealed / validate:.2f}")  # fmt: skip
    assert all(not f.removed for f in check_study(results, folders))


if __name__ == "__main__":
    main()
