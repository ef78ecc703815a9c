"""Generated studies with planted effects, written with the real writers.

For tests and benchmarks of the analysis: ``make_study`` expands a real config with
``gcstudy.config.run_table``, then writes for every run a trace with ``gcstudy.traces.write``
(and ``fewshot.nc`` / ``gc_estimators.nc`` with ``gcstudy.evaluate.write_netcdf`` where the
study asks for them) whose values follow known laws:

* final GC: ``log GC = log g0 + sum_f effect[f] * log(x_f / base_f) + noise`` (for a factor
  whose base is 0, ``x_f / base_f`` is replaced by ``x_f / smallest positive value + 1``);
* geometric collapse = ``k_g * GC ** collapse_exponent`` and NC = ``k_n * GC ** nc_exponent``
  (times log-normal noise), at every step; GC relaxes from its initial value to the final one;
* target NC = ``k_t * GC ** target_exponent``, few-shot accuracy decreasing in target NC with
  ``accuracy_slope`` per unit of log target NC;
* NCC test error = ``bound_fraction * (B / (1 + B)) ** error_power`` (at most 0.99) with B
  the CDNV bound: below the bound and increasing with it for the defaults (0.5, 1); a
  negative power makes it fall as the bound rises (and, small, exceed it).

Setting an exponent or effect to 0 plants a null effect; a sign flip plants a reversed one.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from gcstudy import config as study_config
from gcstudy import traces

EXPECTED_EFFECTS = {"lr": -0.5, "batch_size": 0.5, "l2": -0.3, "gc_penalty": -0.3}


@dataclass
class Planted:
    """The laws the generated values follow (see the module docstring)."""

    effects: dict[str, float] = field(default_factory=lambda: dict(EXPECTED_EFFECTS))
    collapse_exponent: float = 1.0
    nc_exponent: float = 1.0
    target_exponent: float = 1.0
    accuracy_slope: float = -0.08
    bound_fraction: float = 0.5
    error_power: float = 1.0
    noise: float = 0.05
    g0: float = 20.0


def small_config(
    steps: int = 40, seeds: tuple[int, ...] = (0, 1, 2), studies: tuple[str, ...] | None = None
) -> dict:
    """A config shaped like the default study (E1, E4, E2, E3, E5), small and fast."""
    base = {"lr": 0.05, "batch_size": 32, "l2": 0.0, "gc_penalty": 0.0}
    config = {
        "results": "results",
        "data_root": "data",
        "defaults": {"model": "vgg11", "width": 0.25, "steps": steps, "eval_every": 10},
        "studies": {
            "sweeps": {
                "experiment": "E1",
                "description": "Fig. 1 style sweeps",
                "dataset": "digits",
                "base": dict(base),
                "sweeps": {"lr": [0.02, 0.1], "batch_size": [16, 64], "l2": [0.0005, 0.002]},
                "seeds": list(seeds),
            },
            "transfer": {
                "experiment": "E4",
                "description": "Fig. 4 style transfer",
                "dataset": "digits_fs",
                "base": dict(base),
                "sweeps": {"lr": [0.02, 0.1], "batch_size": [16, 64]},
                "seeds": list(seeds),
                "evaluations": ["fewshot"],
            },
            "estimators": {
                "experiment": "E2",
                "description": "Fig. 2 style estimators",
                "dataset": "digits",
                "base": {"lr": 0.05, "batch_size": 32},
                "seeds": [0],
                "evaluations": ["gc_estimators"],
            },
            "bound": {
                "experiment": "E3",
                "description": "Fig. 3 style bound",
                "dataset": "digits",
                "base": {"lr": 0.05, "batch_size": 32},
                "seeds": list(seeds),
                "evaluations": ["bound"],
            },
            "penalty": {
                "experiment": "E5",
                "description": "GC penalty",
                "dataset": "digits",
                "base": dict(base),
                "sweeps": {"gc_penalty": [0.0001, 0.001, 0.01]},
                "seeds": list(seeds),
            },
        },
    }
    if studies is not None:
        config["studies"] = {k: v for k, v in config["studies"].items() if k in studies}
    return config


def make_study(
    root: str | Path,
    config: dict | None = None,
    planted: Planted | None = None,
    seed: int = 0,
    diverge: tuple[str, ...] = (),
) -> dict:
    """Write ``root/run_table.json`` and every run's files under ``root/runs``; returns the
    run table. Runs whose id is in ``diverge`` stop early with status ``diverged``."""
    root = Path(root)
    config = copy.deepcopy(config or small_config())
    planted = planted or Planted()
    study_config.validate(config)
    table = study_config.run_table(config)
    study_config.write_json(table, root / "run_table.json")
    rng = np.random.default_rng(seed)
    for entry in table["runs"]:
        write_run(
            root / "runs" / entry["run_id"],
            entry,
            table,
            planted,
            rng,
            diverged=entry["run_id"] in diverge,
        )
    return table


def final_gc(entry: dict, table: dict, planted: Planted, rng: np.random.Generator) -> float:
    """The planted final GC of a run."""
    study = table["studies"][entry["study"]]
    log_gc = np.log(planted.g0)
    for factor, effect in planted.effects.items():
        value, base = float(entry["point"][factor]), float(study["base"][factor])
        if base > 0:
            ratio = value / base
        else:
            positive = [v for v in study["sweeps"].get(factor, []) if v > 0] or [1.0]
            ratio = value / min(positive) + 1.0
        log_gc += effect * np.log(ratio)
    return float(np.exp(log_gc + planted.noise * rng.standard_normal()))


def write_run(
    folder: Path,
    entry: dict,
    table: dict,
    planted: Planted,
    rng: np.random.Generator,
    diverged: bool = False,
) -> None:
    """One run's trace (and evaluation files) following the planted laws."""
    from gcstudy.spec import RunSpec

    spec = RunSpec.from_dict(entry["spec"])
    steps = np.array(spec.evaluation_steps, dtype=np.int64)
    if diverged:
        steps = steps[: max(2, len(steps) // 2)]
    transfer = spec.dataset.endswith("_fs")
    classes = np.arange(5 if transfer else 10, dtype=np.int64)
    n, c = len(steps), len(classes)
    final = final_gc(entry, table, planted, rng)
    start = planted.g0 * 2.0
    progress = 1 - np.exp(-steps / max(spec.steps / 4, 1))
    gc = np.exp(np.log(start) + (np.log(final) - np.log(start)) * progress)

    def noisy(values):
        return values * np.exp(planted.noise * rng.standard_normal(values.shape))

    geometric = noisy(0.01 * gc**planted.collapse_exponent)
    nc = noisy(0.02 * gc**planted.nc_exponent)
    bound_cdnv = 4 * (c - 1) * nc
    ratio = bound_cdnv / (1 + bound_cdnv)
    ncc_test = np.clip(planted.bound_fraction * ratio**planted.error_power, 0, 0.99)
    values = {
        "examples_seen": steps * spec.batch_size,
        "wall_time": steps * 0.1,
        "train_loss": 2.3 * np.exp(-steps / 20),
        "train_accuracy": 1 - 0.9 * np.exp(-steps / 20),
        "test_loss": 2.3 * np.exp(-steps / 25),
        "test_accuracy": 1 - 0.9 * np.exp(-steps / 25),
        "gc": gc,
        "gc_stderr": 0.02 * gc,
        "gc_per_class": gc[:, None] * (1 + 0.1 * np.arange(c))[None, :],
        "geometric_collapse": geometric,
        "nc_train": nc,
        "nc_test": nc * 1.2,
        "nc1_train": nc * 3,
        "ncc_train_error": ncc_test * 0.8,
        "ncc_test_error": ncc_test,
        "bound_cdnv": bound_cdnv,
        "bound_gc": 4 * (c - 1) * 2.0 * geometric,
    }
    target_nc = None
    if transfer:
        target_nc = noisy(0.05 * gc**planted.target_exponent)
        accuracy = 0.7 + planted.accuracy_slope * np.log(target_nc / 0.05)
        accuracy = np.clip(accuracy + 0.2 * planted.noise * rng.standard_normal(n), 0.2, 1)
        for shots, shift in ((1, -0.1), (5, 0.0)):
            values[f"fewshot_{shots}shot_accuracy"] = np.clip(accuracy + shift, 0, 1)
            values[f"fewshot_{shots}shot_ci95"] = np.full(n, 0.01)
            values[f"fewshot_{shots}shot_bound"] = 16 * (1 + 1 / shots) * target_nc
        values["target_nc"] = target_nc
    if diverged:
        for name in ("gc", "nc_train", "geometric_collapse"):
            values[name][-1] = np.nan
    attrs = {
        "spec": entry["spec"],
        "versions": {"gcstudy": "synthetic"},
        "git_commit": "synthetic",
        "device": "cpu",
        "seed": entry["seed"],
        "classes": classes.tolist(),
        "facts": {"poincare_constant": 2.0, "test_examples": 355},
    }
    folder.mkdir(parents=True, exist_ok=True)
    traces.write(
        folder / "trace.h5", steps, classes, values, attrs, "diverged" if diverged else "complete"
    )
    evaluations = entry.get("evaluations", [])
    if "fewshot" in evaluations:
        write_fewshot(folder, values, target_nc, diverged)
    if "gc_estimators" in evaluations:
        write_gc_estimators(folder, float(gc[-1]), rng, diverged)


def write_fewshot(folder: Path, values: dict, target_nc, diverged: bool) -> None:
    from gcstudy.evaluate import write_netcdf

    accuracy = np.array(
        [[values["fewshot_1shot_accuracy"][-1], values["fewshot_5shot_accuracy"][-1]]]
    )
    if diverged:
        accuracy[:] = np.nan
    dataset = xr.Dataset(
        {
            "accuracy": (("classifier", "shots"), accuracy, {"units": "1"}),
            "ci95": (("classifier", "shots"), np.full_like(accuracy, 0.003), {"units": "1"}),
            "target_nc": ((), np.nan if diverged else float(target_nc[-1]), {"units": "1"}),
        },
        coords={"classifier": ["ncc"], "shots": [1, 5]},
        attrs={"ways": 5, "queries": 15, "episodes": 10000, "status": "complete"},
    )
    write_netcdf(dataset, folder / "fewshot.nc")


def write_gc_estimators(folder: Path, exact: float, rng: np.random.Generator, diverged: bool):
    from gcstudy.evaluate import write_netcdf

    settings = (
        [("examples", b) for b in (4, 8, 16, 32)]
        + [("hutchinson", b) for b in (1, 2, 4)]
        + [("outputs", b) for b in (1, 4, 16)]
        + [("mask", b) for b in (0.002, 0.005, 0.01)]
    )
    repeats = 6
    spread = np.array([0.4 / np.sqrt(b if b >= 1 else b * 1000) for _, b in settings])
    estimate = exact * (1 + spread[:, None] * rng.standard_normal((len(settings), repeats)))
    dataset = xr.Dataset(
        {
            "estimate": (("setting", "repeat"), estimate, {"units": "1"}),
            "reported_stderr": (
                ("setting", "repeat"),
                exact * spread[:, None] * np.ones((1, repeats)),
                {"units": "1"},
            ),
            "cost": ("setting", np.array([b for _, b in settings], float), {"units": "products"}),
            "seconds": ("setting", np.full(len(settings), 0.01), {"units": "s"}),
            "exact": ((), np.nan if diverged else exact, {"units": "1"}),
            "exact_stderr": ((), 0.01 * exact, {"units": "1"}),
        },
        coords={
            "setting": np.arange(len(settings)),
            "repeat": np.arange(repeats),
            "estimator": ("setting", [e for e, _ in settings]),
            "budget": ("setting", [float(b) for _, b in settings]),
        },
        attrs={"examples": 64, "outputs": 128, "settings": json.dumps({})},
    )
    write_netcdf(dataset, folder / "gc_estimators.nc")
