"""Run-level summaries: the unit of analysis of every claim, computed in one place.

A run's summary of a positive metric is the mean of its natural log over the run's last
``window`` evaluations with a finite value (``window`` is the config key
``stats.summary_window``): one number per run, so that the evaluation steps of a run, which
are not independent observations, count once. ``run_frame`` gives one row per run (from
the study file's run coordinates with xarray's ``to_dataframe``) with these summaries, the
final few-shot table (``fewshot.nc``: target NC and 5-way 5-shot NCC accuracy), the
log GC and log training loss at the last evaluation (the network ``fewshot.nc``
evaluates) and the design facts the tests need; ``lost_runs`` names the grid points of a
sweep or study that have no complete run (diverged, or not aggregated).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

FACTORS = ("lr", "batch_size", "l2", "gc_penalty")
FACTOR_LABELS = {
    "lr": "learning rate",
    "batch_size": "batch size",
    "l2": "L2 penalty",
    "gc_penalty": "GC penalty",
}
# summary column -> study-file variable (natural log of the metric, window mean)
LOG_SUMMARIES = {
    "log_gc": "gc",
    "log_geometric_collapse": "geometric_collapse",
    "log_nc": "nc_train",
    "log_train_loss": "train_loss",
    "log_target_nc": "target_nc",
    "log_bound_cdnv": "bound_cdnv",
    "log_bound_gc": "bound_gc",
}
RUN_COLUMNS = (
    "study",
    "experiment",
    "sweeps",
    "swept_factor",
    *FACTORS,
    "seed",
    "status",
    "final_step",
    "steps_planned",
    "dataset",
    "model",
    "device",
    "git_commit_run",
)


def window_mean_log(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the mean of ``log(values)`` over the last ``window`` finite positive entries
    (NaN if none), and how many entries it averaged."""
    values = np.asarray(values, dtype=float)
    usable = np.isfinite(values) & (values > 0)
    from_end = np.cumsum(usable[:, ::-1], axis=1)[:, ::-1]
    chosen = usable & (from_end <= window)
    counts = chosen.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(chosen, np.log(np.where(usable, values, 1.0)), 0.0)
        means = np.where(counts > 0, logs.sum(axis=1) / counts, np.nan)
    return means, counts


def run_frame(dataset: xr.Dataset, window: int) -> pd.DataFrame:
    """One row per run (index: run id): its coordinates, window summaries and final table."""
    present = [c for c in RUN_COLUMNS if c in dataset.coords or c in dataset]
    frame = dataset.reset_coords()[present].to_dataframe().loc[dataset["run"].values]
    # plain Python strings: pandas' string dtype is ~3x slower to subset, and the
    # calibration benchmark subsets these frames many thousand times
    frame = frame.astype({c: object for c in frame.columns if frame[c].dtype.kind in "OUT"})
    frame["complete"] = frame["status"] == "complete"
    members = [set(str(s).split(",")) for s in frame["sweeps"]]
    for factor in FACTORS:
        frame[f"in_{factor}_sweep"] = [factor in m for m in members]
    for column, variable in LOG_SUMMARIES.items():
        if variable in dataset:
            frame[column], counts = window_mean_log(dataset[variable].values, window)
            if variable == "gc":
                frame["window_evaluations"] = counts
        else:
            frame[column] = np.nan
    for column in ("log_gc", "log_train_loss"):  # at the last evaluation, as fewshot.nc
        frame[f"{column}_final"] = window_mean_log(dataset[LOG_SUMMARIES[column]].values, 1)[0]
    frame["log_error"] = window_mean_log(error_plus_half_count(dataset), window)[0]
    frame["fewshot_target_nc"] = (
        dataset["fewshot_target_nc"].values if "fewshot_target_nc" in dataset else np.nan
    )
    frame["fewshot_accuracy"] = fewshot_accuracy(dataset)
    frame["log_fewshot_target_nc"] = np.log(frame["fewshot_target_nc"].where(lambda v: v > 0))
    return frame


def error_plus_half_count(dataset: xr.Dataset) -> np.ndarray:
    """NCC test error plus half an example (1 / (2 n_test)), so that a measured error of 0
    has a finite log; NaN where no error was measured."""
    error = dataset["ncc_test_error"].values
    n_test = dataset["test_examples"].values if "test_examples" in dataset else np.nan
    n_test = np.where(np.isfinite(n_test) & (n_test > 0), n_test, 1e4)
    return error + 0.5 / np.asarray(n_test, dtype=float).reshape(-1, 1)


def fewshot_accuracy(dataset: xr.Dataset, shots: int = 5) -> np.ndarray:
    """Final 5-way ``shots``-shot NCC accuracy of each run (``fewshot.nc``), NaN if none."""
    if "fewshot_accuracy" not in dataset or shots not in dataset["shots"].values:
        return np.full(dataset.sizes["run"], np.nan)
    table = dataset["fewshot_accuracy"].sel(shots=shots)
    classifiers = [str(c) for c in table["classifier"].values]
    return table.isel(classifier=classifiers.index("ncc") if "ncc" in classifiers else 0).values


def studies_of(dataset: xr.Dataset) -> dict[str, dict]:
    """The config's study summaries (from the study file), for the studies present."""
    studies = dataset.attrs.get("studies", {})
    if isinstance(studies, str):
        studies = json.loads(studies)
    present = dict.fromkeys(str(s) for s in dataset["study"].values)
    return {name: studies.get(name, {}) for name in present}


def swept_factors(info: dict) -> list[str]:
    return [f for f in FACTORS if f in info.get("sweeps", {})]


def sweep_members(frame: pd.DataFrame, study: str, factor: str) -> pd.DataFrame:
    """The runs of one sweep (the base point included)."""
    return frame[(frame["study"] == study) & frame[f"in_{factor}_sweep"]]


def lost_runs(frame: pd.DataFrame, info: dict, study: str, factor: str | None = None) -> str:
    """The grid points (value, seed) of a sweep (or, without ``factor``, of the whole study)
    that have no complete run, in words ("" when none is lost, or when the study file does
    not record the study's design)."""
    base, sweeps, seeds = info.get("base"), info.get("sweeps", {}), info.get("seeds", [])
    if not base or not seeds:
        return ""
    status = dict(
        zip(
            zip(
                frame["study"],
                *(frame[f].astype(float) for f in FACTORS),
                frame["seed"],
                strict=True,
            ),
            frame["status"],
            strict=True,
        )
    )
    factors = [factor] if factor else list(sweeps)
    points = [(None, base)] + [(f, {**base, f: v}) for f in factors for v in sweeps.get(f, [])]
    lost = []
    for swept, point in points:
        for seed in seeds:
            key = (study, *(float(point[f]) for f in FACTORS), seed)
            if status.get(key) == "complete":
                continue
            where = f"{swept} {point[swept]:g}" if swept else "base point"
            why = "diverged" if status.get(key) == "diverged" else "not aggregated"
            lost.append(f"{where} seed {seed} ({why})")
    return "; ".join(dict.fromkeys(lost))
