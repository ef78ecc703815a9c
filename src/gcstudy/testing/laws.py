"""The laws a generated study follows, filled into a study-file layout in memory.

Natural logs throughout; ``r`` a run, ``t`` an evaluation step, ``T`` the run's budget.

* **Progress** ``p(r, t) = 1 - exp(-rate_r t / (tau T))``, with a run-specific speed
  ``rate_r = (lr / lr_base)^a (batch / batch_base)^b exp(rate_sd z_r)``: equal step is not
  equal progress across learning rates and batch sizes. ``(a, b) = PROGRESS_CLOCKS[k]``
  makes progress a function of design clock ``k`` alone (``examples``: ``(0, 1)``, the
  progress of ``t * batch`` examples seen), so that equal progress is equal clock ``k``.
* **GC** ``log GC = log gc_start + (log gc_final + dG_r - log gc_start) p + seed``, where
  ``dG_r = sum_f effects[f] axis_f(r) + run_sd z`` is the run's planted GC shift:
  ``axis_f = log(x_f / base_f)``, or ``log(1 + x_f / smallest positive x_f)`` for a factor
  whose base is 0 (L2 and GC penalty off).
* **Seed effect** ``seed = u_(study, seed) (0.2 + 0.8 exp(-5 t / T))``, ``u ~ N(0, seed_sd)``,
  shared by GC, NC and target NC of every run of that seed (runs of one seed share
  initialisation and data order): large early in training, a fifth of it at the end.
* **NC** (the planted value) ``log NC = log nc_start + (log nc_final + dN_r - log nc_start)
  p + seed`` with ``dN_r = nc_coupling dG_r + sum_f nc_effects[f] axis_f + run_sd z'``:
  ``nc_coupling = 0`` makes NC independent of GC, ``nc_effects`` moves NC by a factor apart
  from its effect on GC (e.g. a smaller batch lowers GC but raises NC).
* **Per class**, following the definitions: per-class GC ``GC_c = GC w_c`` (class weights of
  mean 1); within-class variances below their Poincare ceiling, ``Var_c = kappa c_c GC_c
  exp(-|0.2 z|) <= c_c GC_c``; squared class-mean distances ``d_ij^2 = s D_ij`` with a fixed
  pattern ``D`` and the scale ``s`` that gives the planted NC. Measured per-class GC and
  variances carry noise; ``gc`` is their class mean, NC the mean over pairs of ``(Var_i +
  Var_j) / (2 d_ij^2)`` and geometric collapse the same with ``GC_c``, so geometric collapse
  is built from per-class GC over class-mean separation and ``NC <= max_c c_c geometric
  collapse`` holds.
* **Bounds** ``4 (C - 1) NC`` and ``4 (C - 1) c geometric collapse`` (``c = max_c c_c``).
  **NCC test error** (binomial on ``test_examples`` examples) with true value, by
  ``error``: ``below``: ``error_fraction B / (1 + B)`` with ``B`` the noise-free CDNV bound
  (below both bounds, tracking them); ``boundary``: ``B`` itself (the CDNV bound exactly
  tight); ``violated``: twice the noise-free GC bound (above both bounds); ``independent``:
  the ``below`` law on the study's mean trajectory times a run-level factor, so the error
  falls like the bound but does not follow it across runs or within a run.
* **Transfer** target NC like NC with ``target_coupling`` (measured with NC's noise);
  5-shot accuracy ``acc0 + accuracy_slope (log target NC - log target_final)`` of the
  noise-free target NC; the final table (``fewshot.nc``)
  holds the last step's target NC and accuracy (10,000 episodes: noise 0.003).
* **Training loss** ``log loss = log log C + (log loss_final - log log C) p + loss_nc
  (dN_r p + seed) + sum_f loss_effects[f] axis_f`` (plus ``loss_noise``): with the
  defaults a function of progress only; ``COLLIDER_LOSS`` (``loss_nc = 2``, lr -0.8, batch
  +0.4: the law the default study's runs follow, issue 18) puts it downstream of NC, so that
  holding it fixed conditions on a collider.

``progress_only=True`` removes every run-level shift (effects and run noise): GC, NC,
target NC and the loss then depend only on progress, at run-specific rates.

**Scenarios** (``SCENARIOS``): named laws with the truth of claims 1-4 declared, studies
drawn from a seed fixed by the name and a replicate number (``scenario_study``).
**The truth at the design clocks** (``clock_effects``, ``truth``): the noise-free laws read
where the claims read them (each sweep at each clock's common value and 2/3 of it,
``gcstudy.study.clocks``) give each factor's effect on log GC, log NC and log target NC per clock;
from them a claim is *true*, *false* (its opposite holds at every reading) or *no relation*.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.analysis.aggregate import final_values
from gcstudy.study import clocks
from gcstudy.study.clocks import CLOCKS
from gcstudy.study.factors import FACTORS
from gcstudy.testing.layouts import GENERATED_BY, Layout

# d log GC / d axis_f of a planted effect of realistic size (an estimate: GC falls ~2x over
# a 20x learning-rate sweep, ~1.5x over the L2 and penalty sweeps; run noise sd 0.15).
REALISTIC_EFFECTS = {"lr": -0.3, "batch_size": 0.3, "l2": -0.1, "gc_penalty": -0.1}
# speed exponents (lr, batch size) that make progress a function of one design clock
PROGRESS_CLOCKS = {"steps": (0.0, 0.0), "examples": (0.0, 1.0), "lr_steps": (1.0, 0.0)}
# the train loss the default study's runs follow (issue 18: within seeds log loss = 2.11
# log NC - 0.80 log lr, R^2 0.995): downstream of NC
COLLIDER_LOSS = {"loss_nc": 2.0, "loss_effects": {"lr": -0.8, "batch_size": 0.4}}


@dataclass
class Laws:
    """Parameters of the laws in the module docstring."""

    effects: dict[str, float] = field(default_factory=lambda: dict(REALISTIC_EFFECTS))
    nc_coupling: float = 1.0
    nc_effects: dict[str, float] = field(default_factory=dict)
    target_coupling: float = 1.0
    accuracy_slope: float = -0.05
    progress_only: bool = False
    seed_sd: float = 0.0
    run_sd: float = 0.15
    rate_sd: float = 0.2
    speed_exponents: tuple[float, float] = (0.5, -0.5)  # (lr, batch size)
    tau: float = 0.2
    gc_start: float = 40.0
    gc_final: float = 10.0
    nc_start: float = 0.5
    nc_final: float = 0.003
    target_start: float = 0.5
    target_final: float = 0.1
    accuracy_final: float = 0.8
    kappa: float = 0.5
    poincare: float = 2.0
    gc_noise: float = 0.03
    nc_noise: float = 0.03
    loss_noise: float = 0.01
    loss_final: float = 1e-3
    loss_nc: float = 0.0
    loss_effects: dict[str, float] = field(default_factory=dict)
    error: str = "below"
    error_fraction: float = 0.4
    test_examples: int = 355

    def __post_init__(self):
        if self.error not in ("below", "boundary", "violated", "independent"):
            raise ValueError(f"error law {self.error!r}: below, boundary, violated, independent")


def simulate(layout: Layout, laws: Laws, rng: np.random.Generator) -> xr.Dataset:
    """A generated study: ``layout.template`` with every value drawn from ``laws`` (the
    module docstring), in this order: progress and the seed effect, the runs' planted shifts,
    GC and NC with their per-class values, the training curves, bounds and errors, transfer,
    and the final tables. Values are written only where the template measured them."""
    ds = layout.template.copy(deep=True)
    studies = ds.attrs["studies"]
    studies = json.loads(studies) if isinstance(studies, str) else studies
    progress, seed_term = _progress(ds, laws, studies, rng)
    axes = {f: _axis(ds, f, studies) for f in FACTORS}
    d_gc, d_nc, d_target = _run_shifts(laws, axes, len(progress), rng)
    gc_true = _trajectory(laws.gc_start, laws.gc_final, d_gc, progress, seed_term)
    nc_true = _trajectory(laws.nc_start, laws.nc_final, d_nc, progress, seed_term)
    values = _per_class(ds, laws, gc_true, nc_true, rng)
    values["nc_true"] = nc_true
    classes = np.isfinite(ds["gc_per_class"].values).any(axis=1).sum(axis=1)[:, None]
    nc_deviation = d_nc[:, None] * progress + seed_term
    planted_loss = _planted(laws.loss_effects, axes)
    values.update(
        _training_curves(ds, laws, values, progress, classes, nc_deviation, planted_loss, rng)
    )
    values.update(_errors(ds, laws, values, progress, classes, rng))
    transfer = np.isfinite(ds["target_nc"].values).any(axis=1) if "target_nc" in ds else None
    if transfer is not None:
        true_target = _trajectory(
            laws.target_start, laws.target_final, d_target, progress, seed_term
        )
        values.update(_transfer(laws, true_target, rng))
    _fill(ds, values, transfer)
    _final_tables(ds, rng)
    ds = ds.assign_coords(
        poincare_constant=("run", np.full(len(progress), laws.poincare)),
        test_examples=("run", np.full(len(progress), float(laws.test_examples))),
    )
    ds.attrs["generated_by"] = GENERATED_BY
    return ds


def _progress(ds: xr.Dataset, laws: Laws, studies: dict, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(progress, seed term)``, each ``(run, step)``: progress ``p = 1 - exp(-rate_r t /
    (tau T))`` with ``rate_r = (lr / lr_base)^a (batch / batch_base)^b exp(rate_sd z_r)``,
    and the seed effect ``u_(study, seed) (0.2 + 0.8 exp(-5 t / T))``, ``u ~ N(0,
    seed_sd)`` (natural-log units), shared by the runs of one study and seed."""
    steps = ds["step"].values.astype(float)[None, :]
    budget = ds["steps_planned"].values.astype(float)[:, None]
    study = ds["study"].values.astype(str)
    seed = ds["seed"].values
    a_lr, a_bs = laws.speed_exponents
    base = {f: np.array([float(studies[s]["base"][f]) for s in study]) for f in FACTORS}
    rate = np.exp(
        a_lr * np.log(ds["lr"].values / base["lr"])
        + a_bs * np.log(ds["batch_size"].values / base["batch_size"])
        + laws.rate_sd * rng.standard_normal(len(study))
    )[:, None]
    progress = 1 - np.exp(-rate * steps / (laws.tau * budget))
    early = 0.2 + 0.8 * np.exp(-5 * steps / budget)
    keys = list(dict.fromkeys(zip(study, seed, strict=True)))
    shift = dict(zip(keys, laws.seed_sd * rng.standard_normal(len(keys)), strict=True))
    seed_term = np.array([shift[k] for k in zip(study, seed, strict=True)])[:, None] * early
    return progress, seed_term


def _planted(effects: dict, axes: dict) -> np.ndarray:
    """A planted shift in natural-log units, ``sum_f effects[f] axis_f`` per run."""
    return sum(effects.get(f, 0.0) * axes[f] for f in FACTORS)


def _run_shifts(laws: Laws, axes: dict, n_runs: int, rng) -> tuple[np.ndarray, ...]:
    """Each run's planted shift of log GC, log NC and log target NC at the end of training:
    ``dG = planted(effects) + run_sd z``, ``dN = nc_coupling dG + planted(nc_effects) +
    run_sd z'``, ``dT = target_coupling dG + run_sd z''`` (all zero with ``progress_only``)."""
    if laws.progress_only:
        return (np.zeros(n_runs),) * 3
    d_gc = _planted(laws.effects, axes) + laws.run_sd * rng.standard_normal(n_runs)
    d_nc = (
        laws.nc_coupling * d_gc
        + _planted(laws.nc_effects, axes)
        + laws.run_sd * rng.standard_normal(n_runs)
    )
    d_target = laws.target_coupling * d_gc + laws.run_sd * rng.standard_normal(n_runs)
    return d_gc, d_nc, d_target


def _trajectory(start: float, final: float, run_shift, progress, seed_term) -> np.ndarray:
    """``exp(log start + (log final + shift_r - log start) p + seed term)``, ``(run, step)``."""
    log = np.log(start) + (np.log(final) + run_shift[:, None] - np.log(start)) * progress
    return np.exp(log + seed_term)


def _training_curves(
    ds, laws: Laws, values: dict, progress, classes, nc_deviation, planted_loss, rng
) -> dict:
    """Loss ``log loss = log log C + (log loss_final - log log C) p + loss_nc nc_deviation
    + planted_loss + loss_noise z`` (test loss 1.5 loss + 0.1), with ``nc_deviation = dN_r p
    + seed term``,
    accuracy ``1 - (1 - 1/C) exp(-8 p)`` (test: 0.05 p lower), examples seen, wall time
    (0.01 s per step), test NC (1.3 NC) and NC1 (3 NC)."""
    steps = ds["step"].values.astype(float)[None, :]
    log_c = np.log(classes)
    loss = np.exp(
        np.log(log_c)
        + (np.log(laws.loss_final) - np.log(log_c)) * progress
        + laws.loss_nc * nc_deviation
        + planted_loss[:, None]
        + laws.loss_noise * rng.standard_normal(progress.shape)
    )
    accuracy = 1 - (1 - 1 / classes) * np.exp(-8 * progress)
    return dict(
        train_loss=loss,
        train_accuracy=accuracy,
        test_loss=1.5 * loss + 0.1,
        test_accuracy=accuracy - 0.05 * progress,
        examples_seen=steps * ds["batch_size"].values[:, None].astype(float),
        wall_time=np.broadcast_to(0.01 * steps, progress.shape),
        nc_test=values["nc_train"] * 1.3,
        nc1_train=values["nc_train"] * 3.0,
    )


def _transfer(laws: Laws, true_target: np.ndarray, rng) -> dict:
    """Target NC as measured (noise ``nc_noise``), few-shot accuracy ``accuracy_final +
    accuracy_slope (log true target NC - log target_final)`` (noise 0.003, clipped to [0.2,
    1]; 1-shot 0.1 lower), their CIs and the few-shot bounds ``16 (1 + 1/shots) target NC``."""
    target = true_target * np.exp(laws.nc_noise * rng.standard_normal(true_target.shape))
    acc = laws.accuracy_final + laws.accuracy_slope * (
        np.log(true_target) - np.log(laws.target_final)
    )
    acc = np.clip(acc + 0.003 * rng.standard_normal(true_target.shape), 0.2, 1.0)
    return dict(
        target_nc=target,
        fewshot_5shot_accuracy=acc,
        fewshot_1shot_accuracy=np.clip(acc - 0.1, 0, 1),
        fewshot_5shot_ci95=np.full_like(acc, 0.01),
        fewshot_1shot_ci95=np.full_like(acc, 0.012),
        fewshot_5shot_bound=16 * 1.2 * target,
        fewshot_1shot_bound=16 * 2.0 * target,
    )


def _fill(ds: xr.Dataset, values: dict, transfer) -> None:
    """Write ``values`` into the variables of ``ds`` that hold them: NaN where the template
    has no measurement (per class: where its class is absent; transfer values: outside the
    transfer runs)."""
    measured = np.isfinite(ds["gc"].values)
    for name, array in values.items():
        if name not in ds:
            continue
        if name == "gc_per_class":
            ds[name].values = np.where(np.isfinite(ds[name].values), array, np.nan)
            continue
        array = np.where(measured, array, np.nan)
        if name == "target_nc" or name.startswith("fewshot_"):
            array = np.where(transfer[:, None], array, np.nan)
        ds[name].values = array


def _axis(ds: xr.Dataset, factor: str, studies: dict) -> np.ndarray:
    """Each run's position on a factor's axis: log(x / base), or log(1 + x / smallest
    positive value of the study's sweep) when the base is 0."""
    values = ds[factor].values.astype(float)
    out = np.zeros(len(values))
    for i, name in enumerate(ds["study"].values.astype(str)):
        base = float(studies[name]["base"][factor])
        if base > 0:
            out[i] = np.log(values[i] / base)
        elif values[i] > 0:
            swept = [v for v in studies[name].get("sweeps", {}).get(factor, []) if v > 0]
            out[i] = np.log(1 + values[i] / min(swept or [values[i]]))
    return out


def _per_class(ds, laws: Laws, gc_true, nc_true, rng) -> dict:
    """Per-class GC and variances, class-mean separations, and what is built from them."""
    mask = np.isfinite(ds["gc_per_class"].values).any(axis=1)  # (run, class)
    shape = ds["gc"].shape
    out = {k: np.full(shape, np.nan) for k in ("gc", "geometric_collapse", "nc_train")}
    out["gc_per_class"] = np.full(ds["gc_per_class"].shape, np.nan)
    out["geometric_collapse_true"] = np.full(shape, np.nan)
    for pattern in {tuple(row) for row in mask}:
        runs = np.flatnonzero((mask == np.array(pattern)).all(axis=1))
        cols = np.flatnonzero(pattern)
        c = len(cols)
        r = len(runs)
        weights = np.exp(0.3 * rng.standard_normal((r, 1, c)))
        weights /= weights.mean(axis=2, keepdims=True)
        ceilings = rng.uniform(0.5, 1.0, (r, 1, c))
        ceilings = laws.poincare * ceilings / ceilings.max(axis=2, keepdims=True)
        points = rng.standard_normal((r, 1, c, 4))  # class-mean directions, one per run
        pattern = ((points[..., :, None, :] - points[..., None, :, :]) ** 2).sum(-1)
        pattern /= pattern[..., ~np.eye(c, dtype=bool)].mean(axis=-1)[..., None, None]

        def pair_mean_at(per_class, scale, pattern=pattern):  # squared distances s * pattern
            return pair_mean(per_class, pattern) / scale

        gc_class = gc_true[runs][:, :, None] * weights
        variance = (
            laws.kappa * ceilings * gc_class * np.exp(-np.abs(0.2 * rng.standard_normal((r, 1, c))))
        )
        scale = pair_mean_at(variance, 1.0) / nc_true[runs]
        noise = np.sqrt(c)
        gc_meas = gc_class * np.exp(laws.gc_noise * noise * rng.standard_normal(gc_class.shape))
        var_meas = variance * np.exp(laws.nc_noise * noise * rng.standard_normal(variance.shape))
        out["gc_per_class"][np.ix_(runs, np.arange(shape[1]), cols)] = gc_meas
        out["gc"][runs] = gc_meas.mean(axis=2)
        out["nc_train"][runs] = pair_mean_at(var_meas, scale)
        out["geometric_collapse"][runs] = pair_mean_at(gc_meas, scale)
        out["geometric_collapse_true"][runs] = pair_mean_at(gc_class, scale)
    out["gc_stderr"] = laws.gc_noise * out["gc"]
    return out


def pair_mean(per_class: np.ndarray, squared_distances: np.ndarray) -> np.ndarray:
    """``mean_{i<j} (v_i + v_j) / (2 d_ij^2)`` over the last axis of ``per_class`` (C) with
    squared class-mean distances ``(..., C, C)``: the CDNV form of NC (``v`` = within-class
    variances) and of geometric collapse (``v`` = per-class GC). Computed as
    ``sum_i v_i sum_(j != i) 1 / d_ij^2 / (C (C - 1))``."""
    c = per_class.shape[-1]
    off = ~np.eye(c, dtype=bool)
    inverse = np.where(off, 1 / np.where(off, squared_distances, 1.0), 0.0).sum(axis=-1)
    return (per_class * inverse).sum(axis=-1) / (c * (c - 1))


def _errors(ds, laws: Laws, values: dict, progress, classes, rng) -> dict:
    """Both bounds and the NCC errors (binomial on the test and feature samples)."""
    factor = 4 * (classes - 1)
    nc_true_bound = factor * values.pop("nc_true")
    gc_true_bound = factor * laws.poincare * values.pop("geometric_collapse_true")
    if laws.error == "below":
        error = laws.error_fraction * nc_true_bound / (1 + nc_true_bound)
    elif laws.error == "boundary":
        error = nc_true_bound
    elif laws.error == "violated":
        error = 2 * gc_true_bound
    else:  # independent: the mean trajectory's law, a run-level factor, step noise
        mean_progress = 1 - np.exp(
            -ds["step"].values[None, :] / (laws.tau * ds["steps_planned"].values[:, None])
        )
        mean_nc = np.exp(
            np.log(laws.nc_start) + (np.log(laws.nc_final) - np.log(laws.nc_start)) * mean_progress
        )
        bound = factor * mean_nc
        run = np.exp(0.3 * rng.standard_normal((len(bound), 1)))
        error = laws.error_fraction * bound / (1 + bound) * run
        error = error * np.exp(0.1 * rng.standard_normal(error.shape))
    error = np.clip(np.nan_to_num(error, nan=0.5), 0, 0.95)
    test = rng.binomial(laws.test_examples, error) / laws.test_examples
    features = 400
    train = rng.binomial(features, 0.5 * error) / features
    return {
        "bound_cdnv": factor * values["nc_train"],
        "bound_gc": factor * laws.poincare * values["geometric_collapse"],
        "ncc_test_error": test,
        "ncc_train_error": train,
    }


def _final_tables(ds: xr.Dataset, rng) -> None:
    """``fewshot.nc`` values (the last step's target NC and accuracy, 10,000 episodes) and
    the GC-estimator study (estimates around the final GC)."""
    if "fewshot_target_nc" in ds:
        rows = np.isfinite(ds["fewshot_target_nc"].values)
        final_nc = final_values(ds, "target_nc")
        final_acc = final_values(ds, "fewshot_5shot_accuracy")
        ds["fewshot_target_nc"].values = np.where(rows, final_nc, np.nan)
        accuracy = np.stack([final_acc - 0.1, final_acc], axis=1)[:, None, :]
        accuracy = accuracy + 0.003 * rng.standard_normal(accuracy.shape)
        ds["fewshot_accuracy"].values = np.where(rows[:, None, None], accuracy, np.nan)
        ds["fewshot_ci95"].values = np.where(
            rows[:, None, None], np.full(accuracy.shape, 0.003), np.nan
        )
    if "gcest_exact" in ds:
        rows = np.isfinite(ds["gcest_exact"].values)
        exact = final_values(ds, "gc")
        budgets = ds["budget"].values
        spread = 0.4 / np.sqrt(np.where(budgets >= 1, budgets, budgets * 1000))
        estimate = exact[:, None, None] * (
            1 + spread[None, :, None] * rng.standard_normal(ds["gcest_estimate"].shape)
        )
        ds["gcest_exact"].values = np.where(rows, exact, np.nan)
        ds["gcest_estimate"].values = np.where(rows[:, None, None], estimate, np.nan)
        ds["gcest_reported_stderr"].values = np.where(
            rows[:, None, None],
            np.broadcast_to(exact[:, None, None] * spread[None, :, None], estimate.shape),
            np.nan,
        )


def diverge(ds: xr.Dataset, run_ids, keep: float = 0.5) -> xr.Dataset:
    """Mark runs as diverged: their values stop after the first ``keep`` of their steps."""
    ds = ds.copy(deep=True)
    status = ds["status"].values.astype(object)
    final = ds["final_step"].values.copy()
    for run_id in run_ids:
        found = np.flatnonzero(ds["run"].values == run_id)
        if not len(found):
            raise KeyError(f"no run {run_id!r} in the generated study")
        i = int(found[0])
        measured = np.flatnonzero(np.isfinite(ds["gc"].values[i]))
        kept = measured[: max(2, int(len(measured) * keep))]
        cut = np.setdiff1d(np.arange(ds.sizes["step"]), kept)
        for name, var in ds.data_vars.items():
            if var.dims[:2] == ("run", "step"):
                var.values[i, cut] = np.nan
            elif var.dims[:1] == ("run",) and name.startswith(("fewshot_", "gcest_")):
                var.values[i] = np.nan
        status[i] = "diverged"
        final[i] = int(ds["step"].values[kept[-1]])
    return ds.assign_coords(status=("run", status.astype(str)), final_step=("run", final))


# ---------------------------------------------------------------- truth at the design clocks

NEGLIGIBLE = 0.02  # |d log metric / d axis| below this counts as no effect (1/15 of REALISTIC)
PREDICTED = {"lr": -1, "batch_size": 1, "l2": -1, "gc_penalty": -1}  # claim 1: sign of d log GC
CLAIM_METRICS = {2: "nc", 3: "target_nc"}  # the metric claims 2 and 3 follow GC with
READ = {"gc": "gc", "nc": "nc_train", "target_nc": "target_nc"}  # column -> study variable


def clock_effects(layout: Layout, laws: Laws, clock_names=CLOCKS) -> pd.DataFrame:
    """The noise-free effect of each swept factor on log GC, log NC and log target NC,
    where the claims read a sweep: for every study, factor, clock and reading (``fraction``
    of the sweep's common clock value, ``gcstudy.study.clocks.FRACTIONS``), the least-squares
    slope of the log metric of the sweep's runs on the factor's axis (module docstring)."""
    quiet = replace(laws, run_sd=0.0, rate_sd=0.0, seed_sd=0.0, gc_noise=0.0, nc_noise=0.0)
    ds = simulate(layout, quiet, np.random.default_rng(0))
    studies = json.loads(ds.attrs["studies"])
    first_seed = ds["seed"].values == ds["seed"].values.min()
    rows = []
    for study, info in studies.items():
        for factor in info.get("sweeps", {}):
            members = np.flatnonzero(
                (ds["study"].values == study)
                & first_seed
                & np.array([factor in str(s).split(",") for s in ds["sweeps"].values])
            )
            sweep = ds.isel(run=members)
            lr, batch = sweep["lr"].values, sweep["batch_size"].values
            budget = sweep["steps_planned"].values
            axis = _axis(sweep, factor, studies)
            for clock in clock_names:
                common = clocks.common_value(clock, lr, batch, budget)
                for fraction in clocks.FRACTIONS:
                    steps = clocks.read_step(clock, fraction * common, lr, batch, budget)
                    at = sweep.sel(step=xr.DataArray(steps, dims="run"))
                    row = {"study": study, "factor": factor, "clock": clock, "fraction": fraction}
                    for name, variable in READ.items():
                        values = at[variable].values if variable in at else np.nan * axis
                        finite = np.isfinite(values).all()
                        row[name] = np.polyfit(axis, np.log(values), 1)[0] if finite else np.nan
                    rows.append(row)
    return pd.DataFrame(rows)


def truth(effects: pd.DataFrame, claim: int) -> str:
    """Claim 1-3's truth at the design clocks, from ``clock_effects``: *true*, *false* or
    *no relation*.

    A reading is one (clock, fraction), over every study and factor. Claim 1 is true when
    at every reading every factor moves GC in the predicted direction, false when at every
    reading some factor moves it the other way. Claims 2 and 3: a (study, factor) *acts* at
    a reading when it moves GC (either way); the claim holds at a reading when every acting
    factor moves the metric (NC; target NC) in the direction of its effect on GC, its
    opposite when some acting factor moves the metric the other way. True when it holds at
    every reading where a factor acts (and one does), false when its opposite holds at
    every reading; effects below ``NEGLIGIBLE`` count as none."""
    if claim == 1:
        along = effects["factor"].map(PREDICTED) * effects["gc"]
        worst = along.groupby([effects["clock"], effects["fraction"]]).min()
        if (worst > NEGLIGIBLE).all():
            return "true"
        return "false" if (worst < -NEGLIGIBLE).all() else "no relation"
    metric = CLAIM_METRICS[claim]
    relevant = effects[np.isfinite(effects[metric])]
    acting = relevant[relevant["gc"].abs() > NEGLIGIBLE]
    if acting.empty:
        return "no relation"
    along = acting[metric] * np.sign(acting["gc"])  # > 0: the metric follows GC
    worst = along.groupby([acting["clock"], acting["fraction"]]).min()
    if (worst > NEGLIGIBLE).all():
        return "true"
    readings = relevant.groupby(["clock", "fraction"]).ngroups
    return "false" if (worst < -NEGLIGIBLE).sum() == readings else "no relation"


# ---------------------------------------------------------------- named scenarios


@dataclass(frozen=True)
class Scenario:
    """Named laws (``Laws`` keyword arguments) with the truth of claims 1-4 declared:
    ``true``, ``false`` (the opposite holds) or ``no relation``; claims 1-3 at the design
    clocks as ``truth`` defines it."""

    laws: dict
    truth: tuple[str, str, str, str]
    what: str


PLATEAU = {"tau": 0.002}  # progress complete before the earliest clock reading
NO_EFFECT = {"effects": dict.fromkeys(FACTORS, 0.0)}
NULL = {"nc_coupling": 0.0, "target_coupling": 0.0, "speed_exponents": (0.0, 0.0)}
TRUE, FALSE, NONE = "true", "false", "no relation"
SCENARIOS = {
    "planted": Scenario(PLATEAU, (TRUE, TRUE, TRUE, TRUE), "every claim true; at a plateau"),
    "no_effect": Scenario(
        {**PLATEAU, **NO_EFFECT, "speed_exponents": (0.0, 0.0), "nc_final": 0.2, "poincare": 150.0},
        (NONE, NONE, NONE, FALSE),
        "no factor moves GC; the bounds are vacuous",
    ),
    "nc_independent": Scenario(
        {**PLATEAU, "nc_coupling": 0.0, "error": "violated"},
        (TRUE, NONE, TRUE, FALSE),
        "NC independent of GC; the error is twice the GC bound",
    ),
    "target_indep": Scenario(
        {**PLATEAU, "target_coupling": 0.0, "error": "independent"},
        (TRUE, TRUE, NONE, FALSE),
        "target NC independent of source GC; the error falls like the bound, untracked",
    ),
    "seed_0.3": Scenario(
        {**PLATEAU, **NO_EFFECT, **NULL, "seed_sd": 0.3},
        (NONE, NONE, NONE, TRUE),
        "no effect; seed effects of sd 0.3, mostly early in training",
    ),
    "seed_1.0": Scenario(
        {**PLATEAU, **NO_EFFECT, **NULL, "seed_sd": 1.0},
        (NONE, NONE, NONE, TRUE),
        "no effect; seed effects of sd 1.0, mostly early in training",
    ),
    "progress_only": Scenario(
        {"progress_only": True, "tau": 0.5},
        (NONE, TRUE, TRUE, TRUE),
        "GC, NC, target NC depend only on progress (faster at larger lr, smaller batch)",
    ),
    "collider": Scenario(
        {**PLATEAU, **COLLIDER_LOSS},
        (TRUE, TRUE, TRUE, TRUE),
        "every claim true; train loss downstream of NC",
    ),
    "collider_nc_indep": Scenario(
        {**PLATEAU, **COLLIDER_LOSS, "nc_coupling": 0.0},
        (TRUE, NONE, TRUE, TRUE),
        "NC independent of GC; train loss downstream of NC; at a plateau",
    ),
    "collider_nc_indep_falling": Scenario(
        {**COLLIDER_LOSS, "nc_coupling": 0.0, "tau": 1.0, "speed_exponents": (0.0, 0.0)},
        (NONE, NONE, TRUE, FALSE),
        "NC independent of GC; train loss downstream of NC; still falling at the end (the "
        "bound vacuous over most of training)",
    ),
    "apart": Scenario(
        {**PLATEAU, "nc_effects": {"batch_size": -0.6}},
        (TRUE, FALSE, TRUE, TRUE),
        "a smaller batch lowers GC but raises NC (lr, L2, penalty move them together)",
    ),
    "clock_dependent": Scenario(
        {"speed_exponents": PROGRESS_CLOCKS["examples"], "tau": 0.4},
        (NONE, NONE, TRUE, TRUE),
        "progress in examples seen: at equal steps a smaller batch is behind (GC and NC "
        "apart), at equal examples together",
    ),
}


def scenario_study(layout: Layout, name: str, replicate: int) -> xr.Dataset:
    """Replicate ``replicate`` of scenario ``name``: a generated study whose seed is fixed
    by the name and the replicate number."""
    key = zlib.crc32(name.encode())
    rng = np.random.default_rng(np.random.SeedSequence([key, replicate]))
    return simulate(layout, Laws(**SCENARIOS[name].laws), rng)
