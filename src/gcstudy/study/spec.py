"""The run spec: the flat, fully resolved description of one pre-training run.

A run spec is what ``gcstudy train RUN.yaml`` reads and what every trace records. Each field
has a default, a type and a range; ``RunSpec.from_dict`` refuses unknown keys and bad values
with a message that names the key, the value and what is allowed, before any work starts.
Defaults marked "(default)" are choices the paper does not pin down (docs/science.md#defaults).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from gcstudy.study.datasets import BUILT_IN, get_spec
from gcstudy.study.factors import GC_METHODS
from gcstudy.study.networks import (
    MODEL_HELP,
    check_model_name,
    embedding_dim,
    model_pattern,
    torchvision_arch,
)

DEVICES = ("auto", "cpu", "cuda")
FEWSHOT_SHOTS = (1, 5)  # shots of the traced and final few-shot accuracies
PRECISIONS = ("auto", "fp32", "bf16")


class SpecError(ValueError):
    """A run spec that cannot be run: names the key, the value and what is allowed."""


def option(
    default,
    help: str,
    choices: tuple | None = None,
    minimum=None,
    maximum=None,
    exclusive_minimum: bool = False,
    nullable: bool = False,
    names=None,
):
    """A spec field with its documentation and allowed values. ``names``, for names that
    ``choices`` cannot list, is a pair (check, pattern): a function raising ValueError on a
    bad name, and the regular expression the JSON schema gives them."""
    metadata = dict(
        help=help,
        choices=choices,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        nullable=nullable,
        names=names,
    )
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunSpec:
    """One pre-training run (the defaults train the embedded digits setting on a CPU)."""

    # What is trained
    model: str = option("vgg11", MODEL_HELP, names=(check_model_name, model_pattern()))
    width: float = option(
        0.25,
        "channel width multiplier (1 = the paper's networks)",
        minimum=0,
        exclusive_minimum=True,
    )
    dataset: str = option(
        "digits",
        f"training data set: a built-in one ({', '.join(BUILT_IN)}) or one declared in the "
        "config's `datasets`; a transfer set pre-trains on its source classes",
    )
    data_root: str = option(
        "data", "folder holding the downloaded data sets (set from the top-level `data_root`)"
    )
    train_examples: int = option(
        0,
        "train on a fixed stratified subset of this many training examples, drawn from "
        "`sample_seed` (the same for every seed of a study); 0 = the whole training split",
        minimum=0,
    )
    # How it is trained: plain SGD, constant learning rate, cross-entropy
    lr: float = option(0.05, "SGD learning rate (constant)", minimum=0, exclusive_minimum=True)
    batch_size: int = option(
        64, "examples per SGD step (the last partial batch of an epoch is dropped)", minimum=1
    )
    momentum: float = option(0.0, "SGD momentum (default 0: plain SGD)", minimum=0, maximum=0.999)
    l2: float = option(
        0.0, "explicit L2 penalty `lambda * ||theta||^2` added to the loss", minimum=0
    )
    gc_penalty: float = option(
        0.0,
        "explicit GC penalty `lambda_GC * mean ||J_f(x)||_F^2` on the batch (one Hutchinson "
        "probe, double backward)",
        minimum=0,
    )
    steps: int = option(500, "number of SGD steps", minimum=1)
    seed: int = option(
        0, "seed of initialisation, data order and probes (set by the study's `seeds`)", minimum=0
    )
    # When and how it is measured
    eval_every: int = option(
        125, "evaluate every this many steps (regular part of the cadence)", minimum=1
    )
    eval_log_points: int = option(
        6, "extra log-spaced evaluation steps in [1, steps] (dense early, default)", minimum=0
    )
    # option() turns the list default into a default_factory.
    eval_steps: list = option(  # noqa: RUF009
        [],
        "explicit evaluation steps; when given they replace the "
        "cadence above (0 and the last step are always added)",
    )
    eval_clock_steps: list = option(  # noqa: RUF009
        [],
        "evaluation steps added to the cadence (or to `eval_steps`): where the design clocks "
        "read the run. A study config fills them in for every run "
        "(`gcstudy.study.clocks.scheduled_steps` over each sweep the run belongs to, for each "
        "clock "
        "of `stats.clocks`, at the sweep's common clock value and 2/3 of it); a run shared by "
        "several studies gets the union. Evaluations do not change the training trajectory",
    )
    gc_method: str = option("hutchinson", "GC estimator during training", GC_METHODS)
    gc_probes: int = option(1, "Hutchinson probes per example (`gc_method: hutchinson`)", minimum=1)
    gc_outputs: int = option(
        16,
        "output rows sampled per example (`gc_method: outputs`); at most the embedding size "
        "(docs/science.md#networks)",
        minimum=1,
    )
    gc_mask_rate: float = option(
        0.01,
        "probability of keeping each input coordinate (`gc_method: mask`)",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
    )
    gc_examples: int = option(
        128,
        "size of the fixed stratified training sample on which GC is measured (0 = all)",
        minimum=0,
    )
    feature_examples: int = option(
        512,
        "fixed stratified training sample for NC, NC1, NCC and the training loss (0 = all)",
        minimum=0,
    )
    test_examples: int = option(
        0,
        "fixed stratified test sample for test loss, accuracy, NC and NCC error (0 = all); test "
        "GC and test geometric collapse use a stratified `gc_examples` of it, with probes "
        "independent of the training ones",
        minimum=0,
    )
    target_examples: int = option(
        0,
        "fixed stratified sample of the target-class images for the target NC and few-shot "
        "accuracy traced during training (0 = all; the final few-shot table uses all)",
        minimum=0,
    )
    sample_seed: int = option(
        0,
        "seed of the fixed metric samples (shared by all seeds of a study, so runs are measured "
        "on the same examples)",
        minimum=0,
    )
    bn_recalibration_examples: int = option(
        256,
        "recompute BatchNorm running statistics on this many training examples before each "
        "evaluation, in batches of at most 256 weighted by their size (0 = off; default on: "
        "stale running statistics make early-training metrics meaningless)",
        minimum=0,
    )
    poincare_constant: float | None = option(
        None,
        "Poincare constant c of the GC bound; null = Gaussian proxy `max_i "
        "lambda_max(Cov(x|i))` on the normalised inputs of the feature sample (default)",
        minimum=0,
        nullable=True,
    )
    fewshot_ways: int = option(5, "classes per few-shot episode (transfer data sets)", minimum=2)
    fewshot_queries: int = option(15, "query examples per class and episode", minimum=1)
    fewshot_episodes: int = option(
        1000,
        "few-shot episodes per evaluation during training (the final table uses "
        "`evaluate.fewshot_episodes`)",
        minimum=1,
    )
    fewshot_seed: int = option(0, "episode seed (fixed, so curves compare across runs)", minimum=0)
    fewshot_normalize: bool = option(
        False, "L2-normalise features before few-shot NCC (default: no normalisation)"
    )
    # Where and how fast
    device: str = option("auto", "training device (auto = cuda if available)", DEVICES)
    precision: str = option(
        "auto",
        "training-step precision (auto = bf16 autocast on cuda, "
        "fp32 on cpu); metrics always run in fp32 or better",
        PRECISIONS,
    )
    channels_last: bool = option(
        True,
        "NHWC (channels_last) memory format for the network and its batches on cuda "
        "(the CPU always uses the default NCHW layout)",
    )
    compile: bool = option(False, "`torch.compile` the training step (CUDA)")
    checkpoint_every: int = option(
        100,
        "write a checkpoint every this many steps (also on SIGTERM, SIGUSR1, SIGUSR2)",
        minimum=1,
    )

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "run spec") -> RunSpec:
        """Validate ``values`` (missing keys take defaults) and build the spec."""
        if not isinstance(values, dict):
            raise SpecError(
                f"{source}: expected a mapping of keys to values, got {type(values).__name__}"
            )
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise SpecError(
                    f"{source}: unknown key {key!r}{did_you_mean(key, known)}; known keys: "
                    f"{', '.join(known)}"
                )
        for key, value in values.items():
            _check_value(known[key], value, source)
        spec = cls(**{k: list(v) if isinstance(v, list) else v for k, v in values.items()})
        _check_dataset(spec, source)
        _check_eval_steps(spec, source)
        _check_gc_budget(spec, source)
        _check_torchvision_width(spec, source)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (the resolved run spec recorded in traces)."""
        return dataclasses.asdict(self)

    @property
    def evaluation_steps(self) -> list[int]:
        """Sorted steps at which metrics are traced: always 0, ``steps`` and the
        ``eval_clock_steps``; either the explicit ``eval_steps`` or every ``eval_every``
        steps plus ``eval_log_points`` log-spaced steps (dense early, sparse late)."""
        chosen = {0, self.steps, *self.eval_clock_steps}
        if self.eval_steps:
            chosen.update(self.eval_steps)
        else:
            chosen.update(range(0, self.steps, self.eval_every))
            if self.eval_log_points:
                top = math.log(self.steps)
                n = self.eval_log_points
                chosen.update(round(math.exp(top * k / max(n - 1, 1))) for k in range(n))
        return sorted(chosen)


def check_sample_sizes(spec: RunSpec, num_classes: int, num_target_classes: int = 0) -> None:
    """Per-class statistics need at least 2 examples of every class in each metric sample
    (and ``batch_size`` of the training subset); few-shot episodes need ``5 +
    fewshot_queries`` examples of every target class in the target sample."""
    for key in ("gc_examples", "feature_examples", "test_examples", "train_examples"):
        size = getattr(spec, key)
        if 0 < size < 2 * num_classes:
            raise SpecError(
                f"run spec: key {key!r} = {size} is too small for the {num_classes} classes "
                f"of {spec.dataset!r}: use 0 (all) or at least {2 * num_classes}"
            )
    if 0 < spec.train_examples < spec.batch_size:
        raise SpecError(
            f"run spec: key 'batch_size' = {spec.batch_size} is larger than the "
            f"train_examples = {spec.train_examples} the run trains on"
        )
    needed = (max(FEWSHOT_SHOTS) + spec.fewshot_queries) * num_target_classes
    if 0 < spec.target_examples < needed:
        raise SpecError(
            f"run spec: key 'target_examples' = {spec.target_examples} is too small for "
            f"{max(FEWSHOT_SHOTS)}-shot episodes with {spec.fewshot_queries} queries on the "
            f"{num_target_classes} target classes of {spec.dataset!r}: use 0 (all) or at "
            f"least {needed}"
        )


def did_you_mean(key: Any, known) -> str:
    """`` (did you mean 'x'?)`` for the closest known key, or ``""``."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(spec_field: dataclasses.Field, value: Any, source: str) -> None:
    """Type and range check of one key, with the key, the value and the rule in the message."""
    meta, key = spec_field.metadata, spec_field.name
    where = f"{source}: key {key!r} = {value!r}"
    default = spec_field.default if spec_field.default is not dataclasses.MISSING else []
    if value is None:
        if meta["nullable"]:
            return
        raise SpecError(f"{where}: a value is required")
    expected = type(default) if default is not None else float
    if expected is bool and not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(f"{where}: expected an integer")
    if expected is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise SpecError(f"{where}: expected a number")
    if expected is float and not math.isfinite(value):
        raise SpecError(f"{where}: expected a finite number")
    if expected is str and not isinstance(value, str):
        raise SpecError(f"{where}: expected a string")
    if expected is list and not (
        isinstance(value, list)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise SpecError(f"{where}: expected a list of integer steps")
    if meta["choices"] and value not in meta["choices"]:
        raise SpecError(f"{where}: expected one of {', '.join(map(str, meta['choices']))}")
    if meta["names"]:
        try:
            meta["names"][0](value)
        except ValueError as error:
            raise SpecError(f"{where}: {error}") from None
    low, high = meta["minimum"], meta["maximum"]
    if low is not None and (value < low or (meta["exclusive_minimum"] and value == low)):
        relation = ">" if meta["exclusive_minimum"] else ">="
        raise SpecError(f"{where}: must be {relation} {low}")
    if high is not None and value > high:
        raise SpecError(f"{where}: must be <= {high}")


def _check_gc_budget(spec: RunSpec, source: str) -> None:
    """``gc_outputs`` within the embedding; a torchvision network's embedding size is
    known once it is built, where ``gcstudy.metrics.gc`` checks it."""
    dim = embedding_dim(spec.model, spec.width)
    if dim is not None and spec.gc_method == "outputs" and spec.gc_outputs > dim:
        raise SpecError(
            f"{source}: key 'gc_outputs' = {spec.gc_outputs} is larger than the {dim} "
            f"outputs of the embedding of {spec.model} at width {spec.width}"
        )


def _check_torchvision_width(spec: RunSpec, source: str) -> None:
    if torchvision_arch(spec.model) is not None and spec.width != 1:
        raise SpecError(
            f"{source}: key 'width' = {spec.width!r}: {spec.model} is torchvision's own "
            "network, built at width 1 only (set `width: 1`)"
        )


def _check_dataset(spec: RunSpec, source: str) -> None:
    """A data set that is built in, declared, or prepared under the spec's data root."""
    try:
        get_spec(spec.dataset, spec.data_root)
    except ValueError as error:
        raise SpecError(f"{source}: key 'dataset' = {spec.dataset!r}: {error}") from None


def _check_eval_steps(spec: RunSpec, source: str) -> None:
    for key in ("eval_steps", "eval_clock_steps"):
        bad = [s for s in getattr(spec, key) if not 0 <= s <= spec.steps]
        if bad:
            raise SpecError(
                f"{source}: key {key!r} has steps {bad} outside [0, steps={spec.steps}]"
            )


def example_yaml() -> str:
    """A complete, commented run spec with every key at its default (trains as is)."""
    lines = [
        "# gcstudy run spec: one pre-training run. Every key is optional; shown at its",
        "# default. Train it with: gcstudy train run.yaml --out results/runs/example",
        "",
    ]
    for spec_field in dataclasses.fields(RunSpec):
        meta = spec_field.metadata
        default = (
            spec_field.default
            if spec_field.default is not dataclasses.MISSING
            else spec_field.default_factory()
        )
        allowed = f" [{' | '.join(map(str, meta['choices']))}]" if meta["choices"] else ""
        lines.append(f"# {meta['help']}{allowed}")
        lines.append(f"{spec_field.name}: {_yaml_scalar(default)}")
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
