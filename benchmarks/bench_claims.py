"""Calibrate the claim decisions by simulation, in both directions, with power.

    python benchmarks/bench_claims.py [--replicates 200] [--sizes default paper]
                                      [--config FILE] [--workers 2] [--permutations 2000]
                                      [--scenarios planted apart ...]

Generates studies in memory with ``gcstudy.testing`` (the layout of a real ``study.nc``,
every run evaluated where the design clocks read it, filled by known laws; no files), runs
``gcstudy.analysis.claims.analyse`` on each (what never decides is skipped) and prints,
for every size, scenario and claim, the share of replicates that came out *supported*
and *contradicted*, with Monte-Carlo standard errors, checked against the goal
``<= 0.05 + 2 MC SE``:

* P(supported | claim false or no relation): a false positive;
* P(contradicted | claim true or no relation): a false contradiction;
* the power: P(supported | claim true) and P(contradicted | claim false);

then the same shares per part. The scenarios and their declared truths are
``gcstudy.testing.laws.SCENARIOS`` (claims 1-3 judged at the design clocks; the test
suite checks each declaration against the noise-free laws): planted effects, nulls (no
effect, seed effects, progress only), NC or target NC independent of GC, a train loss
downstream of NC (the issue-18 law), mechanisms that move GC and NC apart, an effect that
depends on the clock, runs at a plateau and runs still falling.

Sizes: ``default`` is the default study's shape (every sweep 4 values x 3 seeds, E3 3
seeds), ``paper`` the paper grid's (5 values x 3 seeds, E3 5 seeds); ``--config FILE``
adds the shape of any study config (e.g. config/config.yaml).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from gcstudy.testing.laws import FALSE, NONE, SCENARIOS, TRUE

SIZES = {"default": (4, 3, 3), "paper": (5, 3, 5)}  # values per sweep, seeds, E3 seeds
ALPHA = 0.05
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
    from gcstudy.analysis import claims
    from gcstudy.testing.laws import scenario_study

    size, config_path, scenario, start, stop, permutations = job
    chosen = layout_of(size, config_path)
    counts: Counter = Counter()
    begin = time.process_time()
    for replicate in range(start, stop):
        dataset = scenario_study(chosen, scenario, replicate)
        settings = claims.Settings(permutations=permutations, seed=replicate)
        results = claims.analyse(dataset, settings, extras=False)
        for key in [*results.claims, *results.parts]:
            counts[(str(key), results.verdict(key))] += 1
    return size, scenario, counts, time.process_time() - begin


def rate(count: int, n: int) -> tuple[float, float]:
    """A share and its Monte-Carlo standard error (at least that of 1/n)."""
    p = count / n
    return p, math.sqrt(max(p * (1 - p), 1 / n) / n)


def checks(truth: str, supported: float, contradicted: float, goal: float) -> str:
    """The goals a claim's rates must meet under its truth, and its power."""
    out = []
    if truth in (FALSE, NONE):
        out.append("P(sup) ok" if supported <= goal else "P(sup) ABOVE GOAL")
    if truth in (TRUE, NONE):
        out.append("P(con) ok" if contradicted <= goal else "P(con) ABOVE GOAL")
    if truth == TRUE:
        out.append(f"power {supported:.2f}")
    if truth == FALSE:
        out.append(f"power to contradict {contradicted:.2f}")
    return "; ".join(out)


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

    permutations = args.permutations
    sizes = list(args.sizes) + ([os.path.basename(args.config)] if args.config else [])
    jobs = [
        (size, args.config, scenario, start, min(start + args.chunk, args.replicates), permutations)
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
    goal = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / n)
    print(
        f"\n{n} replicates per scenario and size, {args.permutations} permutations, alpha "
        f"{ALPHA}; {wall:.0f} s wall, {cpu / (n * len(totals)):.2f} s CPU per replicate, "
        f"{args.workers} workers, load average {load:.1f} at start"
    )
    print(f"goal for an error rate: <= 0.05 + 2 MC SE = {goal:.3f}\n")
    print(
        f"{'size':8} {'scenario':26} {'claim':5} {'truth':11} {'P(supported)':>15} "
        f"{'P(contradicted)':>15}  check"
    )
    failures = []
    for (size, scenario), counts in totals.items():
        for claim, truth in zip("1234", SCENARIOS[scenario].truth, strict=True):
            supported = rate(counts[(claim, "supported")], n)
            contradicted = rate(counts[(claim, "contradicted")], n)
            check = checks(truth, supported[0], contradicted[0], goal)
            if "ABOVE" in check:
                failures.append(f"{size} {scenario} claim {claim}")
            print(
                f"{size:8} {scenario:26} {claim:5} {truth:11} "
                f"{supported[0]:6.3f} +/- {supported[1]:.3f} "
                f"{contradicted[0]:6.3f} +/- {contradicted[1]:.3f}  {check}"
            )
    print("\nerror rates above the goal: " + ("; ".join(failures) if failures else "none"))
    print("\nper part: share supported (share contradicted)")
    parts = sorted({k for c in totals.values() for k, _ in c if not k.isdigit()})
    print(f"{'size':8} {'scenario':26} " + " ".join(f"{p:>11}" for p in parts))
    for (size, scenario), counts in totals.items():
        cells = [
            f"{counts[(p, 'supported')] / n:.2f}({counts[(p, 'contradicted')] / n:.2f})"
            for p in parts
        ]
        print(f"{size:8} {scenario:26} " + " ".join(f"{c:>11}" for c in cells))
    print("\nscenarios:")
    for name in args.scenarios:
        print(f"  {name:26} {SCENARIOS[name].what}")


if __name__ == "__main__":
    main()
