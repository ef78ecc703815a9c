"""A generated study written as run folders with the real writers
(``gcstudy.study.traces.write``, ``gcstudy.measure.evaluations.write_netcdf``), so that
``gcstudy aggregate`` reads it like a real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from gcstudy.study import config as study_config
from gcstudy.study import traces
from gcstudy.study.runfolder import RunFolder, runs_root
from gcstudy.testing.laws import Laws, diverge, simulate
from gcstudy.testing.layouts import GENERATED_BY, Layout, layout, small_config


def make_study(
    root: str | Path,
    config: dict | None = None,
    laws: Laws | None = None,
    seed: int = 0,
    diverged: tuple[str, ...] = (),
) -> tuple[dict, xr.Dataset]:
    """Generate a study (``small_config()`` and ``Laws()`` unless given), write it under
    ``root`` (``run_table.json``, ``runs/<run_id>/...``); returns the run table and the
    generated dataset (what ``aggregate`` must read back)."""
    chosen = layout(config or small_config())
    dataset = simulate(chosen, laws or Laws(), np.random.default_rng(seed))
    if diverged:
        dataset = diverge(dataset, diverged)
    write_study(root, chosen, dataset)
    return chosen.table, dataset


def write_study(root: str | Path, chosen: Layout, dataset: xr.Dataset) -> None:
    root = Path(root)
    study_config.write_json(chosen.table, root / "run_table.json")
    for entry in chosen.table["runs"]:
        run = dataset.sel(run=entry["run_id"])
        folder = RunFolder(runs_root(root) / entry["run_id"])
        folder.path.mkdir(parents=True, exist_ok=True)
        _write_trace(folder, entry, run)
        evaluations = entry.get("evaluations", [])
        if "fewshot" in evaluations:
            _write_fewshot(folder, run)
        if "gc_estimators" in evaluations:
            _write_gc_estimators(folder, run)


def _write_trace(folder: RunFolder, entry: dict, run: xr.Dataset) -> None:
    planned = set(_planned_steps(entry))
    steps = np.array([s for s in run["step"].values if int(s) in planned], dtype=np.int64)
    if str(run["status"].values) == "diverged":
        steps = steps[steps <= int(run["final_step"].values)]
    classes = run["class"].values[np.isfinite(run["gc_per_class"].values).any(axis=0)]
    at = run.sel(step=steps)
    values = {}
    for name, variable in traces.VARIABLES.items():
        if name not in run or (variable.transfer_only and not np.isfinite(at[name].values).any()):
            continue
        chosen = at[name].sel({"class": classes}) if name == "gc_per_class" else at[name]
        values[name] = chosen.values
    attrs = {
        "spec": entry["spec"],
        "versions": {"gcstudy": "generated"},
        "git_commit": "generated",
        "device": "generated",
        "seed": entry["seed"],
        "classes": classes.tolist(),
        "facts": {
            "poincare_constant": float(run["poincare_constant"].values),
            "test_examples": float(run["test_examples"].values),
        },
        "generated_by": GENERATED_BY,
    }
    traces.write(folder.trace, steps, classes, values, attrs, str(run["status"].values))


def _planned_steps(entry: dict) -> list[int]:
    from gcstudy.study.spec import RunSpec

    return RunSpec.from_dict(entry["spec"]).evaluation_steps


def _write_fewshot(folder: RunFolder, run: xr.Dataset) -> None:
    from gcstudy.measure.evaluations import write_netcdf

    table = xr.Dataset(
        {
            "accuracy": (("classifier", "shots"), run["fewshot_accuracy"].values, {"units": "1"}),
            "ci95": (("classifier", "shots"), run["fewshot_ci95"].values, {"units": "1"}),
            "target_nc": ((), float(run["fewshot_target_nc"].values), {"units": "1"}),
        },
        coords={"classifier": run["classifier"].values, "shots": run["shots"].values},
        attrs={"ways": 5, "queries": 15, "episodes": 10000, "generated_by": GENERATED_BY},
    )
    write_netcdf(table, folder.evaluation_file("fewshot"))


def _write_gc_estimators(folder: RunFolder, run: xr.Dataset) -> None:
    from gcstudy.measure.evaluations import write_netcdf

    table = xr.Dataset(
        {
            "estimate": (("setting", "repeat"), run["gcest_estimate"].values, {"units": "1"}),
            "reported_stderr": (
                ("setting", "repeat"),
                run["gcest_reported_stderr"].values,
                {"units": "1"},
            ),
            "cost": ("setting", run["gcest_cost"].values, {"units": "products"}),
            "seconds": ("setting", run["gcest_seconds"].values, {"units": "s"}),
            "exact": ((), float(run["gcest_exact"].values), {"units": "1"}),
            "exact_stderr": ((), float(run["gcest_exact_stderr"].values), {"units": "1"}),
        },
        coords={
            "setting": run["setting"].values,
            "repeat": run["repeat"].values,
            "estimator": ("setting", run["estimator"].values),
            "budget": ("setting", run["budget"].values),
        },
        attrs={"examples": 64, "outputs": 128, "generated_by": GENERATED_BY},
    )
    write_netcdf(table, folder.evaluation_file("gc_estimators"))
