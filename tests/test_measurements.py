"""The per-step measurements of a run (gcstudy.measure.traced) against independent oracles:
GC estimators with their budget keys, GC and geometric collapse on test data, BatchNorm
recalibration weighted by batch size, and the example-subsampling error of E2."""

import importlib
import re
from pathlib import Path

import pytest
import torch

from gcstudy.data.run_data import load_run_data
from gcstudy.measure.evaluations import load_trained
from gcstudy.measure.traced import TEST_PROBES, probe_seed, recalibrate_batchnorm
from gcstudy.metrics.gc import per_example_gc, subsample
from gcstudy.models import build
from gcstudy.study import traces
from gcstudy.study.spec import RunSpec, SpecError
from gcstudy.training.trainer import run

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    model="vgg11", width=0.0625, dataset="digits", lr=0.05, batch_size=32, steps=10,
    eval_steps=[0, 5], gc_examples=60, feature_examples=120, test_examples=200,
    bn_recalibration_examples=64, checkpoint_every=100, device="cpu",
)  # fmt: skip


@pytest.fixture(scope="module")
def outputs_run(tmp_path_factory):
    """A tiny run whose GC is measured by output-row sampling (4 of the 32 rows)."""
    out = tmp_path_factory.mktemp("outputs")
    run(RunSpec.from_dict({**TINY, "gc_method": "outputs", "gc_outputs": 4}), out, progress=False)
    return out


def exact_at_the_end(out: Path):
    """The final model (its BatchNorm statistics are those of the last measurement, which
    recalibrated them) with its run data, and the trace."""
    model, spec, data, _ = load_trained(out, torch.device("cpu"))
    return model, spec, data, traces.read(out / "trace.h5")


@pytest.mark.parametrize(
    ("method", "budget"), [("outputs", {"gc_outputs": 4}), ("mask", {"gc_mask_rate": 0.05})]
)
def test_gc_methods_outputs_and_mask_measure_with_their_budget(
    tmp_path, outputs_run, method, budget
):
    """Both estimators run during training (before the fix, step 0 raised ValueError: their
    budget never reached the estimator) and agree with the exact GC of the final model on
    the training GC sample."""
    out = outputs_run
    if method == "mask":
        out = tmp_path / "mask"
        assert run(RunSpec.from_dict({**TINY, "gc_method": method, **budget}), out, False)
    model, spec, data, trace = exact_at_the_end(out)
    assert spec.gc_method == method
    exact = per_example_gc(model.embed, data.normalise(data.train_images[data.gc_sample]))
    estimate, stderr = trace.gc.values[-1], trace.gc_stderr.values[-1]
    assert abs(estimate - exact.mean().item()) < 4 * stderr
    assert stderr > 0


def test_gc_budget_larger_than_the_embedding_is_refused():
    with pytest.raises(SpecError, match="'gc_outputs' = 64 is larger than the 32 outputs"):
        RunSpec.from_dict({**TINY, "gc_method": "outputs", "gc_outputs": 64})


def test_gc_and_geometric_collapse_are_traced_on_test_data(outputs_run):
    """gc_test against the exact GC of the final model on the fixed test GC sample (within
    its error); geometric_collapse_test recomputed by hand from the same estimator's
    per-example values on that sample and the class means of the test features."""
    model, spec, data, trace = exact_at_the_end(outputs_run)
    assert len(data.gc_test_sample) == spec.gc_examples
    assert set(data.gc_test_sample.tolist()) <= set(data.test_sample.tolist())
    x = data.normalise(data.test_images[data.gc_test_sample])
    exact = per_example_gc(model.embed, x).mean().item()
    assert abs(trace.gc_test.values[-1] - exact) < 4 * trace.gc_test_stderr.values[-1]
    step = int(trace.step.values[-1])
    estimates = per_example_gc(
        model.embed, x, "outputs", outputs=spec.gc_outputs,
        generator=probe_seed(spec, step, TEST_PROBES),
    )  # fmt: skip
    labels = data.test_targets[data.gc_test_sample]
    with torch.no_grad():
        features = model.embed(data.normalise(data.test_images[data.test_sample])).double()
    targets = data.test_targets[data.test_sample]
    classes = labels.unique()
    gc_of = [estimates[labels == c].mean() for c in classes]
    means = [features[targets == c].mean(dim=0) for c in classes]
    pairs = [(gc_of[i] + gc_of[j]) / (2 * (means[i] - means[j]).square().sum())
             for i in range(len(classes)) for j in range(i + 1, len(classes))]  # fmt: skip
    oracle = torch.stack(pairs).mean().item()
    assert trace.geometric_collapse_test.values[-1] == pytest.approx(oracle, rel=1e-4)
    assert trace.gc_test.values[-1] == pytest.approx(estimates.mean().item(), rel=1e-9)
    assert trace.gc_test.attrs["units"] and trace.geometric_collapse_test.attrs["long_name"]


def test_batchnorm_recalibration_weights_batches_by_size():
    """300 examples in batches of 256 + 44: the first BatchNorm's running mean is the mean
    of its input over all 300 examples, its running variance the size-weighted average of
    the two batches' (unbiased) variances; equal weights would give the 44 as much weight
    as the 256."""
    spec = RunSpec.from_dict({**TINY, "bn_recalibration_examples": 300})
    data = load_run_data(spec, torch.device("cpu"))
    torch.manual_seed(0)
    model = build("vgg11", 10, 1, 0.0625)
    recalibrate_batchnorm(model, data, spec, batch=256)
    x = data.normalise(data.train_images[data.bn_sample]).double()
    conv = model.features[0].double()
    with torch.no_grad():
        inputs = conv(x).transpose(0, 1).flatten(1)  # channels x (examples * pixels)
    pixels = inputs.shape[1] // len(x)
    parts = inputs.split([256 * pixels, 44 * pixels], dim=1)
    weighted_var = sum(part.shape[1] * part.var(dim=1) for part in parts) / inputs.shape[1]
    norm = model.features[1]
    torch.testing.assert_close(norm.running_mean.double(), inputs.mean(dim=1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.running_var.double(), weighted_var, rtol=1e-5, atol=1e-6)
    assert norm.momentum == 0.1  # restored


def test_subsampling_error_has_the_finite_population_correction():
    """E2's "examples" estimator: b = 128 of N = 256 exact values. Its reported standard
    error must match the spread of the subsample mean about the mean of the N values
    (without the correction it is sqrt(2) = 1.41 times too large)."""
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(256, generator=generator, dtype=torch.float64).square() * 100
    draws = [subsample(values, 128, seed) for seed in range(4000)]
    spread = torch.tensor([d.value for d in draws]).std().item()
    reported = sum(d.stderr for d in draws) / len(draws)
    assert reported / spread == pytest.approx(1.0, abs=0.06)
    full = subsample(values, 256, 0)
    assert full.stderr == 0 and full.value == pytest.approx(values.mean().item())
    with pytest.raises(ValueError, match="size must be in"):
        subsample(values, 257)


def test_config_comment_lists_the_evaluation_steps_the_code_makes():
    """config/config.yaml names its evaluation steps in a comment; they must be the ones
    RunSpec.evaluation_steps gives for its defaults."""
    from gcstudy.study import config as study_config

    text = (REPO / "config" / "config.yaml").read_text()
    listed = re.search(r"eval_log_points:.*#.*steps ([\d, ]+)", text)
    assert listed, "the eval_log_points comment lists no steps"
    steps = [int(s) for s in listed.group(1).replace(" ", "").strip(",").split(",")]
    defaults = study_config.load(REPO / "config" / "config.yaml")["defaults"]
    assert steps == RunSpec.from_dict(defaults).evaluation_steps


def test_measurement_and_evaluation_modules_say_what_they_hold():
    """Per-step measurements live in gcstudy.measure.traced, post-training evaluations in
    gcstudy.measure.evaluations; the old, confusable name gcstudy.evaluation is gone."""
    measurements = importlib.import_module("gcstudy.measure.traced")
    assert "at one evaluation step" in measurements.__doc__
    assert (
        "from the final weights" in importlib.import_module("gcstudy.measure.evaluations").__doc__
    )
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gcstudy.evaluation")
