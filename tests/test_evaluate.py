"""Per-run evaluations from the final weights: few-shot table and GC-estimator study."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from gcstudy.data.run_data import stratified_sample
from gcstudy.measure.evaluations import EvaluationSettings, evaluate, load_trained
from gcstudy.measure.traced import embed
from gcstudy.metrics.fewshot import fewshot_eval
from gcstudy.metrics.gc import geometric_complexity
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import run

SETTINGS = EvaluationSettings(
    fewshot_episodes=400, fewshot_classifiers=("ncc", "logreg"), gc_examples=20, gc_repeats=4,
    budgets={"examples": [5, 10], "hutchinson": [1, 3], "outputs": [2], "mask": [0.01]},
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits-FS run (source 0-4, target 5-9), trained once for this module."""
    out = tmp_path_factory.mktemp("run")
    spec = RunSpec(
        width=0.0625,
        dataset="digits_fs",
        steps=8,
        eval_steps=[0],
        batch_size=32,
        gc_examples=16,
        feature_examples=60,
        test_examples=60,
        bn_recalibration_examples=32,
        fewshot_episodes=20,
        device="cpu",
    )
    run(spec, out, progress=False)
    return out


def test_fewshot_table_matches_a_direct_evaluation(trained):
    (path,) = evaluate(trained, fewshot=True, gc_estimators=False, settings=SETTINGS, device="cpu")
    table = xr.open_dataset(path, engine="h5netcdf").load()
    assert table.accuracy.dims == ("classifier", "shots")
    assert table.classifier.values.tolist() == ["ncc", "logreg"]
    assert table.shots.values.tolist() == [1, 5]
    assert json.loads(table.attrs["spec"])["dataset"] == "digits_fs"
    assert table.attrs["git_commit"] and table.attrs["status"] == "complete"
    model, _, data, _ = load_trained(trained, torch.device("cpu"))
    features, _ = embed(model, data, data.target_images)
    direct = fewshot_eval(features, data.target_labels, shots=5, episodes=400, seed=0)
    assert table.accuracy.sel(classifier="ncc", shots=5).item() == direct.accuracy
    assert table.ci95.sel(classifier="ncc", shots=5).item() == direct.ci95
    assert (table.accuracy > 0.2).all()  # better than 5-way chance


# One budget per estimator precise enough on 24 examples that 12 repeats pin each mean to
# under 2 % of the exact GC (measured: 0.9-1.8 %).
ESTIMATOR_STUDY = EvaluationSettings(
    gc_examples=24, gc_repeats=12,
    budgets={"examples": [12], "hutchinson": [2, 4], "outputs": [8], "mask": [0.05]},
)  # fmt: skip


def test_gc_estimator_study_is_centred_on_the_exact_gc(trained):
    settings = ESTIMATOR_STUDY
    (path,) = evaluate(trained, fewshot=False, gc_estimators=True, settings=settings, device="cpu")
    study = xr.open_dataset(path, engine="h5netcdf").load()
    assert study.estimate.dims == ("setting", "repeat")
    assert study.sizes["repeat"] == settings.gc_repeats
    assert study.estimator.values.tolist() == ["examples", "hutchinson", "hutchinson", "outputs",
                                               "mask"]  # fmt: skip
    model, _, data, _ = load_trained(trained, torch.device("cpu"))
    sample = stratified_sample(data.train_targets, 24, torch.Generator().manual_seed(1))
    oracle = geometric_complexity(model.embed, data.normalise(data.train_images[sample]))
    assert study.exact.item() == pytest.approx(oracle.value, rel=1e-9)
    # On the fixed sample each estimator is unbiased for the exact GC: the mean of the
    # repeats lies within 4 of its standard errors (from the repeats' own spread); that
    # error is under 2 % of the exact value, so a 10 % bias of any setting fails.
    exact, spread = study.exact.item(), study.estimate.std("repeat").values
    error = spread / math.sqrt(settings.gc_repeats)
    deviation = abs(study.estimate.mean("repeat").values - exact)
    assert (error < 0.02 * exact).all(), error / exact
    assert (deviation < 4 * error).all(), deviation / error
    # the reported error (spread over the examples) covers the estimator's own randomness
    assert (study.reported_stderr.mean("repeat").values > spread).all()
    assert (study.cost.sel(setting=study.estimator == "hutchinson").values == [2, 4]).all()
    assert (study.seconds > 0).all()


def test_transfer_table_is_refused_for_a_plain_data_set(tmp_path):
    spec = RunSpec(
        width=0.0625,
        steps=2,
        eval_steps=[0],
        gc_examples=20,
        feature_examples=30,
        test_examples=30,
        bn_recalibration_examples=16,
        device="cpu",
    )
    run(spec, tmp_path, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "evaluate", str(tmp_path), "--fewshot"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "data set 'digits' has no target classes" in result.stderr
    assert not (tmp_path / "fewshot.nc").exists()


def test_diverged_run_gets_files_of_nan_marked_diverged(tmp_path):
    spec = RunSpec(
        width=0.0625,
        dataset="digits_fs",
        lr=1e20,
        steps=6,
        eval_steps=[0],
        gc_examples=20,
        feature_examples=30,
        test_examples=30,
        bn_recalibration_examples=16,
        fewshot_episodes=5,
        device="cpu",
    )
    assert run(spec, tmp_path, progress=False) == "diverged"
    paths = evaluate(tmp_path, fewshot=True, gc_estimators=True, settings=SETTINGS, device="cpu")
    for path in paths:
        result = xr.open_dataset(path, engine="h5netcdf").load()
        assert result.attrs["status"] == "diverged"
        assert all(np.isnan(result[v].values).all() for v in result.data_vars)
