"""The networks a run spec can name, and their widths, importable without torch.

Snakemake parses the workflow (and so imports ``gcstudy.study.config``) in its main
process and again in every job; keeping these names torch-free saves seconds per job.
The networks themselves are built in ``gcstudy.models``.
"""

MODELS = ("vgg11", "vgg13", "resnet18")


def scaled(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width``, at least 1 (every layer of the
    models in ``gcstudy.models``)."""
    return max(1, round(channels * width))


def embedding_dim(width: float) -> int:
    """Size of the embedding ``f(x)`` of every model here: the 512 channels of the last
    stage, scaled by ``width``."""
    return scaled(512, width)
