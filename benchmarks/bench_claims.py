"""Calibrate the claim decisions by simulation: false-positive rate and power per claim.

    python benchmarks/bench_claims.py [--replicates 200] [--sizes default paper]
                                      [--config FILE] [--workers 2] [--permutations 2000]
                                      [--scenarios planted seed_1.0 ...]

Generates studies in memory with ``gcstudy.testing`` (the layout of a real ``study.nc``,
filled by known laws; no files), runs ``gcstudy.analysis.claims.analyse`` on each (the
placebo and the mixed-model sensitivity fit are skipped: they never decide), and prints for
every scenario and claim the share of replicates that came out *supported* (the
false-positive rate where the claim is false, the power where it is true) and
*contradicted*, with Monte-Carlo standard errors, then the same per part.

Sizes: ``default`` is the default study's shape (every sweep 4 values x 3 seeds, E3 3
seeds), ``paper`` the paper grid's (5 values x 3 seeds, E3 5 seeds); ``--config FILE``
adds the shape of any study config (e.g. config/config.yaml).

Scenarios (laws in ``gcstudy.testing.laws``; realistic planted effects: GC ~2x lower over
a 20x learning-rate sweep, run-to-run noise sd 0.15 in log GC):
  planted        every claim true
  no_effect      no factor effect on GC (claim 1 false); bound vacuous (claim 4 false)
  nc_independent NC independent of GC (claim 2 false); error twice the GC bound (4 false)
  target_indep.  target NC independent of source GC (claim 3 false); error independent of
                 the bound, falling alike (claim 4 false: it does not track)
  seed_0.3/1.0   no effect of any kind (claims 1-3 false), with shared seed effects of sd
                 0.3 or 1.0 on GC, NC and target NC, mostly early in training
  progress_only  GC, NC, target NC and loss depend only on training progress at
                 run-specific rates (claims 2 and 3 false; claim 1 holds through progress)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

NULL = {"nc_coupling": 0.0, "target_coupling": 0.0, "speed_exponents": (0.0, 0.0)}
NO_EFFECT = {"effects": {"lr": 0.0, "batch_size": 0.0, "l2": 0.0, "gc_penalty": 0.0}}
# name -> (laws, truth of claims 1-4: True = power, False = false-positive rate, None = n/a)
SCENARIOS = {
    "planted": ({}, (True, True, True, True)),
    "no_effect": (
        {**NO_EFFECT, "speed_exponents": (0.0, 0.0), "nc_final": 0.2, "poincare": 150.0},
        (False, True, True, False),
    ),
    "nc_independent": ({"nc_coupling": 0.0, "error": "violated"}, (True, False, True, False)),
    "target_indep": ({"target_coupling": 0.0, "error": "independent"}, (True, True, False, False)),
    "seed_0.3": ({**NO_EFFECT, **NULL, "seed_sd": 0.3}, (False, False, False, True)),
    "seed_1.0": ({**NO_EFFECT, **NULL, "seed_sd": 1.0}, (False, False, False, True)),
    "progress_only": ({"progress_only": True, "tau": 0.5}, (None, False, False, None)),
}
SIZES = {"default": (4, 3, 3), "paper": (5, 3, 5)}  # values per sweep, seeds, E3 seeds
_LAYOUTS: dict = {}


def layout_of(size: str, config_path: str | None):
    from gcstudy import testing, yamlio

    if size not in _LAYOUTS:
        if size in SIZES:
            values, seeds, bound_seeds = SIZES[size]
            config = testing.shaped_config(values, seeds, bound_seeds)
        else:
            config = yamlio.load(config_path)
        _LAYOUTS[size] = testing.layout(config)
        gc.freeze()  # statsmodels' Holm calls gc.collect(): keep the heap it walks small
    return _LAYOUTS[size]


def replicate_chunk(job) -> tuple[str, str, Counter, float]:
    """Run replicates ``start..stop`` of one (size, scenario); count the verdicts."""
    from gcstudy import testing
    from gcstudy.analysis import claims

    size, config_path, scenario, start, stop, permutations = job
    chosen = layout_of(size, config_path)
    laws = testing.Laws(**SCENARIOS[scenario][0])
    counts: Counter = Counter()
    begin = time.process_time()
    for replicate in range(start, stop):
        seed = np.random.SeedSequence([list(SCENARIOS).index(scenario), replicate, len(size)])
        rng = np.random.default_rng(seed)
        dataset = testing.simulate(chosen, laws, rng)
        settings = claims.Settings(permutations=permutations, seed=int(rng.integers(2**31)))
        results = claims.analyse(dataset, settings, extras=False)
        for key in [*results.claims, *results.parts]:
            counts[(str(key), results.verdict(key))] += 1
    return size, scenario, counts, time.process_time() - begin


def rate(count: int, n: int) -> str:
    p = count / n
    return f"{p:5.3f} +/- {math.sqrt(max(p * (1 - p), 1 / n) / n):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["default", "paper"], choices=list(SIZES))
    parser.add_argument("--config", help="also calibrate at this config's shape")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--permutations", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = parser.parse_args()

    sizes = list(args.sizes) + ([os.path.basename(args.config)] if args.config else [])
    jobs = [
        (
            size,
            args.config,
            scenario,
            start,
            min(start + args.chunk, args.replicates),
            args.permutations,
        )
        for size in sizes
        for scenario in args.scenarios
        for start in range(0, args.replicates, args.chunk)
    ]
    load = os.getloadavg()[0]
    wall = time.perf_counter()
    totals: dict = {}
    cpu = 0.0
    with ProcessPoolExecutor(args.workers) as pool:
        for size, scenario, counts, seconds in pool.map(replicate_chunk, jobs):
            totals.setdefault((size, scenario), Counter()).update(counts)
            cpu += seconds
    wall = time.perf_counter() - wall
    n = args.replicates
    goal = 0.05 + 2 * math.sqrt(0.05 * 0.95 / n)
    print(
        f"\n{n} replicates per scenario and size, {args.permutations} permutations, alpha 0.05; "
        f"{wall:.0f} s wall, {cpu / (n * len(totals)) * 1000:.0f} ms CPU per replicate, "
        f"{args.workers} workers, load average {load:.1f} at start"
    )
    print(f"false-positive goal: <= 0.05 + 2 MC SE = {goal:.3f}\n")
    print(
        f"{'size':8} {'scenario':15} {'claim':5} {'truth':6} {'supported':>16} "
        f"{'contradicted':>16}  check"
    )
    for (size, scenario), counts in totals.items():
        truths = SCENARIOS[scenario][1]
        for claim, truth in zip("1234", truths, strict=True):
            supported, contradicted = counts[(claim, "supported")], counts[(claim, "contradicted")]
            label = {True: "true", False: "false", None: "n/a"}[truth]
            check = ""
            if truth is False:
                check = "FPR ok" if supported / n <= goal else "FPR ABOVE GOAL"
            elif truth:
                check = f"power {supported / n:.2f}"
            print(
                f"{size:8} {scenario:15} {claim:5} {label:6} {rate(supported, n):>16} "
                f"{rate(contradicted, n):>16}  {check}"
            )
    print("\nper part: share supported (share contradicted)")
    parts = sorted({k for c in totals.values() for k, _ in c if not k.isdigit()})
    print(f"{'size':8} {'scenario':15} " + " ".join(f"{p:>11}" for p in parts))
    for (size, scenario), counts in totals.items():
        cells = [
            f"{counts[(p, 'supported')] / n:.2f}({counts[(p, 'contradicted')] / n:.2f})"
            for p in parts
        ]
        print(f"{size:8} {scenario:15} " + " ".join(f"{c:>11}" for c in cells))


if __name__ == "__main__":
    main()
