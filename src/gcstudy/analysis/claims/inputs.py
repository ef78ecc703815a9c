"""What the claims decide on, read from the study file in one place: run-level summaries
(the unit of analysis of every claim) and each sweep's readings at each design clock.

A run's summary of a positive metric is the mean of its natural log over the run's last
``window`` evaluations with a finite value (``window`` is the config key
``stats.summary_window``): one number per run, so that the evaluation steps of a run, which
are not independent observations, count once. ``run_frame`` gives one row per run (from
the study file's run coordinates with xarray's ``to_dataframe``) with these summaries, the
final few-shot table (``fewshot.nc``: target NC and 5-way 5-shot NCC accuracy), the
log GC and log training loss at the last evaluation (the network ``fewshot.nc``
evaluates) and the design facts the tests need; ``lost_runs`` names the grid points of a
sweep or study that have no complete run (diverged, or not aggregated).

``clock_readings`` reads every run of every sweep at the steps where the sweep's runs have
made equal progress by each design clock (``gcstudy.study.clocks``): the values that claims 1-3
decide on. A reading at a step the run was not evaluated at is interpolated (log metric
linear in log step between the bracketing evaluations, linear in step below the first
evaluation after step 0) and marked ``interpolated``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.study import clocks
from gcstudy.study.factors import FACTORS

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


# reading column -> (study-file variable, read its log?)
READINGS = {
    "log_gc": ("gc", True),
    "log_nc": ("nc_train", True),
    "log_geometric_collapse": ("geometric_collapse", True),
    "log_train_loss": ("train_loss", True),
    "log_target_nc": ("target_nc", True),
    "fewshot_accuracy": ("fewshot_5shot_accuracy", False),
}


def read_at(steps: np.ndarray, values: np.ndarray, at: int) -> tuple[float, bool]:
    """A run's value at step ``at`` from its evaluations (``values`` over ``steps``, NaN
    where not evaluated): the evaluation itself, or interpolated linearly in log step
    between the bracketing evaluations (linearly in step below the first evaluation after
    step 0); NaN outside the evaluated range. Returns (value, interpolated)."""
    measured = np.isfinite(values)
    s, v = steps[measured].astype(float), values[measured]
    if not len(s) or at < s[0] or at > s[-1]:
        return np.nan, False
    hit = np.flatnonzero(s == at)
    if len(hit):
        return float(v[hit[0]]), False
    above = int(np.searchsorted(s, at))
    low, high = s[above - 1], s[above]
    weight = at / high if low <= 0 else np.log(at / low) / np.log(high / low)
    return float((1 - weight) * v[above - 1] + weight * v[above]), True


def clock_readings(
    dataset: xr.Dataset, frame: pd.DataFrame, studies: dict, clock_names, fraction: float = 1.0
) -> pd.DataFrame:
    """One row per (study, swept factor, clock, run of the sweep): the step the run is read
    at (``clocks.read_step`` at ``fraction`` of the sweep's common clock value; the common
    value over the sweep's planned budgets, lost runs included), each ``READINGS`` value
    there, and whether it was interpolated."""
    steps = dataset["step"].values
    position = {run: i for i, run in enumerate(dataset["run"].values)}
    with np.errstate(divide="ignore", invalid="ignore"):
        arrays = {
            column: np.log(dataset[var].values) if log else dataset[var].values
            for column, (var, log) in READINGS.items()
            if var in dataset
        }
    gc_measured = np.isfinite(dataset["gc"].values)
    rows = []
    for study, info in studies.items():
        for factor in swept_factors(info):
            runs = sweep_members(frame, study, factor)
            lr, batch = runs["lr"].to_numpy(float), runs["batch_size"].to_numpy(float)
            budget = runs["steps_planned"].to_numpy(float)
            for clock in clock_names:
                common = clocks.common_value(clock, lr, batch, budget)
                at = clocks.read_step(clock, fraction * common, lr, batch, budget)
                for run, step in zip(runs.index, at, strict=True):
                    i = position[run]
                    row = {
                        "study": study,
                        "factor": factor,
                        "clock": clock,
                        "run": run,
                        "seed": runs.at[run, "seed"],
                        "value": float(runs.at[run, factor]),
                        "complete": bool(runs.at[run, "complete"]),
                        "read_step": int(step),
                        "interpolated": not gc_measured[i, steps == step].any(),
                    }
                    for column in READINGS:
                        row[column] = (
                            read_at(steps, arrays[column][i], int(step))[0]
                            if column in arrays
                            else np.nan
                        )
                    rows.append(row)
    return pd.DataFrame(rows)


TERMINAL_ACCURACY = 0.995  # train accuracy of the terminal phase (Papyan et al. 2020)


def terminal_phase(dataset: xr.Dataset) -> pd.DataFrame:
    """Per study: how many complete runs are in the terminal phase, i.e. have train accuracy
    (on the fixed training feature sample) >= ``TERMINAL_ACCURACY`` at every evaluation of
    the last third of their evaluations, and which are not."""
    if "train_accuracy" not in dataset:
        return pd.DataFrame()
    accuracy = dataset["train_accuracy"].values
    rows = []
    for study in dict.fromkeys(str(s) for s in dataset["study"].values):
        chosen = np.flatnonzero(
            (dataset["study"].values == study) & (dataset["status"].values == "complete")
        )
        reached, missing, lowest = 0, [], []
        for i in chosen:
            values = accuracy[i][np.isfinite(accuracy[i])]
            last = values[len(values) - max(1, int(np.ceil(len(values) / 3))) :]
            lowest.append(float(last.min()) if len(last) else np.nan)
            if len(last) and (last >= TERMINAL_ACCURACY).all():
                reached += 1
            else:
                missing.append(str(dataset["run"].values[i]))
        rows.append(
            {
                "study": study,
                "complete_runs": len(chosen),
                "terminal_phase": reached,
                "lowest_late_train_accuracy": float(np.nanmin(lowest)) if lowest else np.nan,
                "not_reached": ", ".join(missing),
            }
        )
    return pd.DataFrame(rows)
