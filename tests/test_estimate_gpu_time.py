"""benchmarks/estimate_gpu_time.py counts a network's FLOPs at its data set's image size
(32 x 32, mini-ImageNet 84 x 84): checked against the closed form of VGG-11's convolutions,
2 * H * W * 9 * C_in * C_out per 3x3 layer (H, W halved by each 2x2 pool) plus the head's
2 * C * classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gcstudy.study.datasets import DATASETS
from gcstudy.study.spec import RunSpec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "estimate_gpu_time.py"
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")  # config A


@pytest.fixture(scope="module")
def estimate():
    spec = importlib.util.spec_from_file_location("estimate_gpu_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vgg11_forward_flops(side: int, in_channels: int, classes: int, width: float) -> int:
    """FLOPs of one image's forward pass through VGG-11 at ``side`` x ``side`` pixels."""
    flops, channels = 0, in_channels
    for item in VGG11:
        if item == "M":
            side //= 2
            continue
        out = int(item * width)
        flops += 2 * side * side * 9 * channels * out
        channels = out
    return flops + 2 * channels * classes


@pytest.mark.parametrize(("dataset", "side"), [("cifar10", 32), ("mini_imagenet", 84)])
def test_flops_are_counted_at_the_data_sets_image_size(estimate, dataset, side):
    info = DATASETS[dataset]
    assert info.image_size == side
    classes = len(info.split_classes("train"))
    spec = RunSpec.from_dict(
        {"model": "vgg11", "width": 0.125, "dataset": dataset, "batch_size": 8,
         "gc_examples": 128, "device": "cpu"}
    )  # fmt: skip
    step, forward = estimate.step_flops(spec, info.channels, classes)
    assert forward == vgg11_forward_flops(side, info.channels, classes, 0.125)
    # a training step: forward + backward (about two forwards) at the spec's batch size
    assert 2.5 * 8 * forward < step < 3 * 8 * forward
