"""The tensors one run trains and measures on, resident on the training device.

Images stay uint8 on the device and are normalised per channel on the fly; a batch is an
index gather. The head predicts ``targets``: the source classes renumbered 0..C-1 in
sorted order of their original label ids (``classes``). Fixed, stratified samples of the
training data (for GC, for features, for BatchNorm recalibration) and of the test data are
drawn once from ``sample_seed`` so that every run of a study is measured on the same
examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gcstudy.data import DATASETS, load
from gcstudy.spec import RunSpec, SpecError, check_sample_sizes


@dataclass(frozen=True)
class RunData:
    train_images: torch.Tensor  # uint8 N x C x 32 x 32
    train_targets: torch.Tensor  # int64 N, 0..C-1
    test_images: torch.Tensor
    test_targets: torch.Tensor
    classes: torch.Tensor  # int64 C: original label id of each head output
    mean: torch.Tensor  # float32 C_in: per-channel mean of the training pixels (0..1 scale)
    std: torch.Tensor  # float32 C_in: per-channel standard deviation
    gc_sample: torch.Tensor  # indices into the training set
    feature_sample: torch.Tensor
    bn_sample: torch.Tensor
    test_sample: torch.Tensor  # indices into the test set
    target_images: torch.Tensor | None  # transfer data sets: the target classes' images
    target_labels: torch.Tensor | None  # their original label ids

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 ``(x / 255 - mean) / std`` per channel."""
        x = images.to(torch.float32).div_(255)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


def load_run_data(spec: RunSpec, device: torch.device) -> RunData:
    """Load the spec's data set onto ``device`` and draw the fixed metric samples."""
    dataset = DATASETS[spec.dataset]
    train = load(spec.dataset, spec.data_root, "train")
    test = load(spec.dataset, spec.data_root, "test")
    if spec.batch_size > len(train.labels):
        raise SpecError(
            f"run spec: key 'batch_size' = {spec.batch_size} is larger than the "
            f"{len(train.labels)} training examples of {spec.dataset!r}"
        )
    classes = torch.unique(train.labels)
    check_sample_sizes(spec, len(classes))
    pixels = train.images.to(torch.float64).div(255).transpose(0, 1).flatten(1)
    generator = torch.Generator().manual_seed(spec.sample_seed)
    target = load(spec.dataset, spec.data_root, "target") if dataset.transfer else None
    to = lambda t: t.to(device)  # noqa: E731
    return RunData(
        train_images=to(train.images),
        train_targets=to(torch.searchsorted(classes, train.labels)),
        test_images=to(test.images),
        test_targets=to(torch.searchsorted(classes, test.labels)),
        classes=classes,
        mean=to(pixels.mean(dim=1).float()),
        std=to(pixels.std(dim=1).clamp_min(1e-8).float()),
        gc_sample=stratified_sample(train.labels, spec.gc_examples, generator),
        feature_sample=stratified_sample(train.labels, spec.feature_examples, generator),
        bn_sample=stratified_sample(train.labels, spec.bn_recalibration_examples, generator),
        test_sample=stratified_sample(test.labels, spec.test_examples, generator),
        target_images=None if target is None else to(target.images),
        target_labels=None if target is None else to(target.labels),
    )


def stratified_sample(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of ``n`` examples, ``n // C`` (+1 for the first ``n % C`` classes) drawn
    uniformly without replacement from each class, capped at the class size; the leftover
    is spread over classes with examples to spare. ``n = 0`` or ``n >= N`` means all."""
    if n == 0 or n >= len(labels):
        return torch.arange(len(labels))
    classes = torch.unique(labels)
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    quota = [0] * len(classes)
    remaining = n
    while remaining > 0:
        open_classes = [k for k, m in enumerate(members) if quota[k] < len(m)]
        share, extra = divmod(remaining, len(open_classes))
        for rank, k in enumerate(open_classes):
            take = min(share + (rank < extra), len(members[k]) - quota[k])
            quota[k] += take
            remaining -= take
    chosen = [
        m[torch.randperm(len(m), generator=generator)[:q]]
        for m, q in zip(members, quota, strict=True)
    ]
    return torch.cat(chosen).sort().values
