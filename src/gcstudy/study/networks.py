"""The networks a run spec can name, and their widths, importable without torch.

Snakemake parses the workflow (and so imports ``gcstudy.study.config``) in its main
process and again in every job; keeping these names torch-free saves seconds per job.
The networks themselves are built in ``gcstudy.models`` (docs/science.md#networks).

A model name is one of ``MODELS`` (this project's CIFAR-style networks, any ``width``) or
``torchvision:<arch>``, an architecture of ``torchvision.models`` by its own name (width 1
only). Whether torchvision has that architecture, and where its final linear layer is, can
only be known with torch: here the name's form is checked, ``gcstudy.models.build`` checks
the rest before any training step.
"""

import re

# Name -> channels of the last stage at width 1 (the size of the embedding f(x)).
EMBEDDING_CHANNELS = {"vgg11": 512, "vgg13": 512, "resnet18": 512, "resnet50": 2048}
MODELS = tuple(EMBEDDING_CHANNELS)

TORCHVISION = "torchvision:"
# torchvision's architecture names (``torchvision.models.list_models()``) are lower-case
# Python identifiers: resnet50, convnext_tiny, vit_b_16, efficientnet_v2_s.
_ARCH = re.compile(r"[a-z][a-z0-9_]*")
MODEL_HELP = (
    f"network architecture: {', '.join(f'`{m}`' for m in MODELS)}, or `{TORCHVISION}<arch>` "
    "for an architecture of torchvision.models by its name (e.g. `torchvision:resnet50`; "
    "width 1 only; docs/science.md#networks)"
)


def torchvision_arch(name: str) -> str | None:
    """The torchvision architecture a model name asks for (``"torchvision:resnet50"`` ->
    ``"resnet50"``), or None for this project's own networks and non-names."""
    if isinstance(name, str) and name.startswith(TORCHVISION):
        return name[len(TORCHVISION) :]
    return None


def check_model_name(name) -> None:
    """Raise ValueError, saying what is allowed, unless ``name`` is one of ``MODELS`` or
    ``torchvision:<arch>`` with a well-formed architecture name (the message does not
    repeat the name: callers say where it came from)."""
    arch = torchvision_arch(name)
    if arch is None and name not in MODELS:
        raise ValueError(
            f"expected one of {', '.join(MODELS)}, or {TORCHVISION}<arch> for an "
            "architecture of torchvision.models"
        )
    if arch is not None and not _ARCH.fullmatch(arch):
        raise ValueError(
            f"expected {TORCHVISION}<arch> with <arch> the name of an architecture of "
            "torchvision.models, such as resnet50 or convnext_tiny (lower-case letters, "
            "digits and underscores)"
        )


def is_model_name(name) -> bool:
    """Whether ``check_model_name`` accepts ``name``."""
    try:
        check_model_name(name)
    except ValueError:
        return False
    return True


def model_pattern() -> str:
    """A regular expression for the model names (the JSON schema's ``pattern``)."""
    own = "|".join(map(re.escape, MODELS))
    return f"^({own}|{re.escape(TORCHVISION)}{_ARCH.pattern})$"


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width``, at least 1 (every layer of the
    models in ``gcstudy.models``)."""
    return max(1, round(channels * width))


def embedding_dim(model: str, width: float) -> int | None:
    """Size of the embedding ``f(x)`` of ``model`` at ``width``: the channels of its last
    stage, scaled by ``width`` (512 for VGG and ResNet-18, 2048 for ResNet-50, at width 1).
    None for a torchvision architecture: its size is known once it is built (torch), as
    ``gcstudy.models.build(...).embedding_dim``."""
    if torchvision_arch(model) is not None:
        return None
    return scaled(EMBEDDING_CHANNELS[model], width)
