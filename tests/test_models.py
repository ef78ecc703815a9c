"""Models: published parameter counts, the embed/head decomposition, width and channels."""

import pytest
import torch

from gcstudy.models import MODELS, build

# Parameter counts of the CIFAR-style networks at width 1, 10 classes, RGB input, as
# published for the common CIFAR adaptations (9.23 M, 9.41 M, 11.17 M).
PUBLISHED_MILLIONS = {"vgg11": 9.23, "vgg13": 9.41, "resnet18": 11.17}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_matches_published_within_half_a_percent(name):
    millions = count(build(name, num_classes=10)) / 1e6
    assert abs(millions - PUBLISHED_MILLIONS[name]) / PUBLISHED_MILLIONS[name] < 0.005


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_model_is_head_of_embedding(name, in_channels):
    torch.manual_seed(0)
    model = build(name, num_classes=7, in_channels=in_channels, width=0.125).eval()
    x = torch.randn(3, in_channels, 32, 32)
    embedding = model.embed(x)
    assert embedding.shape == (3, model.embedding_dim) == (3, 64)
    assert torch.equal(model(x), model.head(embedding))
    assert model(x).shape == (3, 7)


@pytest.mark.parametrize("name", MODELS)
def test_full_width_embedding_is_512(name):
    assert build(name, num_classes=10).embedding_dim == 512


def test_width_scales_every_channel_count():
    narrow, full = build("vgg11", 10, width=0.25), build("vgg11", 10)
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert convs(narrow) == [c // 4 for c in convs(full)]
    # Conv weights dominate: 1/16 of the FLOPs and roughly 1/16 of the parameters.
    assert count(narrow) / count(full) == pytest.approx(1 / 16, rel=0.05)


def test_bad_arguments_are_refused_with_names():
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'.*vgg11, vgg13, resnet18"):
        build("vgg16", 10)
    with pytest.raises(ValueError, match="width must be > 0"):
        build("vgg11", 10, width=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build("resnet18", 0)
