"""What a run records at one evaluation step (the variables of ``gcstudy.study.traces``).

All measurements run the network in eval mode, after recomputing the BatchNorm running
statistics on a fixed training sample (stale statistics make early metrics meaningless:
docs/facts.md#stale-batchnorm-statistics), without parameter gradients, with features in
float32 and statistics accumulated in float64 by the metric functions. GC and geometric
collapse are measured on a fixed training sample and, with independent probes, on a fixed
test sample (docs/science.md#gc-estimators).

(``gcstudy.measure.evaluations`` holds the evaluations of a finished run; this module the per-step
measurements during training, which ``gcstudy.measure.trained`` also applies to any trained
network: one composition, so ``gcstudy measure`` reproduces a run's trace.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from gcstudy.data.run_data import RunData
from gcstudy.metrics.bound import ncc_bound, poincare_constants
from gcstudy.metrics.collapse import class_stats, geometric_collapse, nc1, ncc_error
from gcstudy.metrics.collapse import neural_collapse as nc_of
from gcstudy.metrics.fewshot import fewshot_eval
from gcstudy.metrics.gc import GCEstimate, PerClassGC, per_class_summary, per_example_gc, summarise
from gcstudy.study.spec import FEWSHOT_SHOTS, RunSpec

# independent random streams of one run's measurement probes (see probe_seed)
TRAIN_PROBES, TEST_PROBES = 1, 4


def measure(
    model,
    data: RunData,
    spec: RunSpec,
    step: int,
    poincare: float,
    with_head: bool = True,
    t_interval: bool = False,
) -> dict:
    """All traced quantities at ``step`` (floats, and ``gc_per_class`` as a list of C).

    ``with_head=False`` leaves out the head's loss and accuracy (``gcstudy measure``: a
    network whose head may predict other classes); ``t_interval``: see
    ``measure_transfer``. The model is left in train mode."""
    recalibrate_batchnorm(model, data, spec)
    model.eval()
    train, test = embed_samples(model, data)
    values = head_metrics(train, test) if with_head else {}
    values.update(measure_embedding(model, data, spec, step, poincare, train, test))
    if data.target_images is not None:
        values.update(measure_transfer(model, data, spec, t_interval))
    model.train()
    return values


class Embedded(NamedTuple):
    """The embedding (float32, N x p) and logits of a fixed sample, with its head targets."""

    features: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


def embed_samples(model, data: RunData) -> tuple[Embedded, Embedded]:
    """The fixed training feature sample and the fixed test sample, embedded."""
    train_x, test_x = data.feature_sample, data.test_sample
    train = Embedded(*embed(model, data, data.train_images[train_x]), data.train_targets[train_x])
    test = Embedded(*embed(model, data, data.test_images[test_x]), data.test_targets[test_x])
    return train, test


def head_metrics(train: Embedded, test: Embedded) -> dict:
    """Cross-entropy and accuracy of the head on the training feature and test samples."""
    return {
        "train_loss": F.cross_entropy(train.logits, train.targets).item(),
        "train_accuracy": accuracy(train.logits, train.targets),
        "test_loss": F.cross_entropy(test.logits, test.targets).item(),
        "test_accuracy": accuracy(test.logits, test.targets),
    }


def measure_embedding(
    model,
    data: RunData,
    spec: RunSpec,
    step: int,
    poincare: float,
    train: Embedded,
    test: Embedded,
) -> dict:
    """The quantities of the embedding on the source classes (no head): GC and geometric
    collapse on the training and test GC samples, NC, NC1, NCC errors and both NCC
    bounds (``train``, ``test``: ``embed_samples``; model in eval mode)."""
    gc, per_class = measure_gc(
        model, data, data.train_images[data.gc_sample], data.train_targets[data.gc_sample],
        spec, probe_seed(spec, step, TRAIN_PROBES),
    )  # fmt: skip
    gc_test, per_class_test = measure_gc(
        model, data, data.test_images[data.gc_test_sample], data.test_targets[data.gc_test_sample],
        spec, probe_seed(spec, step, TEST_PROBES),
    )  # fmt: skip
    nc_train = nc_of(train.features, train.targets).value
    collapse = collapse_of(per_class, train.features, train.targets, "training")
    bound = ncc_bound(
        data.num_classes, nc=nc_train, geometric_collapse=collapse, poincare_constant=poincare
    )
    return {
        "gc": gc.value,
        "gc_stderr": gc.stderr,
        "gc_per_class": per_class.value.tolist(),
        "geometric_collapse": collapse,
        "gc_test": gc_test.value,
        "gc_test_stderr": gc_test.stderr,
        "geometric_collapse_test": collapse_of(per_class_test, test.features, test.targets, "test"),
        "nc_train": nc_train,
        "nc_test": nc_of(test.features, test.targets).value,
        "nc1_train": nc1(train.features, train.targets),
        "ncc_train_error": ncc_error(train.features, train.targets, train.features, train.targets),
        "ncc_test_error": ncc_error(train.features, train.targets, test.features, test.targets),
        "bound_cdnv": bound.cdnv,
        "bound_gc": bound.gc,
    }


def measure_gc(
    model, data: RunData, images: torch.Tensor, targets: torch.Tensor, spec: RunSpec, seed: int
) -> tuple[GCEstimate, PerClassGC]:
    """GC of the embedding on uint8 ``images`` with the spec's estimator and budget, overall
    and per class (``targets``: head indices)."""
    per_example = per_example_gc(
        model.embed,
        data.normalise(images),
        spec.gc_method,
        probes=spec.gc_probes,
        outputs=spec.gc_outputs,
        rate=spec.gc_mask_rate,
        generator=seed,
    )
    return summarise(per_example, spec.gc_method), per_class_summary(per_example, targets.cpu())


def collapse_of(per_class: PerClassGC, features, targets, sample: str) -> float:
    """Geometric collapse from per-class GC and the class means of ``features``."""
    stats = class_stats(features, targets)
    if not torch.equal(per_class.classes, stats.classes.cpu()):
        raise RuntimeError(f"the {sample} GC sample and feature sample hold different classes")
    return geometric_collapse(per_class.value, stats.means.cpu()).value


def measure_transfer(model, data: RunData, spec: RunSpec, t_interval: bool = False) -> dict:
    """Target NC and few-shot NCC accuracy on the fixed target sample, frozen embedding.
    The 95 % interval half-width is the normal one (``FewShotResult.ci95``, the trace's) or,
    with ``t_interval``, the Student-t one (``FewShotResult.ci95_t``, ``gcstudy measure``'s)."""
    features, _ = embed(model, data, data.target_images[data.target_sample])
    labels = data.target_labels[data.target_sample]
    target_nc = nc_of(features, labels).value
    values = {"target_nc": target_nc}
    for shots in FEWSHOT_SHOTS:
        result = fewshot(features, labels, spec, shots, spec.fewshot_episodes)
        bound = ncc_bound(spec.fewshot_ways, nc=target_nc, shots=shots)
        values[f"fewshot_{shots}shot_accuracy"] = result.accuracy
        values[f"fewshot_{shots}shot_ci95"] = result.ci95_t if t_interval else result.ci95
        values[f"fewshot_{shots}shot_bound"] = bound.cdnv
    return values


def fewshot(features, labels, spec: RunSpec, shots: int, episodes: int, classifier="ncc"):
    """The run spec's few-shot protocol (ways, queries, episode seed, normalisation)."""
    return fewshot_eval(
        features,
        labels,
        ways=spec.fewshot_ways,
        shots=shots,
        queries=spec.fewshot_queries,
        episodes=episodes,
        seed=spec.fewshot_seed,
        classifier=classifier,
        normalize=spec.fewshot_normalize,
    )


@torch.no_grad()
def embed(model, data: RunData, images: torch.Tensor, batch: int = 512):
    """Embeddings (float32) and logits of uint8 ``images``, in eval mode, in batches."""
    features, logits = [], []
    for start in range(0, len(images), batch):
        h = model.embed(data.normalise(images[start : start + batch])).float()
        features.append(h)
        logits.append(model.head(h))
    return torch.cat(features), torch.cat(logits)


@torch.no_grad()
def recalibrate_batchnorm(model, data: RunData, spec: RunSpec, batch: int = 256) -> None:
    """Replace every BatchNorm's running statistics by their average over the fixed
    ``bn_sample`` (train-mode forward passes in batches of at most ``batch``, no gradient).
    No-op when disabled.

    Batches are weighted by their size: after batches of sizes b_1..b_k the running mean
    is ``sum_j b_j m_j / sum_j b_j`` of the batch means m_j (and the running variance the
    same average of the batch variances), by setting the momentum of batch j to
    ``b_j / (b_1 + ... + b_j)``. (``momentum=None``, PyTorch's cumulative average, weights
    every batch equally, so a short last batch would count as much as a full one.)
    """
    if spec.bn_recalibration_examples == 0:
        return
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    sample = data.train_images[data.bn_sample]
    for start in range(0, len(sample), batch):
        images = sample[start : start + batch]
        for m in norms:
            m.momentum = len(images) / (start + len(images))
        model(data.normalise(images))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == targets).double().mean().item()


def probe_seed(spec: RunSpec, step: int, stream: int = TRAIN_PROBES) -> int:
    """Seed of the GC probes at an evaluation step: fixed per (run seed, step, stream), so a
    resumed run draws the same probes; streams keep training and test probes independent."""
    return int(np.random.SeedSequence([spec.seed, step, stream]).generate_state(1)[0])


def poincare_constant(data: RunData, spec: RunSpec) -> float:
    """The spec's Poincare constant, or the Gaussian proxy ``max_i lambda_max(Cov(x|i))``
    on the normalised training inputs of the feature sample."""
    if spec.poincare_constant is not None:
        return spec.poincare_constant
    sample = data.feature_sample
    _, constants = poincare_constants(
        data.normalise(data.train_images[sample]).cpu(), data.train_targets[sample].cpu()
    )
    return float(constants.max())
