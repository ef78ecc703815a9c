"""The tensors one run trains and measures on, resident on the training device.

Images stay uint8 on the device and are normalised per channel on the fly; a batch is an
index gather. The head predicts ``targets``: the source classes renumbered 0..C-1 in
sorted order of their original label ids (``classes``). With ``train_examples`` the run
trains on a fixed stratified subset of the training split. Fixed, stratified samples of the
training data (for GC, for features, for BatchNorm recalibration), of the test data (for
test metrics, and a ``gc_examples`` part of it for test GC) and of the target classes are
drawn once from ``sample_seed`` so that every run of a study is measured on the same
examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gcstudy.data import load
from gcstudy.study.datasets import get_spec
from gcstudy.study.spec import RunSpec, SpecError, check_sample_sizes


@dataclass(frozen=True)
class RunData:
    train_images: torch.Tensor  # uint8 N x C x S x S (S: the data set's image_size)
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
    gc_test_sample: torch.Tensor  # indices into the test set (a stratified part of test_sample)
    target_images: torch.Tensor | None  # transfer data sets: the target classes' images
    target_labels: torch.Tensor | None  # their original label ids
    target_sample: torch.Tensor | None  # indices into the target images (traced metrics)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 ``(x / 255 - mean) / std`` per channel."""
        x = images.to(torch.float32).div_(255)
        return (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)


def load_run_data(spec: RunSpec, device: torch.device) -> RunData:
    """Load the spec's data set onto ``device`` and draw the fixed metric samples."""
    dataset = get_spec(spec.dataset, spec.data_root)
    train = load(spec.dataset, spec.data_root, "train")
    test = load(spec.dataset, spec.data_root, "test")
    target = load(spec.dataset, spec.data_root, "target") if dataset.transfer else None
    for key, size in (("batch_size", spec.batch_size), ("train_examples", spec.train_examples)):
        if size > len(train.labels):
            raise SpecError(
                f"run spec: key {key!r} = {size} is larger than the "
                f"{len(train.labels)} training examples of {spec.dataset!r}"
            )
    classes = torch.unique(train.labels)
    check_sample_sizes(spec, len(classes), len(dataset.target_classes))
    generator = torch.Generator().manual_seed(spec.sample_seed)
    if spec.train_examples:
        subset = stratified_sample(train.labels, spec.train_examples, generator)
        train = train._replace(images=train.images[subset], labels=train.labels[subset])
    pixels = train.images.to(torch.float64).div(255).transpose(0, 1).flatten(1)
    # drawn in this order from one generator (the order fixes which examples each gets)
    gc_sample = stratified_sample(train.labels, spec.gc_examples, generator)
    feature_sample = stratified_sample(train.labels, spec.feature_examples, generator)
    bn_sample = stratified_sample(train.labels, spec.bn_recalibration_examples, generator)
    test_sample = stratified_sample(test.labels, spec.test_examples, generator)
    gc_test_sample = test_sample[
        stratified_sample(test.labels[test_sample], spec.gc_examples, generator)
    ]
    target_sample = (
        None
        if target is None
        else stratified_sample(target.labels, spec.target_examples, generator)
    )
    to = lambda t: t.to(device)  # noqa: E731
    return RunData(
        train_images=to(train.images),
        train_targets=to(torch.searchsorted(classes, train.labels)),
        test_images=to(test.images),
        test_targets=to(torch.searchsorted(classes, test.labels)),
        classes=classes,
        mean=to(pixels.mean(dim=1).float()),
        std=to(pixels.std(dim=1).clamp_min(1e-8).float()),
        gc_sample=gc_sample,
        feature_sample=feature_sample,
        bn_sample=bn_sample,
        test_sample=test_sample,
        gc_test_sample=gc_test_sample,
        target_images=None if target is None else to(target.images),
        target_labels=None if target is None else to(target.labels),
        target_sample=target_sample,
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
