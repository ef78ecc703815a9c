"""Per-run evaluations from the final weights (``gcstudy evaluate RUN_DIR``).

* Few-shot table (``fewshot.nc``, transfer data sets): 5-way (configurable) 1- and 5-shot
  NCC accuracy on the target classes with the frozen embedding, 10,000 episodes with a
  fixed episode seed, mean and 95% CI; plus the target NC of the final embedding.
* GC-estimator study (``gc_estimators.nc``, docs/science.md#gc-estimators, Fig. 2): on a fixed
  stratified training sample, the exact GC and, for each estimator and sampling budget,
  ``repeats`` independent estimates: example subsampling (b of the sample's N examples,
  exact per example; its standard error is about the exact GC of the N examples, so it
  carries the finite-population correction sqrt(1 - b/N)),
  Hutchinson (probes per example), output-row sampling (rows per example) and Jacobian
  masking (input-coordinate keep rate). Each setting also records its cost in
  vector-Jacobian (or Jacobian-vector) products per example and its wall time.

Both files are netCDF/HDF5 (xarray, engine h5netcdf) with the run spec, versions, git
commit and seed as attributes; a diverged run gets files of NaNs marked ``diverged``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from gcstudy import files, provenance
from gcstudy.data.run_data import RunData, load_run_data, stratified_sample
from gcstudy.measure.loading import from_model_file, read_weights
from gcstudy.measure.traced import embed, fewshot, probe_seed
from gcstudy.metrics.collapse import neural_collapse
from gcstudy.metrics.gc import per_example_gc, subsample, summarise
from gcstudy.study import seals as runfiles
from gcstudy.study.runfolder import RunFolder
from gcstudy.study.settings import EvaluationSettings
from gcstudy.study.spec import FEWSHOT_SHOTS as SHOTS
from gcstudy.study.spec import RunSpec


def load_trained(run_dir: Path, device: torch.device):
    """(model in eval mode, spec, run data, status) from the run folder's ``model.pt``."""
    weights = RunFolder(run_dir).model
    saved = read_weights(weights)
    model, spec, _ = from_model_file(saved, weights)
    data = load_run_data(spec, device)
    return model.to(device).eval(), spec, data, saved["status"]


def fewshot_table(
    model, spec: RunSpec, data: RunData, settings: EvaluationSettings, diverged: bool
) -> xr.Dataset:
    """Few-shot accuracy (dims classifier x shots) and target NC of the final embedding."""
    if data.target_images is None:
        raise ValueError(f"data set {spec.dataset!r} has no target classes: no few-shot table")
    classifiers = list(settings.fewshot_classifiers)
    accuracy = np.full((len(classifiers), len(SHOTS)), np.nan)
    ci95 = np.full_like(accuracy, np.nan)
    target_nc = np.nan
    if not diverged:
        features, _ = embed(model, data, data.target_images)
        target_nc = neural_collapse(features, data.target_labels).value
        for i, classifier in enumerate(classifiers):
            for j, shots in enumerate(SHOTS):
                result = fewshot(
                    features, data.target_labels, spec, shots, settings.fewshot_episodes, classifier
                )
                accuracy[i, j], ci95[i, j] = result.accuracy, result.ci95
    dims = ("classifier", "shots")
    return xr.Dataset(
        {
            "accuracy": (dims, accuracy, {"units": "1", "long_name": "few-shot accuracy"}),
            "ci95": (dims, ci95, {"units": "1", "long_name": "95% CI half-width"}),
            "target_nc": ((), target_nc, {"units": "1", "long_name": "target-class NC"}),
        },
        coords={"classifier": classifiers, "shots": list(SHOTS)},
        attrs={
            "ways": spec.fewshot_ways,
            "queries": spec.fewshot_queries,
            "episodes": settings.fewshot_episodes,
            "episode_seed": spec.fewshot_seed,
        },
    )


def gc_estimator_study(
    model, spec: RunSpec, data: RunData, settings: EvaluationSettings, diverged: bool
) -> xr.Dataset:
    """Exact GC and repeated estimates per (estimator, budget) setting on a fixed sample:
    ``settings.gc_examples`` training examples stratified by class (generator seeded with
    ``spec.sample_seed + 1``), ``settings.gc_repeats`` estimates per setting (NaN for a
    diverged run). GC: the mean over examples of ``||J_f(x)||_F^2``, the embedding's
    Jacobian on normalised inputs (units "1" in the file)."""
    sample = stratified_sample(
        data.train_targets.cpu(),
        settings.gc_examples,
        torch.Generator().manual_seed(spec.sample_seed + 1),
    )
    x = data.normalise(data.train_images[sample.to(data.train_images.device)])
    settings_list = [
        (name, float(b)) for name, budgets in settings.budgets.items() for b in budgets
    ]
    if diverged:
        values = _no_estimates(len(settings_list), settings.gc_repeats)
    else:
        values = _estimates(model, spec, x, settings_list, settings.gc_repeats)
    return _estimator_dataset(values, settings_list, len(x), int(model.embedding_dim))


def _no_estimates(settings: int, repeats: int) -> dict:
    """The values of ``_estimates``, all NaN: ``estimate`` and ``reported_stderr`` (setting
    x repeat), ``cost`` and ``seconds`` (setting), ``exact`` and ``exact_stderr``."""
    return {
        "estimate": np.full((settings, repeats), np.nan),
        "reported_stderr": np.full((settings, repeats), np.nan),
        "cost": np.full(settings, np.nan),
        "seconds": np.full(settings, np.nan),
        "exact": np.nan,
        "exact_stderr": np.nan,
    }


def _estimates(model, spec: RunSpec, x: torch.Tensor, settings_list: list, repeats: int) -> dict:
    """The exact GC of the sample ``x`` (mean over its examples of ``||J_f(x_i)||_F^2``) with
    its sampling error, and for setting ``k`` = (estimator, budget) of ``settings_list``:
    ``repeats`` estimates (repeat ``r`` seeded by ``probe_seed(spec, 10000 (k + 1) + r)``)
    with the standard error each reported, the mean wall-clock seconds per estimate, and the
    cost in products per example (``_cost_per_example``)."""
    values = _no_estimates(len(settings_list), repeats)
    exact = per_example_gc(model.embed, x, "exact")
    summary = summarise(exact, "exact")
    values["exact"], values["exact_stderr"] = summary.value, summary.stderr
    outputs = model.embedding_dim
    for k, (name, budget) in enumerate(settings_list):
        start = time.perf_counter()
        for r in range(repeats):
            seed = probe_seed(spec, 10_000 * (k + 1) + r)
            result = _one_estimate(model, x, exact, name, budget, seed)
            values["estimate"][k, r], values["reported_stderr"][k, r] = result.value, result.stderr
        values["seconds"][k] = (time.perf_counter() - start) / repeats
        values["cost"][k] = _cost_per_example(name, budget, outputs, x[0].numel(), len(x))
    return values


def _estimator_dataset(
    values: dict, settings_list: list, examples: int, outputs: int
) -> xr.Dataset:
    """The GC-estimator study file's dataset: ``values`` (see ``_no_estimates``) with their
    units and descriptions, one ``setting`` per (estimator, budget) of ``settings_list``."""
    return xr.Dataset(
        {
            "estimate": (
                ("setting", "repeat"),
                values["estimate"],
                {"units": "1", "long_name": "GC estimate"},
            ),
            "reported_stderr": (
                ("setting", "repeat"),
                values["reported_stderr"],
                {
                    "units": "1",
                    "long_name": "standard error it reported",
                    "description": "examples: about the exact GC of the sample, with the "
                    "finite-population correction sqrt(1 - b/N); probe estimators: "
                    "std/sqrt(N) over the sample's examples, which also covers drawing the N "
                    "examples from the data and so exceeds their spread about the sample's "
                    "exact GC",
                },
            ),
            "cost": (
                "setting",
                values["cost"],
                {
                    "units": "products per example",
                    "long_name": "VJPs or JVPs per example (examples: fraction of the exact cost)",
                },
            ),
            "seconds": (
                "setting",
                values["seconds"],
                {"units": "s", "long_name": "time per estimate"},
            ),
            "exact": ((), values["exact"], {"units": "1", "long_name": "exact GC of the sample"}),
            "exact_stderr": (
                (),
                values["exact_stderr"],
                {"units": "1", "long_name": "sampling error of exact GC"},
            ),
        },
        coords={
            "setting": np.arange(len(settings_list)),
            "repeat": np.arange(values["estimate"].shape[1]),
            "estimator": ("setting", [n for n, _ in settings_list]),
            "budget": ("setting", [b for _, b in settings_list]),
        },
        attrs={"examples": examples, "outputs": outputs},
    )


def _one_estimate(model, x, exact: torch.Tensor, name: str, budget: float, seed: int):
    if name == "examples":
        return subsample(exact, int(budget), seed)
    kwargs = {
        "hutchinson": {"probes": int(budget)},
        "outputs": {"outputs": int(budget)},
        "mask": {"rate": budget},
    }[name]
    return summarise(per_example_gc(model.embed, x, name, generator=seed, **kwargs), name)


def _cost_per_example(name: str, budget: float, outputs: int, inputs: int, n: int) -> float:
    """Products (VJPs or JVPs) per example of the sample; ``examples`` gives exact cost on a
    fraction of the sample, reported per example of the whole sample."""
    return {
        "examples": outputs * budget / n,
        "hutchinson": budget,
        "outputs": budget,
        "mask": budget * inputs,
    }[name]


def evaluate(
    run_dir: str | os.PathLike,
    fewshot: bool,
    gc_estimators: bool,
    settings: EvaluationSettings,
    device: str = "auto",
) -> list[Path]:
    """Write the requested evaluation files into ``run_dir``; returns their paths."""
    from gcstudy.training.trainer import resolve_device

    run_dir = Path(run_dir)
    model, spec, data, status = load_trained(run_dir, resolve_device(device))
    diverged = status == "diverged"
    attrs = {
        "spec": json.dumps(spec.to_dict()),
        "versions": json.dumps(provenance.versions()),
        "git_commit": provenance.git_commit(),
        "seed": spec.seed,
        "status": status,
        "created_at": provenance.now(),
        "settings": json.dumps(settings.__dict__, default=list),
    }
    written = []
    jobs = [
        ("fewshot", fewshot, fewshot_table),
        ("gc_estimators", gc_estimators, gc_estimator_study),
    ]
    for kind, wanted, compute in jobs:
        if wanted:
            dataset = compute(model, spec, data, settings, diverged)
            dataset.attrs.update(attrs)
            written.append(write_netcdf(dataset, RunFolder(run_dir).evaluation_file(kind)))
    return written


def write_netcdf(dataset: xr.Dataset, path: Path) -> Path:
    """Write atomically (``gcstudy.files``) with the h5netcdf engine, then seal the file
    (``gcstudy.study.seals``)."""
    with files.replacing(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
    runfiles.seal(path)
    return path
