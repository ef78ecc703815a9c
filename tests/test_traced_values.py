"""The traced values of a real run against an independent recomputation.

A tiny transfer run (digits_fs: source digits 0-4, target digits 5-9) is trained once with
``gcstudy.training.trainer.run``. The test reloads its ``model.pt`` and the run's fixed samples and
recomputes the final step's traced values with plain torch autograd and numpy formulas
written from docs/science.md, without the measurement code (``gcstudy.measure.traced`` and the
``gcstudy.metrics`` functions it calls). What the recomputation takes from the run:

* the weights, including the BatchNorm running statistics saved after the final step's
  recalibration (those the final measurement used; checked separately below);
* the fixed sample indices (``gcstudy.data.run_data.load_run_data``) and the input normalisation
  recorded in the trace;
* the run's randomness: the Hutchinson probes come from the run's documented probe seed,
  and the few-shot episodes are the indices of ``gcstudy.metrics.fewshot.sample_episodes``
  (the episode draw itself is checked for validity and uniformity in test_fewshot.py).

A newly traced variable is one more entry in ``ORACLES`` (pieces such as features,
Jacobians and same-probe Hutchinson estimates are shared properties of ``FinalState``);
``test_every_traced_variable_is_recomputed`` fails until the entry exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pytest
import torch

from gcstudy.data.run_data import RunData, load_run_data
from gcstudy.metrics.fewshot import sample_episodes
from gcstudy.models import build
from gcstudy.study import traces
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import run

SPEC = dict(
    model="vgg11", width=0.0625, dataset="digits_fs", lr=0.05, batch_size=32, steps=10,
    eval_steps=[0], gc_examples=40, feature_examples=100, test_examples=100,
    bn_recalibration_examples=64, fewshot_episodes=200, checkpoint_every=100, device="cpu",
)  # fmt: skip
NOT_RECOMPUTED = {
    "examples_seen": "bookkeeping: step * batch_size (test_train.py checks it)",
    "wall_time": "a clock reading",
}


# --- plain formulas (docs/science.md: collapse measures, NCC error bound, few-shot) -----


def class_moments(features: np.ndarray, labels: np.ndarray):
    """Sorted classes, class means ``mu_c`` and population variances
    ``Var_c = mean ||h - mu_c||^2``, two-pass."""
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    deviations = features - means[np.searchsorted(classes, labels)]
    variances = np.array([np.square(deviations[labels == c]).sum(axis=1).mean() for c in classes])
    return classes, means, variances


def pair_mean(spreads: np.ndarray, means: np.ndarray) -> float:
    """Mean over class pairs ``i < j`` of ``(s_i + s_j) / (2 ||mu_i - mu_j||^2)``: NC with
    the class variances as ``s``, geometric collapse with the class GCs."""
    values = [
        (spreads[i] + spreads[j]) / (2 * np.square(means[i] - means[j]).sum())
        for i in range(len(means))
        for j in range(i + 1, len(means))
    ]
    return float(np.mean(values))


def nc(features: np.ndarray, labels: np.ndarray) -> float:
    _, means, variances = class_moments(features, labels)
    return pair_mean(variances, means)


def nc1(features: np.ndarray, labels: np.ndarray) -> float:
    """``tr(Sigma_W Sigma_B^+) / C`` with ``Sigma_B^+`` on the top ``C - 1`` eigenvectors of
    ``Sigma_B`` (between-class covariance around the mean of the class means)."""
    classes, means, _ = class_moments(features, labels)
    deviations = features - means[np.searchsorted(classes, labels)]
    within = deviations.T @ deviations / len(features)
    centred = means - means.mean(axis=0)
    between = centred.T @ centred / len(classes)
    eigenvalues, vectors = np.linalg.eigh(between)
    top = slice(len(eigenvalues) - (len(classes) - 1), None)
    pseudo_inverse = (vectors[:, top] / eigenvalues[top]) @ vectors[:, top].T
    return float(np.trace(within @ pseudo_inverse) / len(classes))


def ncc_error(train: Features, test: Features) -> float:
    """Error of the nearest class mean (means of ``train``) on ``test``."""
    classes, means, _ = class_moments(train.features, train.labels)
    distances = np.square(test.features[:, None, :] - means[None]).sum(axis=2)
    return float(np.mean(classes[distances.argmin(axis=1)] != test.labels))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def bound(num_classes: int, collapse: float, shots: int | None = None) -> float:
    """``4 (C - 1) * collapse``, times ``(1 + 1/shots)`` for means from ``shots`` examples."""
    return 4 * (num_classes - 1) * (1 + 1 / shots if shots else 1) * collapse


def gaussian_poincare_constant(inputs: np.ndarray, labels: np.ndarray) -> float:
    """``max_c lambda_max(Cov(x | c))`` (population covariance of the flattened inputs),
    from the eigenvalues of each class's small Gram matrix."""
    flat = inputs.reshape(len(inputs), -1)
    tops = []
    for c in np.unique(labels):
        rows = flat[labels == c] - flat[labels == c].mean(axis=0)
        tops.append(np.linalg.eigvalsh(rows @ rows.T)[-1] / len(rows))
    return float(max(tops))


def fewshot_ncc(features: np.ndarray, labels: np.ndarray, spec: RunSpec, shots: int):
    """Per-episode NCC accuracy of the spec's protocol on the episodes the run drew."""
    episodes = sample_episodes(
        torch.as_tensor(labels),
        ways=spec.fewshot_ways,
        shots=shots,
        queries=spec.fewshot_queries,
        episodes=spec.fewshot_episodes,
        seed=spec.fewshot_seed,
    )
    if spec.fewshot_normalize:
        features = features / np.linalg.norm(features, axis=1, keepdims=True)
    prototypes = features[episodes.support.numpy()].mean(axis=2)  # E x W x d
    queries = features[episodes.query.numpy()]  # E x W x Q x d
    distances = np.square(queries[:, :, :, None, :] - prototypes[:, None, None]).sum(axis=-1)
    correct = distances.argmin(axis=-1) == np.arange(spec.fewshot_ways)[None, :, None]
    return correct.reshape(len(correct), -1).mean(axis=1)


# --- the final state of the run ----------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """Embeddings (float64), labels and logits of a set of images under the final model."""

    inputs: torch.Tensor  # normalised float32 images
    labels: np.ndarray
    features: np.ndarray
    logits: np.ndarray


@dataclass
class GCSample:
    """A fixed GC sample under the final model: normalised images, labels, probe seed."""

    model: torch.nn.Module
    inputs: torch.Tensor
    labels: np.ndarray
    probe_seed: int

    @cached_property
    def jacobians(self) -> np.ndarray:
        """``J_f(x_i)``, N x p x d (float64), one backward per output row (eval mode: row k
        of every example's Jacobian is the gradient of sum_i f_k(x_i))."""
        x = self.inputs.clone().requires_grad_(True)
        h = self.model.embed(x)
        rows = [
            torch.autograd.grad(h[:, k].sum(), x, retain_graph=True)[0].flatten(1)
            for k in range(h.shape[1])
        ]
        return torch.stack(rows, dim=1).double().numpy()

    @cached_property
    def hutchinson_per_example(self) -> np.ndarray:
        """``||v_i^T J_f(x_i)||^2`` with the run's Rademacher probes: one float32 draw of
        N x p from a generator seeded with the probe seed."""
        generator = torch.Generator().manual_seed(int(self.probe_seed))
        shape = self.jacobians.shape[:2]
        v = torch.randint(0, 2, shape, generator=generator, dtype=torch.float32) * 2 - 1
        return np.square(np.einsum("np,npd->nd", v.double().numpy(), self.jacobians)).sum(1)


class FinalState:
    """``model.pt`` in eval mode with the run's data, and the pieces the oracles share."""

    def __init__(self, folder):
        saved = torch.load(folder / "model.pt", weights_only=True)
        self.spec = RunSpec.from_dict(saved["spec"])
        self.trace = traces.read(folder / "trace.h5")
        self.data: RunData = load_run_data(self.spec, torch.device("cpu"))
        self.model = build(
            self.spec.model, len(saved["classes"]), saved["in_channels"], self.spec.width
        )
        self.model.load_state_dict(saved["state_dict"])
        self.model.eval()
        normalisation = self.trace.attrs["normalisation"]
        self.mean = torch.tensor(normalisation["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(normalisation["std"]).view(1, -1, 1, 1)
        self.step = int(self.trace.step.values[-1])

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    @torch.no_grad()
    def embed(self, images: torch.Tensor, labels: torch.Tensor) -> Features:
        x = self.inputs(images)
        h = self.model.embed(x)
        return Features(x, labels.numpy(), h.double().numpy(), self.model.head(h).double().numpy())

    @cached_property
    def train(self) -> Features:
        index = self.data.feature_sample
        return self.embed(self.data.train_images[index], self.data.train_targets[index])

    @cached_property
    def test(self) -> Features:
        index = self.data.test_sample
        return self.embed(self.data.test_images[index], self.data.test_targets[index])

    @cached_property
    def target(self) -> Features:
        return self.embed(self.data.target_images, self.data.target_labels)

    @cached_property
    def gc_samples(self) -> dict[str, GCSample]:
        """The GC sample of the training set and that of the test set (a stratified part of
        the test sample), each with its probe stream (SeedSequence([seed, step, s]))."""
        data = self.data

        def sample(images, targets, index, stream: int) -> GCSample:
            seed = np.random.SeedSequence([self.spec.seed, self.step, stream]).generate_state(1)
            return GCSample(self.model, self.inputs(images[index]), targets[index].numpy(), seed[0])

        return {
            "train": sample(data.train_images, data.train_targets, data.gc_sample, 1),
            "test": sample(data.test_images, data.test_targets, data.gc_test_sample, 4),
        }

    def gc_per_class(self, split: str = "train") -> np.ndarray:
        sample = self.gc_samples[split]
        per_example, labels = sample.hutchinson_per_example, sample.labels
        return np.array([per_example[labels == c].mean() for c in np.unique(labels)])

    def geometric_collapse(self, split: str = "train") -> float:
        features = self.train if split == "train" else self.test
        _, means, _ = class_moments(features.features, features.labels)
        return pair_mean(self.gc_per_class(split), means)

    def poincare_constant(self) -> float:
        if self.spec.poincare_constant is not None:
            return self.spec.poincare_constant
        return gaussian_poincare_constant(self.train.inputs.double().numpy(), self.train.labels)

    def fewshot(self, shots: int) -> np.ndarray:
        return fewshot_ncc(self.target.features, self.target.labels, self.spec, shots)


def accuracy(split: Features) -> float:
    return float(np.mean(split.logits.argmax(axis=1) == split.labels))


def stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values)))


@dataclass(frozen=True)
class Oracle:
    """How to recompute one traced variable at the final step from ``FinalState``."""

    value: Callable[[FinalState], float | np.ndarray]
    rtol: float = 1e-5  # float32 forward passes in a different order
    atol: float = 1e-9


WAYS = lambda s: s.spec.fewshot_ways  # noqa: E731
ORACLES: dict[str, Oracle] = {
    "train_loss": Oracle(lambda s: cross_entropy(s.train.logits, s.train.labels)),
    "train_accuracy": Oracle(lambda s: accuracy(s.train), atol=0),
    "test_loss": Oracle(lambda s: cross_entropy(s.test.logits, s.test.labels)),
    "test_accuracy": Oracle(lambda s: accuracy(s.test), atol=0),
    "gc": Oracle(lambda s: s.gc_samples["train"].hutchinson_per_example.mean()),
    "gc_stderr": Oracle(lambda s: stderr(s.gc_samples["train"].hutchinson_per_example)),
    "gc_per_class": Oracle(lambda s: s.gc_per_class("train")),
    "geometric_collapse": Oracle(lambda s: s.geometric_collapse("train")),
    "gc_test": Oracle(lambda s: s.gc_samples["test"].hutchinson_per_example.mean()),
    "gc_test_stderr": Oracle(lambda s: stderr(s.gc_samples["test"].hutchinson_per_example)),
    "geometric_collapse_test": Oracle(lambda s: s.geometric_collapse("test")),
    "nc_train": Oracle(lambda s: nc(s.train.features, s.train.labels)),
    "nc_test": Oracle(lambda s: nc(s.test.features, s.test.labels)),
    "nc1_train": Oracle(lambda s: nc1(s.train.features, s.train.labels)),
    "ncc_train_error": Oracle(lambda s: ncc_error(s.train, s.train), atol=0),
    "ncc_test_error": Oracle(lambda s: ncc_error(s.train, s.test), atol=0),
    "bound_cdnv": Oracle(lambda s: bound(s.data.num_classes, nc(s.train.features, s.train.labels))),
    "bound_gc": Oracle(
        lambda s: bound(s.data.num_classes, s.poincare_constant() * s.geometric_collapse())
    ),
    "target_nc": Oracle(lambda s: nc(s.target.features, s.target.labels)),
    "fewshot_1shot_accuracy": Oracle(lambda s: s.fewshot(1).mean(), atol=1e-12),
    "fewshot_1shot_ci95": Oracle(lambda s: 1.96 * stderr(s.fewshot(1))),
    "fewshot_1shot_bound": Oracle(
        lambda s: bound(WAYS(s), nc(s.target.features, s.target.labels), shots=1)
    ),
    "fewshot_5shot_accuracy": Oracle(lambda s: s.fewshot(5).mean(), atol=1e-12),
    "fewshot_5shot_ci95": Oracle(lambda s: 1.96 * stderr(s.fewshot(5))),
    "fewshot_5shot_bound": Oracle(
        lambda s: bound(WAYS(s), nc(s.target.features, s.target.labels), shots=5)
    ),
}


@pytest.fixture(scope="module")
def final(tmp_path_factory) -> FinalState:
    folder = tmp_path_factory.mktemp("traced")
    assert run(RunSpec.from_dict(SPEC), folder, progress=False) == "complete"
    return FinalState(folder)


def test_every_traced_variable_is_recomputed(final):
    assert set(final.trace.data_vars) - set(NOT_RECOMPUTED) == set(ORACLES)


@pytest.mark.parametrize("name", ORACLES)
def test_traced_value_matches_independent_recomputation(final, name):
    oracle = ORACLES[name]
    traced = final.trace[name].values[-1]
    np.testing.assert_allclose(traced, oracle.value(final), rtol=oracle.rtol, atol=oracle.atol)


@pytest.mark.parametrize("split, name", [("train", "gc"), ("test", "gc_test")])
def test_traced_gc_is_the_exact_gc_within_probe_noise_and_reported_error(final, split, name):
    """The exact ``mean ||J_f(x_i)||_F^2`` of each GC sample against the traced one-probe
    estimate: they differ only by probe noise, whose variance is known exactly from the
    Jacobians (Rademacher: ``Var ||v^T J||^2 = 2 (||J J^T||_F^2 - sum_k (J J^T)_kk^2)``)."""
    j = final.gc_samples[split].jacobians
    exact = np.square(j).sum(axis=(1, 2)).mean()
    gram = np.einsum("npd,nqd->npq", j, j)
    variance = 2 * (np.square(gram).sum(axis=(1, 2)) - np.square(np.diagonal(gram, 0, 1, 2)).sum(1))
    probe_sd = math.sqrt(variance.sum()) / len(j)
    traced = final.trace[name].values[-1]
    assert abs(traced - exact) <= 4 * probe_sd
    assert abs(traced - exact) <= 3 * final.trace[f"{name}_stderr"].values[-1]
    assert probe_sd < 0.1 * exact  # the check has teeth: a 40 % error cannot pass


def test_saved_batchnorm_statistics_are_the_recalibration_samples(final):
    """The weights the oracles use carry BatchNorm statistics recomputed on the fixed
    recalibration sample (one batch here: mean and unbiased variance of each layer's input
    in a train-mode forward pass), as the final measurement requires."""
    spec, data = final.spec, final.data
    assert 0 < len(data.bn_sample) <= 256
    model = build(spec.model, data.num_classes, 1, spec.width).train()
    model.load_state_dict(final.model.state_dict())
    saved = dict(final.model.named_modules())
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    inputs = {}

    def keep_input(name):
        def hook(module, args):
            inputs[name] = args[0].clone()

        return hook

    for name, m in norms.items():
        m.register_forward_pre_hook(keep_input(name))
    with torch.no_grad():
        model(final.inputs(data.train_images[data.bn_sample]))
    assert norms and set(inputs) == set(norms)
    for name, x in inputs.items():
        x = x.double().transpose(0, 1).flatten(1)  # channels x (examples * pixels)
        stored = saved[name]
        torch.testing.assert_close(stored.running_mean.double(), x.mean(1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stored.running_var.double(), x.var(1), rtol=1e-4, atol=1e-5)
