"""Models: published parameter counts, the embed/head decomposition, width and channels,
84x84 inputs, and torchvision's architectures against torchvision's own networks."""

import pytest
import torch
import torchvision

from gcstudy.models import MODELS, build, build_shapes
from gcstudy.models.from_torchvision import TorchvisionNet
from gcstudy.study.networks import check_model_name, embedding_dim, is_model_name
from gcstudy.study.spec import RunSpec, SpecError

# Parameter counts of the CIFAR-style networks at width 1, 10 classes, RGB input, as
# published for the common CIFAR adaptations (9.23 M, 9.41 M, 11.17 M, 23.52 M).
PUBLISHED_MILLIONS = {"vgg11": 9.23, "vgg13": 9.41, "resnet18": 11.17, "resnet50": 23.52}
# The CIFAR-style ResNet-50 to the parameter (kuangliu/pytorch-cifar and
# weiaicunzai/pytorch-cifar100): classes -> parameters.
RESNET50_PARAMETERS = {100: 23_705_252, 10: 23_520_842}
# docs/science.md#networks's table: (model, classes) -> parameters at width 1, RGB input.
DOCUMENTED_PARAMETERS = {
    ("vgg11", 10): 9_231_114, ("vgg11", 100): 9_277_284,
    ("vgg13", 10): 9_416_010, ("vgg13", 100): 9_462_180,
    ("resnet18", 10): 11_173_962, ("resnet18", 100): 11_220_132,
    ("resnet50", 10): 23_520_842, ("resnet50", 100): 23_705_252,
}  # fmt: skip


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
    assert embedding.shape == (3, model.embedding_dim) == (3, embedding_dim(name, 0.125))
    assert embedding_dim(name, 0.125) == {"resnet50": 256}.get(name, 64)
    assert torch.equal(model(x), model.head(embedding))
    assert model(x).shape == (3, 7)


@pytest.mark.parametrize("name", MODELS)
def test_full_width_embedding_is_512_or_2048_for_resnet50(name):
    expected = 2048 if name == "resnet50" else 512
    assert build(name, num_classes=10).embedding_dim == embedding_dim(name, 1) == expected


def test_gc_outputs_are_checked_against_each_models_embedding():
    outputs = dict(width=0.125, gc_method="outputs")
    assert RunSpec.from_dict({"model": "resnet50", "gc_outputs": 256, **outputs})
    with pytest.raises(SpecError, match="larger than the 256 outputs of the embedding of resnet50"):
        RunSpec.from_dict({"model": "resnet50", "gc_outputs": 257, **outputs})
    with pytest.raises(SpecError, match="larger than the 64 outputs of the embedding of vgg13"):
        RunSpec.from_dict({"model": "vgg13", "gc_outputs": 65, **outputs})
    torchvision = {"model": "torchvision:resnet18", "width": 1, "gc_method": "outputs"}
    assert RunSpec.from_dict({**torchvision, "gc_outputs": 4096})  # known once built


@pytest.mark.parametrize("classes", RESNET50_PARAMETERS)
def test_resnet50_has_the_published_parameter_count(classes):
    assert count(build("resnet50", classes)) == RESNET50_PARAMETERS[classes]


@pytest.mark.parametrize(("name", "classes"), DOCUMENTED_PARAMETERS)
def test_documented_parameter_counts(name, classes):
    assert count(build(name, classes)) == DOCUMENTED_PARAMETERS[name, classes]


def test_resnet50_embeds_to_2048_with_bottlenecks_3_4_6_3():
    torch.manual_seed(0)
    model = build("resnet50", 100).eval()
    with torch.no_grad():
        assert model.embed(torch.randn(2, 3, 32, 32)).shape == (2, 2048)
    per_stage = [0, 0, 0, 0]
    channels = []
    for block in model.blocks:
        per_stage[[64, 128, 256, 512].index(block.conv1.out_channels)] += 1
        channels.append(block.conv3.out_channels)
    assert per_stage == [3, 4, 6, 3]
    assert sorted(set(channels)) == [256, 512, 1024, 2048]  # expansion 4


@pytest.mark.parametrize("name", MODELS)
def test_every_model_takes_84x84_inputs(name):
    torch.manual_seed(0)
    model = build(name, num_classes=5, in_channels=3, width=0.125).eval()
    with torch.no_grad():
        embedding = model.embed(torch.randn(2, 3, 84, 84))
    assert embedding.shape == (2, embedding_dim(name, 0.125))
    assert model.head(embedding).shape == (2, 5)


@pytest.mark.parametrize("name", ["vgg11", "vgg13"])
def test_vgg_global_pool_is_an_identity_at_32x32(name):
    """The default study's VGG numbers do not change: at 32x32 the embedding with the global
    average pool is bit for bit the flattened last stage (the network without the pool on
    the same weights), in training mode with gradients too."""
    torch.manual_seed(0)
    model = build(name, num_classes=10, in_channels=1, width=0.25)
    x = torch.randn(4, 1, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            without_pool = torch.flatten(model.features(x), 1)
            assert torch.equal(model.embed(x), without_pool)
    assert not list(model.pool.parameters())  # same state dict as before the pool


def test_width_scales_every_channel_count():
    narrow, full = build("vgg11", 10, width=0.25), build("vgg11", 10)
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert convs(narrow) == [c // 4 for c in convs(full)]
    # Conv weights dominate: 1/16 of the FLOPs and roughly 1/16 of the parameters.
    assert count(narrow) / count(full) == pytest.approx(1 / 16, rel=0.05)


def test_bad_arguments_are_refused_with_names():
    expected = r"unknown model 'vgg16'.*vgg11, vgg13, resnet18, resnet50"
    with pytest.raises(ValueError, match=expected):
        build("vgg16", 10)
    with pytest.raises(ValueError, match="width must be > 0"):
        build("vgg11", 10, width=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        build("resnet18", 0)


def test_model_names_are_checked_without_torch():
    for name in (*MODELS, "torchvision:resnet50", "torchvision:convnext_tiny"):
        assert is_model_name(name)
        check_model_name(name)
    for name in ("vgg16", "torchvision:", "torchvision:ResNet50", "torchvision:resnet-50", 3):
        assert not is_model_name(name)
    with pytest.raises(ValueError, match=r"resnet50, or torchvision:<arch>"):
        check_model_name("resnet34")
    assert embedding_dim("torchvision:resnet50", 1) is None  # known once built


# torchvision architectures that work at 32x32 (docs/science.md#networks), one per family that
# hides its head differently: a top-level `fc`, the last layer of a `classifier`
# Sequential (after LayerNorm and Flatten, or after Dropout), and a transformer's `head`.
TORCHVISION_HEADS = {
    "resnet18": ("fc", 512),
    "convnext_tiny": ("classifier.2", 768),
    "mobilenet_v3_small": ("classifier.3", 1024),
    "swin_t": ("head", 768),
}


@pytest.mark.parametrize("arch", TORCHVISION_HEADS)
def test_torchvision_network_equals_torchvision_on_the_same_weights(arch):
    """forward == head(embed) == torchvision's own network with the same weights; the
    embedding is the input of the final linear layer."""
    torch.manual_seed(0)
    original = torchvision.models.get_model(arch, weights=None, num_classes=7).eval()
    model = build(f"torchvision:{arch}", 7).eval()
    model.load_torchvision_state_dict(original.state_dict())
    head_name, dim = TORCHVISION_HEADS[arch]
    assert model.head_name == head_name and model.embedding_dim == dim
    seen = []
    original.get_submodule(head_name).register_forward_hook(lambda m, a, out: seen.append(a[0]))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, embedding = original(x), model.embed(x)
        assert torch.equal(model(x), expected)
        assert torch.equal(model.head(embedding), expected)
    assert embedding.shape == (2, dim) and torch.equal(embedding, seen[0].flatten(1))


def test_one_channel_images_are_repeated_to_three():
    torch.manual_seed(0)
    model = build("torchvision:resnet18", 4, in_channels=1).eval()
    grey = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(grey), model.head(model.body(grey.repeat(1, 3, 1, 1))))
        assert model(torch.randn(2, 1, 84, 84)).shape == (2, 4)


@pytest.mark.filterwarnings("ignore:The default weight initialization of GoogleNet")
def test_torchvision_architectures_without_a_clear_head_are_refused():
    with pytest.raises(ValueError, match=r"torchvision:squeezenet1_0: no final linear.*Conv2d"):
        TorchvisionNet("squeezenet1_0", 10)
    with pytest.raises(ValueError, match=r"torchvision:googlenet: cannot tell.*aux1\.fc2"):
        TorchvisionNet("googlenet", 10)
    with pytest.raises(ValueError, match=r"has no classification architecture 'resnet5'"):
        build("torchvision:resnet5", 10)
    with pytest.raises(ValueError, match=r"width 1 only"):
        build("torchvision:resnet18", 10, width=0.5)
    with pytest.raises(ValueError, match=r"unknown model 'torchvision:ResNet18'"):
        build("torchvision:ResNet18", 10)


# docs/science.md#networks: torchvision architectures whose embedding has the head's size at
# 32x32 and 84x84, and those that need larger images (shapes on the meta device).
AT_32_AND_84 = (
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "convnext_tiny",
    "densenet121", "efficientnet_b0", "efficientnet_v2_s", "mobilenet_v2",
    "mobilenet_v3_small", "mnasnet0_5", "regnet_y_400mf", "shufflenet_v2_x0_5", "vgg11",
    "swin_t",
)  # fmt: skip
NEED_LARGER = {"vit_b_16": (32, 84), "maxvit_t": (32, 84), "alexnet": (32,)}


def embed_shape(arch: str, size: int) -> tuple:
    model = build_shapes(f"torchvision:{arch}", 10).eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        embedding = model.embed(torch.zeros(2, 3, size, size, device=device))
    return tuple(embedding.shape), model.embedding_dim


@pytest.mark.parametrize("arch", AT_32_AND_84)
def test_torchvision_networks_take_32x32_and_84x84(arch):
    for size in (32, 84):
        shape, dim = embed_shape(arch, size)
        assert shape == (2, dim)


@pytest.mark.parametrize("arch", NEED_LARGER)
def test_some_torchvision_networks_need_larger_images(arch):
    for size in NEED_LARGER[arch]:
        with pytest.raises((RuntimeError, AssertionError)):
            embed_shape(arch, size)
