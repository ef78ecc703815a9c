"""Configs of generated studies and their empty study-file layout.

``small_config`` is a small study of every experiment (fast to write as files);
``shaped_config`` has the shape the claims are calibrated at: every sweep with ``values``
values (the base point included) times ``seeds`` seeds, as the default study (about 4 x 3)
and the paper grid (5 x 3) have. ``layout`` expands a config with the real
``gcstudy.study.config`` and builds the study file it would aggregate to with the real
``aggregate.build_dataset``: the generated values then fill exactly the layout of a real
``study.nc``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import xarray as xr

from gcstudy.study import config as study_config
from gcstudy.study import traces
from gcstudy.study.datasets import get_spec

GENERATED_BY = "gcstudy.testing: a generated study with planted laws, not measurements"
# Sweep values around the base point (lr 0.05, batch 32, L2 0, penalty 0), smallest first.
SWEEP_VALUES = {
    "lr": [0.01, 0.02, 0.05, 0.1, 0.2],
    "batch_size": [16, 32, 64, 128, 256],
    "l2": [0.0, 1e-5, 1e-4, 5e-4, 1e-3],
    "gc_penalty": [0.0, 1e-4, 1e-3, 1e-2, 1e-1],
}
BASE = {"lr": 0.05, "batch_size": 32, "l2": 0.0, "gc_penalty": 0.0}


@dataclass
class Layout:
    """A config, its run table and the study-file layout of its runs (values all 1)."""

    config: dict
    table: dict
    template: xr.Dataset


def small_config(
    steps: int = 40, seeds: tuple[int, ...] = (0, 1, 2), studies: tuple[str, ...] | None = None
) -> dict:
    """Every experiment (E1, E4, E2, E3, E5) with 3 values per sweep: quick to write as files."""
    config = shaped_config(values=3, seeds=len(seeds), bound_seeds=len(seeds), steps=steps)
    for study in config["studies"].values():
        if study["experiment"] != "E2":
            study["seeds"] = list(seeds)
    if studies is not None:
        config["studies"] = {k: v for k, v in config["studies"].items() if k in studies}
    return config


def shaped_config(values: int = 4, seeds: int = 3, bound_seeds: int = 3, steps: int = 300) -> dict:
    """E1 (lr, batch, L2), E4 (the same sweeps, few-shot evaluation), E2, E3 and E5 (GC
    penalty) on the embedded data sets, each sweep ``values`` values long (base included),
    with ``seeds`` seeds (E3: ``bound_seeds``; E2: one) and ``steps`` SGD steps per run."""
    sweeps = {f: _sweep(f, values) for f in ("lr", "batch_size", "l2")}
    penalty = {"gc_penalty": _sweep("gc_penalty", values)}
    seed_list, bound_list = list(range(seeds)), list(range(bound_seeds))
    return {
        "results": "results",
        "data_root": "data",
        "share_runs": False,  # every run of every study is its own generated draw
        "defaults": {
            "model": "vgg11",
            "width": 0.125,
            "steps": steps,
            "eval_every": max(steps // 6, 1),
            "eval_log_points": 4,
            "feature_examples": 400,
            "gc_examples": 128,
        },
        "studies": {
            "sweeps": _study("E1", "generated Fig. 1 sweeps", "digits", seed_list, sweeps),
            "transfer": _study(
                "E4", "generated Fig. 4 transfer", "digits_fs", seed_list, sweeps, ["fewshot"]
            ),
            "estimators": _study(
                "E2", "generated Fig. 2 estimators", "digits", [0], evaluations=["gc_estimators"]
            ),
            "bound": _study("E3", "generated Fig. 3 bound", "digits", bound_list, None, ["bound"]),
            "penalty": _study("E5", "generated GC penalty", "digits", seed_list, penalty),
        },
    }


def _sweep(factor: str, values: int) -> list:
    """The swept values of ``factor`` besides the base: ``values`` consecutive entries of
    ``SWEEP_VALUES`` around the base value (included in the count), base left out."""
    chosen = _around_base(SWEEP_VALUES[factor], BASE[factor], values)
    return [v for v in chosen if v != BASE[factor]]


def _study(
    experiment: str,
    description: str,
    dataset: str,
    seeds: list[int],
    sweeps: dict | None = None,
    evaluations: list[str] | None = None,
) -> dict:
    """One study of a generated config at the base point ``BASE`` (keys in the config's
    order: sweeps, then seeds, then evaluations)."""
    study = {
        "experiment": experiment,
        "description": description,
        "dataset": dataset,
        "base": dict(BASE),
    }
    if sweeps is not None:
        study["sweeps"] = copy.deepcopy(sweeps)
    study["seeds"] = seeds
    if evaluations is not None:
        study["evaluations"] = evaluations
    return study


def _around_base(candidates: list, base, count: int) -> list:
    """``count`` consecutive candidates that contain the base value, as centred as possible."""
    centre = candidates.index(base)
    start = min(max(centre - count // 2, 0), len(candidates) - count)
    return candidates[start : start + count]


def layout(config: dict) -> Layout:
    """Expand ``config`` and build its study-file layout (every value 1, every run complete)."""
    from gcstudy.analysis import aggregate

    config = copy.deepcopy(config)
    study_config.validate(config)
    table = study_config.run_table(config)  # runs evaluated where the clocks read them
    records = [aggregate.RunRecord(entry, _placeholder_trace(entry)) for entry in table["runs"]]
    for record in records:
        evaluations = record.entry.get("evaluations", [])
        if "fewshot" in evaluations:
            record.fewshot = _placeholder_fewshot()
        if "gc_estimators" in evaluations:
            record.gc_estimators = _placeholder_gc_estimators()
    template = aggregate.build_dataset(records, table)
    template.attrs["generated_by"] = GENERATED_BY
    return Layout(config, table, template)


def _placeholder_trace(entry: dict) -> traces.Trace:
    from gcstudy.study.spec import RunSpec

    spec = RunSpec.from_dict(entry["spec"])
    steps = np.array(spec.evaluation_steps, dtype=np.int64)
    dataset = get_spec(spec.dataset, spec.data_root)
    classes = np.array(dataset.split_classes("train"), dtype=np.int64)
    names = [n for n, v in traces.VARIABLES.items() if dataset.transfer or not v.transfer_only]
    values = {
        n: np.ones((len(steps), len(classes)) if n == "gc_per_class" else len(steps)) for n in names
    }
    attrs = {
        "spec": entry["spec"],
        "status": "complete",
        "device": "generated",
        "git_commit": "generated",
        "versions": {"gcstudy": "generated"},
        "facts": {"poincare_constant": 1.0, "test_examples": 1.0},
        "generated_by": GENERATED_BY,
    }
    return traces.Trace(steps, classes, values, attrs)


def _placeholder_fewshot() -> xr.Dataset:
    ones = np.ones((1, 2))
    return xr.Dataset(
        {
            "accuracy": (("classifier", "shots"), ones, {"units": "1"}),
            "ci95": (("classifier", "shots"), ones, {"units": "1"}),
            "target_nc": ((), 1.0, {"units": "1"}),
        },
        coords={"classifier": ["ncc"], "shots": [1, 5]},
        attrs={"ways": 5, "queries": 15, "episodes": 10000, "status": "complete"},
    )


ESTIMATOR_SETTINGS = (
    [("examples", b) for b in (4, 8, 16, 32)]
    + [("hutchinson", b) for b in (1, 2, 4)]
    + [("outputs", b) for b in (1, 4, 16)]
    + [("mask", b) for b in (0.002, 0.005, 0.01)]
)


def _placeholder_gc_estimators(repeats: int = 6) -> xr.Dataset:
    n = len(ESTIMATOR_SETTINGS)
    return xr.Dataset(
        {
            "estimate": (("setting", "repeat"), np.ones((n, repeats)), {"units": "1"}),
            "reported_stderr": (("setting", "repeat"), np.ones((n, repeats)), {"units": "1"}),
            "cost": ("setting", np.array([b for _, b in ESTIMATOR_SETTINGS], float)),
            "seconds": ("setting", np.full(n, 0.01), {"units": "s"}),
            "exact": ((), 1.0, {"units": "1"}),
            "exact_stderr": ((), 0.01, {"units": "1"}),
        },
        coords={
            "setting": np.arange(n),
            "repeat": np.arange(repeats),
            "estimator": ("setting", [e for e, _ in ESTIMATOR_SETTINGS]),
            "budget": ("setting", [float(b) for _, b in ESTIMATOR_SETTINGS]),
        },
        attrs={"examples": 64, "outputs": 128},
    )
