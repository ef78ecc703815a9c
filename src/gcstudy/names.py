"""The vocabulary of run specs and configs, importable without torch.

Snakemake parses the workflow (and so imports ``gcstudy.config``) in its main process and
again in every job; keeping these names torch-free saves seconds per job.
"""

MODELS = ("vgg11", "vgg13", "resnet18")
GC_METHODS = ("exact", "hutchinson", "outputs", "mask")


def embedding_dim(model: str, width: float) -> int:
    """Size of the embedding ``f(x)`` of every model here: the 512 channels of the last
    stage scaled by ``width`` (``gcstudy.models.scaled``)."""
    return max(1, round(512 * width))
