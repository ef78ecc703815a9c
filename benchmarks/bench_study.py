"""Where a whole study's time goes (not a test): the runs' share of the core-seconds, the
overhead per run, and throughput against a bare training loop measured in the same run.

    python benchmarks/bench_study.py [--configfile config/config.yaml] [--cores 2]
                                     [--workdir DIR]

1. A bare training loop (plain PyTorch: the model, SGD, batches gathered from the uint8
   training tensor, cross-entropy, the GC penalty's double backward where a run has one;
   no measurement, traces or checkpoints) is timed for every distinct (data set, model,
   width, batch size, penalty) of the config, on the config's thread count.
2. The config's whole workflow, report included, runs with ``snakemake --cores N`` in a
   fresh working directory (data sets written from scratch, as for a newcomer), timed.
3. The bare loop is timed again (the machine's load drifts; both are printed, their mean
   is used).

Printed: the study's wall time and core-seconds (wall x cores) with the load average; the
runs' own compute (sum of each trace's final ``wall_time``) and its share of the
core-seconds (target >= 80 %); the overhead per trained run ((core-seconds - own compute) /
runs); the bare loop's time for the same training steps and images/s bare, inside the runs,
and over the whole study; Snakemake's per-rule job seconds; and what the study found that
the default config is sized for: the fraction of E1/E1b runs in the terminal phase (train
accuracy >= 99.5 % at every evaluation in the last third of the budget), few-shot accuracy
on the target classes at step 0 and at the end, and the claims' verdicts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gcstudy.data.run_data import load_run_data
from gcstudy.models import build
from gcstudy.study import config as study_config
from gcstudy.study import traces
from gcstudy.study.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
TERMINAL_ACCURACY = 0.995


def bare_step_seconds(spec: RunSpec, steps: int = 30, warmup: int = 5) -> float:
    """Median seconds of one plain SGD step for this spec's data, model, batch and penalty."""
    data = load_run_data(spec, torch.device("cpu"))
    torch.manual_seed(0)
    model = build(spec.model, data.num_classes, data.train_images.shape[1], spec.width).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        index = torch.randint(len(data.train_targets), (spec.batch_size,), generator=generator)
        x = data.normalise(data.train_images[index])
        x.requires_grad_(bool(spec.gc_penalty))
        embedding = model.embed(x)
        loss = F.cross_entropy(model.head(embedding), data.train_targets[index])
        if spec.l2:
            loss = loss + spec.l2 * sum(p.square().sum() for p in model.parameters())
        if spec.gc_penalty:
            v = torch.randint(0, 2, embedding.shape, generator=generator).float() * 2 - 1
            (grad,) = torch.autograd.grad((embedding * v).sum(), x, create_graph=True)
            loss = loss + spec.gc_penalty * grad.square().flatten(1).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def loop_kind(spec: RunSpec) -> tuple:
    return (spec.dataset, spec.model, spec.width, spec.batch_size, bool(spec.gc_penalty))


def bare_loops(runs, data_root: Path) -> dict[tuple, float]:
    kinds = {}
    for run in runs:
        kinds.setdefault(loop_kind(run.spec), run.spec)
    timed = {}
    for kind, spec in kinds.items():
        spec = RunSpec.from_dict({**spec.to_dict(), "data_root": str(data_root), "device": "cpu"})
        timed[kind] = bare_step_seconds(spec)
    return timed


def run_workflow(configfile: Path, workdir: Path, cores: int) -> tuple[float, int]:
    command = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
        str(workdir), "--configfile", str(configfile), "--cores", str(cores),
    ]  # fmt: skip
    start = time.perf_counter()
    with open(workdir / "snakemake.out", "w") as log:
        result = subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start, result.returncode


def rule_seconds(results: Path) -> dict[str, tuple[int, float]]:
    """Jobs and summed wall seconds per rule (or group-rule family) from Snakemake's
    benchmark files."""
    totals: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for path in (results / "benchmarks").rglob("*.tsv"):
        rule = path.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        totals[rule][0] += 1
        totals[rule][1] += float(row["s"])
    return {rule: (n, s) for rule, (n, s) in sorted(totals.items())}


def terminal_phase(trace: traces.Trace, steps: int) -> bool:
    """Train accuracy >= 99.5 % at every evaluation in the last third of the budget."""
    late = trace.steps >= steps * 2 / 3
    return bool(late.any() and (trace.values["train_accuracy"][late] >= TERMINAL_ACCURACY).all())


def study_facts(table: dict, results: Path) -> None:
    experiments = {name: s["experiment"] for name, s in table["studies"].items()}
    e1 = [r for r in table["runs"] if experiments[r["study"]] in ("E1", "E1b")]
    if e1:
        flags = {}
        for entry in e1:
            trace = traces.load(results / "runs" / entry["folder"] / "trace.h5")
            flags[entry["run_id"]] = terminal_phase(trace, entry["spec"]["steps"])
        print(
            f"E1 runs in the terminal phase (train accuracy >= 99.5 % over the last third): "
            f"{sum(flags.values())} of {len(flags)} = {np.mean(list(flags.values())):.0%}"
        )
        for run_id, ok in flags.items():
            if not ok:
                print(f"  not terminal: {run_id}")
    e4 = [r for r in table["runs"] if experiments[r["study"]] == "E4"]
    for shots in (1, 5):
        if not e4:
            break
        first, last = [], []
        for entry in e4:
            trace = traces.load(results / "runs" / entry["folder"] / "trace.h5")
            accuracy = trace.values[f"fewshot_{shots}shot_accuracy"]
            first.append(accuracy[0])
            last.append(accuracy[-1])
        print(
            f"E4 {shots}-shot accuracy on the target classes (traced, {len(e4)} runs): "
            f"step 0 {np.mean(first):.3f} +/- {np.std(first):.3f} -> final "
            f"{np.mean(last):.3f} +/- {np.std(last):.3f} (range {min(last):.3f}-{max(last):.3f})"
        )
    claims = results / "stats" / "claims.json"
    if claims.is_file():
        for claim in json.loads(claims.read_text()).get("claims", []):
            shown = {k: v for k, v in claim.items() if k in ("claim", "verdict", "decided_by")}
            print(f"claim {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--workdir", help="working directory (default: a new temporary one)")
    args = parser.parse_args()
    configfile = Path(args.configfile).resolve()
    config = study_config.load(configfile)
    torch.set_num_threads(config["resources"]["threads"])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_study."))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = study_config.trained_runs(study_config.expand(config))
    print(
        f"config {configfile}: {len(runs)} runs to train, batch "
        f"{config['resources']['batch']}, {args.cores} cores, torch threads per job "
        f"{config['resources']['threads']}; workdir {workdir}"
    )
    bench_data = Path(tempfile.mkdtemp(prefix="bench_study_data."))
    load_before = os.getloadavg()
    before = bare_loops(runs, bench_data)
    wall, returncode = run_workflow(configfile, workdir, args.cores)
    load_after = os.getloadavg()
    after = bare_loops(runs, bench_data)
    if returncode:
        sys.exit(f"snakemake failed (exit {returncode}): see {workdir / 'snakemake.out'}")
    results = workdir / config["results"]
    table = json.loads((results / "run_table.json").read_text())
    own = images = bare = 0.0
    for run in runs:
        trace = traces.load(results / "runs" / run.run_id / "trace.h5")
        own += float(trace.values["wall_time"][-1])
        images += float(trace.values["examples_seen"][-1])
        kind = loop_kind(run.spec)
        bare += run.spec.steps * (before[kind] + after[kind]) / 2
    core_seconds = wall * args.cores
    for kind in before:
        dataset, model, width, batch, penalty = kind
        print(
            f"bare loop {dataset} {model} w{width} batch {batch}{' +GC penalty' if penalty else ''}"
            f": {1000 * before[kind]:.1f} / {1000 * after[kind]:.1f} ms per step (before/after)"
        )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"study wall time {wall:.1f} s = {wall / 60:.2f} min; core-seconds {core_seconds:.0f}")
    print(f"runs' own compute (sum of final trace wall_time) {own:.0f} s")
    print(f"share of the study's core-seconds: {own / core_seconds:.1%} (target >= 80 %)")
    print(f"overhead per trained run: {(core_seconds - own) / len(runs):.2f} core-s")
    print(
        f"bare training loop for the same steps: {bare:.0f} s (before/after the study: "
        f"{sum(r.spec.steps * before[loop_kind(r.spec)] for r in runs):.0f} / "
        f"{sum(r.spec.steps * after[loop_kind(r.spec)] for r in runs):.0f} s)"
    )
    print(
        f"images/s per core: bare loop {images / bare:.0f}, inside the runs (training + "
        f"measuring) {images / own:.0f} ({own / bare:.2f}x the bare time), whole study "
        f"{images / core_seconds:.0f} ({core_seconds / bare:.2f}x)"
    )
    for rule, (jobs, seconds) in rule_seconds(results).items():
        print(f"  rule {rule:32s} {jobs:3d} jobs {seconds:8.1f} s")
    study_facts(table, results)
    print(f"(the study's files are in {workdir}; remove it when done)")


if __name__ == "__main__":
    main()
