"""Per-run evaluations from the final weights (``gcstudy evaluate RUN_DIR``).

* Few-shot table (``fewshot.nc``, transfer data sets): 5-way (configurable) 1- and 5-shot
  NCC accuracy on the target classes with the frozen embedding, 10,000 episodes with a
  fixed episode seed, mean and 95% CI; plus the target NC of the final embedding.
* GC-estimator study (``gc_estimators.nc``, SCIENCE.md section 2 / Fig. 2): on a fixed
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from gcstudy import files, provenance, runfiles
from gcstudy.measurements import embed, fewshot, probe_seed
from gcstudy.metrics.collapse import neural_collapse
from gcstudy.metrics.gc import per_example_gc, subsample, summarise
from gcstudy.models import build
from gcstudy.rundata import RunData, load_run_data, stratified_sample
from gcstudy.spec import FEWSHOT_SHOTS as SHOTS
from gcstudy.spec import RunSpec
from gcstudy.study.runfolder import RunFolder


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings of the per-run evaluations (config key ``evaluate``)."""

    fewshot_episodes: int = 10000
    fewshot_classifiers: tuple[str, ...] = ("ncc",)
    gc_examples: int = 128
    gc_repeats: int = 10
    budgets: dict[str, list[float]] = field(
        default_factory=lambda: {
            "examples": [8, 16, 32, 64],
            "hutchinson": [1, 2, 4, 8],
            "outputs": [1, 4, 16],
            "mask": [0.005, 0.02, 0.05],
        }
    )

    @classmethod
    def from_dict(cls, values: dict | None) -> EvaluationSettings:
        values = dict(values or {})
        if "fewshot_classifiers" in values:
            values["fewshot_classifiers"] = tuple(values["fewshot_classifiers"])
        return cls(**values)


def load_trained(run_dir: Path, device: torch.device):
    """(model in eval mode, spec, run data, status) from the run folder's ``model.pt``."""
    weights = RunFolder(run_dir).model
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    spec = RunSpec.from_dict(saved["spec"], source=str(weights))
    data = load_run_data(spec, device)
    model = build(spec.model, data.num_classes, saved["in_channels"], spec.width)
    model.load_state_dict(saved["state_dict"])
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
    """Exact GC and repeated estimates per (estimator, budget) setting on a fixed sample."""
    sample = stratified_sample(
        data.train_targets.cpu(),
        settings.gc_examples,
        torch.Generator().manual_seed(spec.sample_seed + 1),
    )
    x = data.normalise(data.train_images[sample.to(data.train_images.device)])
    settings_list = [
        (name, float(b)) for name, budgets in settings.budgets.items() for b in budgets
    ]
    shape = (len(settings_list), settings.gc_repeats)
    estimate, stderr = np.full(shape, np.nan), np.full(shape, np.nan)
    cost, seconds = np.full(len(settings_list), np.nan), np.full(len(settings_list), np.nan)
    exact_value = exact_stderr = np.nan
    if not diverged:
        exact = per_example_gc(model.embed, x, "exact")
        summary = summarise(exact, "exact")
        exact_value, exact_stderr = summary.value, summary.stderr
        outputs = model.embedding_dim
        for k, (name, budget) in enumerate(settings_list):
            start = time.perf_counter()
            for r in range(settings.gc_repeats):
                seed = probe_seed(spec, 10_000 * (k + 1) + r)
                result = _one_estimate(model, x, exact, name, budget, seed)
                estimate[k, r], stderr[k, r] = result.value, result.stderr
            seconds[k] = (time.perf_counter() - start) / settings.gc_repeats
            cost[k] = _cost_per_example(name, budget, outputs, x[0].numel(), len(x))
    names = [n for n, _ in settings_list]
    return xr.Dataset(
        {
            "estimate": (
                ("setting", "repeat"),
                estimate,
                {"units": "1", "long_name": "GC estimate"},
            ),
            "reported_stderr": (
                ("setting", "repeat"),
                stderr,
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
                cost,
                {
                    "units": "products per example",
                    "long_name": "VJPs or JVPs per example (examples: fraction of the exact cost)",
                },
            ),
            "seconds": ("setting", seconds, {"units": "s", "long_name": "time per estimate"}),
            "exact": ((), exact_value, {"units": "1", "long_name": "exact GC of the sample"}),
            "exact_stderr": (
                (),
                exact_stderr,
                {"units": "1", "long_name": "sampling error of exact GC"},
            ),
        },
        coords={
            "setting": np.arange(len(settings_list)),
            "repeat": np.arange(shape[1]),
            "estimator": ("setting", names),
            "budget": ("setting", [b for _, b in settings_list]),
        },
        attrs={"examples": len(x), "outputs": int(model.embedding_dim)},
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
    from gcstudy.train import resolve_device

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
    (``gcstudy.runfiles``)."""
    with files.replacing(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
    runfiles.seal(path)
    return path
