"""A trained network for ``gcstudy measure``, from one of three forms of argument.

* a gcstudy **run folder** (its ``model.pt``, checked against its seal);
* a gcstudy **model.pt** (``gcstudy.training.trainer.write_model``: weights, run spec, input
  channels, the input normalisation the run trained with, the step it reached);
* ``MODEL=STATE_DICT.pt``: a network name ``gcstudy.models.build`` knows (``vgg11``, ...,
  and the ``torchvision:<arch>`` names) and a file of ``torch.save(model.state_dict())``.
  The head's number of outputs is read from the file (a network pre-trained on other
  classes keeps its head; the measurements use only the embedding); gcstudy's networks
  take the ``width`` given; the input channels are the data set's. A torchvision
  network's file may be torchvision's own state dict (``fc.weight``, ...) or that of
  gcstudy's wrapper of it.

An argument that is an existing path is a run folder or a model.pt even if it holds ``=``.
Every check (the file, its format, that the weights fit the network and are finite) runs
when the network is loaded, before anything is measured; errors name the argument's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gcstudy.models import MODELS, build
from gcstudy.study import seals
from gcstudy.study.runfolder import RunFolder
from gcstudy.study.spec import RunSpec

DETAIL = 400  # characters of torch's list of differing keys kept in an error message
MODEL_FILE_KEYS = ("state_dict", "spec", "in_channels", "normalisation", "step", "status")


@dataclass(frozen=True)
class TrainedNetwork:
    """A network to measure. ``label``: the argument as given (the table's name for it);
    ``source``: the absolute path of the weights file; ``sha256``: of that file;
    ``model_name``, ``width``: how it was built; ``step``: the training steps model.pt
    records (0 for a bare state dict; it seeds the GC probes, see
    ``gcstudy.measure.trained``); ``normalisation``: the per-channel (mean, std) the
    network was trained with when the file records it, else None (the data set's)."""

    label: str
    source: Path
    sha256: str
    model_name: str
    width: float
    step: int
    model: torch.nn.Module
    normalisation: tuple[list[float], list[float]] | None


def weights_file(argument: str) -> tuple[str | None, Path]:
    """(network name or None, the weights file) of an argument; FileNotFoundError when the
    file is not there. A run folder's model.pt must be as sealed (a finished run)."""
    path = Path(argument)
    if path.is_dir():
        folder = RunFolder(path)
        problem = folder.problem(folder.model)
        if problem:
            raise FileNotFoundError(
                f"{folder.model}: {problem}; a run folder to measure needs the model.pt of "
                "a finished gcstudy run"
            )
        return None, folder.model
    if path.exists() or "=" not in argument:
        if not path.is_file():
            raise FileNotFoundError(
                f"{argument}: no such file or folder; expected a gcstudy run folder, a "
                "model.pt or MODEL=STATE_DICT.pt"
            )
        return None, path
    name, _, file = argument.partition("=")
    if not Path(file).is_file():
        raise FileNotFoundError(f"{argument}: no such state-dict file {file!r}")
    return name, Path(file)


def load_network(argument: str, in_channels: int, num_classes: int, width: float):
    """The ``TrainedNetwork`` of one argument (on the CPU, eval mode), for a data set of
    ``in_channels`` channels and ``num_classes`` source classes (the head size of a
    network whose state dict does not say it otherwise)."""
    name, path = weights_file(argument)
    saved = read_weights(path)
    if name is None:
        model, spec, normalisation = from_model_file(saved, path)
        check_trained(saved, path, in_channels)
        name, width, step = spec.model, spec.width, saved["step"]
    else:
        model = from_state_dict(saved, path, name, in_channels, num_classes, width)
        normalisation, step = None, 0
    if not all(p.isfinite().all() for p in model.state_dict().values() if p.is_floating_point()):
        raise ValueError(f"{path}: the weights are not all finite (a diverged network)")
    return TrainedNetwork(
        label=argument,
        source=path.absolute(),
        sha256=seals.sha256(path),
        model_name=name,
        width=width,
        step=int(step),
        model=model.eval(),
        normalisation=normalisation,
    )


def read_weights(path: Path) -> dict:
    """The mapping ``torch.load`` reads from ``path`` (tensors and plain data only)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file it cannot read
        raise ValueError(f"{path}: not a readable torch file ({error})") from error
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(saved).__name__}")
    return saved


def from_model_file(saved: dict, path: Path):
    """(model, run spec, normalisation) of a gcstudy model.pt read into ``saved``."""
    missing = [key for key in MODEL_FILE_KEYS if key not in saved]
    if missing:
        raise ValueError(
            f"{path}: not a gcstudy model.pt (no {', '.join(map(repr, missing))}); for a "
            "bare state dict write MODEL=STATE_DICT.pt (e.g. resnet18=weights.pt)"
        )
    spec = RunSpec.from_dict(saved["spec"], source=f"{path}: run spec")
    model = build(spec.model, len(saved["classes"]), saved["in_channels"], spec.width)
    fit(model.load_state_dict, saved["state_dict"], path, f"{spec.model} at width {spec.width}")
    norm = saved["normalisation"]
    return model, spec, (list(norm["mean"]), list(norm["std"]))


def check_trained(saved: dict, path: Path, in_channels: int) -> None:
    """A model.pt to measure: a run that did not diverge, for images of ``in_channels``."""
    if saved["status"] == "diverged":
        raise ValueError(f"{path}: the run diverged; its weights are not finite")
    if saved["in_channels"] != in_channels:
        raise ValueError(
            f"{path}: the network takes {saved['in_channels']}-channel images, the data set "
            f"has {in_channels}"
        )


def from_state_dict(
    saved: dict, path: Path, name: str, in_channels: int, num_classes: int, width: float
):
    """The network ``name`` with the bare state dict ``saved`` loaded; the head is built
    with as many outputs as the file's head weight has rows. ``width`` applies to
    gcstudy's own networks (``MODELS``); others are built at width 1. A network that can
    also load its architecture's own layout (a ``torchvision:<arch>`` network of
    ``gcstudy.models``: ``load_torchvision_state_dict``, head ``head_name``) takes either."""
    if "state_dict" in saved and "spec" in saved:
        raise ValueError(f"{path}: a gcstudy model.pt; give it without {name + '='!r}")
    if not all(isinstance(v, torch.Tensor) for v in saved.values()):
        raise ValueError(f"{path}: expected a state dict (parameter names -> tensors)")
    width = width if name in MODELS else 1.0
    model = build(name, num_classes, in_channels, width)
    own_layout = head_weight_key(model) in saved or not hasattr(model, "head_name")
    head_weight = head_weight_key(model) if own_layout else f"{model.head_name}.weight"
    rows = saved[head_weight].shape[0] if head_weight in saved else num_classes
    if rows != num_classes:
        model = build(name, rows, in_channels, width)
    load = model.load_state_dict if own_layout else model.load_torchvision_state_dict
    what = f"{name} at width {width} with {in_channels} input channels"
    fit(load, saved, path, what)
    return model


def head_weight_key(model) -> str:
    """The state-dict key of the weight of ``model.head`` (the final linear layer)."""
    weight = model.head.weight
    return next(key for key, p in model.named_parameters() if p is weight)


def fit(load, state_dict: dict, path: Path, what: str) -> None:
    """Load ``state_dict`` with ``load`` (a strict ``load_state_dict``: every key, every
    shape), or a ValueError naming the file, the network and the first differences."""
    try:
        load(state_dict)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[1:])
        if len(detail) > DETAIL:
            detail = detail[:DETAIL] + " ..."
        raise ValueError(
            f"{path}: the state dict does not fit {what}: {detail} (gcstudy's "
            "networks: is --width the one it was trained at?)"
        ) from error
