"""What a training job costs besides its runs (not a test): one batch of runs trained by one
job against the same runs trained one job each, in CPU seconds measured in one run.

    python benchmarks/bench_batches.py [--configfile config/config.yaml]
                                       [--batch penalty/seed-0] [--workdir DIR]

1. The runs of ``--batch`` (a batch of ``resources.batch: study_seed``) are trained by one
   ``gcstudy train --batch`` process, as rule ``train`` runs it.
2. The same runs are trained again in another folder, each by its own process (a batch of
   one run, as with ``resources.batch: run``).
3. The batch's command is run once more: every run is finished, so the process pays only
   the start-up of a job (interpreter, imports, reading the batch, checking the runs).

CPU seconds are those of the child processes (user + system, ``getrusage``), so the load
of other work on the machine changes them little. Printed: each way's CPU seconds, the
runs' own loop CPU (the traces' ``cpu_seconds``), the cost per extra job
``(C_per_run - C_batch) / (n - 1)`` and that of a job with nothing to train, and what the
default study's batching (one job per study and seed) costs in start-up against 2 jobs
and against one job per run. Not counted: Snakemake's own cost per job (a shell and a
benchmark thread per job; the batch files are written in Snakemake's process).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gcstudy.scheduling import batches
from gcstudy.study import config as study_config
from gcstudy.study import traces

REPO = Path(__file__).resolve().parents[1]


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(workdir: Path, runs: list, config: dict, name: str) -> float:
    """CPU seconds of one ``gcstudy train --batch`` process for ``runs`` in ``workdir``."""
    content = batches.batch_content("results", runs, config["evaluate"])
    batch_file = batches.batch_path(workdir / "results", name)
    study_config.write_json(content, batch_file)
    manifest = batches.manifest_path(workdir / "results", name)
    before = child_cpu()
    result = subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", "--batch", str(batch_file),
         "--manifest", str(manifest)],
        cwd=workdir, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    if result.returncode:
        sys.exit(f"gcstudy train --batch failed:\n{result.stderr[-3000:]}")
    return child_cpu() - before


def loop_cpu(workdir: Path, runs: list) -> float:
    """The runs' own CPU seconds in their training loops (the traces' ``cpu_seconds``)."""
    folders = [workdir / "results" / "runs" / run.run_id for run in runs]
    return sum(float(traces.load(f / "trace.h5").attrs["cpu_seconds"]) for f in folders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--batch", default="penalty/seed-0")
    parser.add_argument("--workdir", help="working directory (default: a new temporary one)")
    parser.add_argument("--data-root", help="prepared data sets to copy (default: prepare)")
    args = parser.parse_args()
    config = study_config.load(args.configfile)
    expanded = study_config.expand(config)
    grouped = batches.batches(expanded, "study_seed")
    runs = grouped[args.batch]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_batches."))
    together, alone = work / "batch", work / "per_run"
    for folder in (together, alone):
        data = folder / config["data_root"]
        if args.data_root:
            shutil.copytree(args.data_root, data)
        else:
            from gcstudy.data import prepare

            for dataset in {r.spec.dataset for r in runs}:
                prepare(dataset, data)
    print(f"batch {args.batch}: {len(runs)} runs, {sum(r.spec.steps for r in runs)} steps; "
          f"workdir {work}")  # fmt: skip
    batch = train(together, runs, config, args.batch)
    per_run = [train(alone, [run], config, run.run_id) for run in runs]
    noop = train(together, runs, config, args.batch)
    own_batch, own_alone = loop_cpu(together, runs), loop_cpu(alone, runs)
    # besides the runs' loops: start-up, data, final writes, once per job
    outside_batch, outside_alone = batch - own_batch, sum(per_run) - own_alone
    extra = (outside_alone - outside_batch) / (len(runs) - 1)
    print(f"one job for the batch:   {batch:7.1f} CPU s (runs' loops {own_batch:.1f} s)")
    print(f"one job per run:         {sum(per_run):7.1f} CPU s (runs' loops {own_alone:.1f} s; "
          f"jobs {', '.join(f'{c:.1f}' for c in per_run)})")  # fmt: skip
    print(f"outside the runs' loops: {outside_batch:7.1f} CPU s in one job, {outside_alone:.1f} in "
          f"{len(runs)}; each extra job {extra:.1f} CPU s (difference / (n - 1))")  # fmt: skip
    print(f"a job with nothing left: {noop:7.1f} CPU s (interpreter, imports, checks)")
    trained = study_config.trained_runs(expanded)
    jobs = len(grouped)
    print(f"default study: {len(trained)} runs in {jobs} batches; start-up against 2 jobs: "
          f"+{(jobs - 2) * extra:.0f} CPU s; against one job per run: "
          f"-{(len(trained) - jobs) * extra:.0f} CPU s")  # fmt: skip


if __name__ == "__main__":
    main()
