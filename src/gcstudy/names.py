"""The vocabulary of run specs and configs, importable without torch.

Snakemake parses the workflow (and so imports ``gcstudy.config``) in its main process and
again in every job; keeping these names torch-free saves seconds per job.
"""

MODELS = ("vgg11", "vgg13", "resnet18")
GC_METHODS = ("exact", "hutchinson", "outputs", "mask")
