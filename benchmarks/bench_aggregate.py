"""Time ``gcstudy aggregate`` on 1,000 generated traces (target: <= 60 s on a 2-core CPU).

    python benchmarks/bench_aggregate.py [--runs 1000] [--steps 150] [--keep DIR]

Generates a study of ``--runs`` runs (a Fig. 1-style sweep with many seeds; traces written
with the real ``gcstudy.study.traces.write``, default 150 steps with the default evaluation
cadence), then times reading them into one dataset and writing ``study.nc``. Prints the
total time and the time per trace.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from gcstudy import testing
from gcstudy.analysis import aggregate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--keep", help="generate into this folder (reused if it exists)")
    args = parser.parse_args()

    config = testing.small_config(steps=args.steps, studies=("sweeps",))
    study = config["studies"]["sweeps"]
    points = 1 + sum(len(v) for v in study["sweeps"].values())
    study["seeds"] = list(range(math.ceil(args.runs / points)))
    config["defaults"].update({"eval_every": 50, "eval_log_points": 12})

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_aggregate_"))
    start = time.perf_counter()
    if (root / "run_table.json").exists():
        table = aggregate.load_table(root / "run_table.json")
    else:
        table, _ = testing.make_study(root, config, seed=0)
    generated = time.perf_counter() - start
    table["runs"] = table["runs"][: args.runs]
    n = len(table["runs"])
    print(f"generated {n} traces in {generated:.1f} s ({root})")

    start = time.perf_counter()
    dataset = aggregate.aggregate(table, root / "runs", allow_generated=True)
    read = time.perf_counter() - start
    aggregate.write(dataset, root / "study.nc")
    total = time.perf_counter() - start
    size = (root / "study.nc").stat().st_size / 2**20
    print(
        f"aggregate: {n} traces x {dataset.sizes['step']} steps in {total:.1f} s "
        f"(read + stack {read:.1f} s, write {total - read:.1f} s, {size:.1f} MiB): "
        f"{1000 * total / n:.1f} ms per trace; target <= 60 s for 1,000: "
        f"{'met' if total * 1000 / n <= 60 else 'MISSED'}"
    )
    assert np.isfinite(dataset["gc"].values).any()


if __name__ == "__main__":
    main()
