"""One prepared check of gcstudy on a GPU: one JSON record and its markdown rendering.

    PYTHONPATH=src python3 benchmarks/gpu_check.py [--out benchmarks/gpu_check] [--budget-s 330]
    PYTHONPATH=src python3 benchmarks/gpu_check.py --smoke --out /tmp/gpu_check   # CPU, seconds

What it measures (docs/gpu-check.md explains each number), in this order; a global time guard
skips a section that no longer fits in ``--budget-s`` and records why:

1. the machine: GPU name, torch, CUDA, cuDNN, gcstudy's git commit; the chip's bf16 matrix
   rate, measured here (an 8192^3 product), and the datasheet's dense bf16 figure;
2. FLOPs per training image of VGG-11, VGG-13, ResNet-18 and ResNet-50, counted by
   ``torch.utils.flop_counter`` on one forward + backward of gcstudy's own training step;
3. training images/s and MFU (model FLOP/s utilisation = FLOPs per image x images/s / the
   bf16 matrix rate) at batch 256 and 32, fp32 or bf16 autocast, channels_last on or off,
   through ``gcstudy.training.trainer.train_step`` (the step ``gcstudy train`` runs, with
   the run spec's
   ``precision``, ``channels_last`` and ``compile`` applied by gcstudy's own code);
4. one evaluation at the paper's settings (config/paper.yaml) through
   ``gcstudy.measure.traced`` and its parts, and the few-shot evaluation of a transfer run;
5. a real ``gcstudy train`` of the paper's E1 base spec (VGG-13, CIFAR-10 files written from
   generated uint8 arrays of CIFAR-10's shapes) for 1,000 steps at the paper's evaluation
   steps, its wall time split into start-up, training, evaluation and checkpointing (the
   trace's ``phase_seconds``), and from it the paper's ``minutes_per_1000_steps``;
6. the E5 path: bf16 autocast with the GC penalty's double backward gives finite values;
7. the estimator study (E2): the exact GC of its 256 examples, then the study at the
   paper's budgets with 2 repeats per setting;
8. the training steps of 3. under ``torch.compile`` (compilation timed apart), most useful first.

``--smoke`` runs the same code on the CPU with tiny widths, batches and step counts (the
numbers mean nothing; CI runs it, tests/test_gpu_check.py). Nothing here imports snakemake,
submitit, h5netcdf or mlxtend, which the GPU machine lacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from gcstudy import provenance, yamlio
from gcstudy.data.run_data import RunData, load_run_data, stratified_sample
from gcstudy.measure.evaluations import EvaluationSettings, gc_estimator_study
from gcstudy.measure.traced import (
    embed,
    measure,
    measure_gc,
    measure_transfer,
    poincare_constant,
    recalibrate_batchnorm,
)
from gcstudy.metrics.collapse import nc1, ncc_error, neural_collapse
from gcstudy.metrics.gc import per_example_gc
from gcstudy.study import config as study_config
from gcstudy.study import traces
from gcstudy.study.networks import MODELS
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import (
    PHASES,
    autocast_dtype,
    batch_gc,
    batch_indices,
    finish_queued_work,
    make_step,
    memory_format,
    model_and_optimizer,
    train_step,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the writer of CIFAR-10's on-disk format
from fixtures_data import write_cifar10  # noqa: E402

PAPER_CONFIG = REPO / "config" / "paper.yaml"
E1_STUDY, E5_STUDY = "E1_vgg13_cifar10", "E5_penalty"
ESTIMATOR_REPEATS = 2  # per setting; the paper's study repeats each setting gc_repeats times
# Dense bf16 tensor-core rate from NVIDIA's datasheets (FLOP/s), by a name the GPU reports.
DATASHEET_BF16 = {
    "H100 80GB HBM3": ("H100 SXM datasheet, dense bf16", 989e12),
    "H200": ("H200 datasheet, dense bf16 (the H100 SXM's Hopper tensor cores)", 989e12),
}
H200_MEASURED = (
    790e12,
    "bf16 8192^3 matrix product measured on an H200 of this workplace (not by this script); "
    "the rate config/README.md's estimate assumed",
)
# The one command a GPU session runs in a child process: `gcstudy train` on the generated
# CIFAR-10 files, whose md5 sums cannot be the real archives' (the tests' switch, same code).
TRAIN_ON_GENERATED_FILES = """
import sys
import pytest
from fixtures_data import skip_cifar_md5
skip_cifar_md5(pytest.MonkeyPatch())
from gcstudy.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one check: the paper's on a GPU (``FULL``), tiny ones on the CPU (``SMOKE``).
    Section estimates (seconds) feed the time guard."""

    device: str
    batches: tuple[int, ...]
    warmup_steps: int
    timed_steps: int
    matmul_n: int
    cifar_per_class: tuple[int, int]  # train, test images per class (CIFAR-10: 5,000, 1,000)
    target_per_class: int  # images of each of the 20 target classes (CIFAR-FS: 600)
    train_steps: int  # of the real `gcstudy train`
    spec_changes: dict  # applied to the paper's specs (width, sample sizes, batch)
    estimator_settings: dict | None  # None: the paper's `evaluate` settings
    compile_skipped: str  # "" or why the compiled steps are not run
    estimated_seconds: dict  # of each section (for the time guard)


FULL = Plan(
    device="cuda",
    batches=(256, 32),
    warmup_steps=5,
    timed_steps=20,
    matmul_n=8192,
    cifar_per_class=(5000, 1000),
    target_per_class=600,
    train_steps=1000,
    spec_changes={},
    estimator_settings=None,
    compile_skipped="",
    estimated_seconds={
        "training": 5,
        "evaluation": 60,
        "train_run": 150,
        "e5": 20,
        "estimators": 60,
        "compiled": 60,
    },
)
COMPILE_TOO_SLOW_ON_CPU = (
    "torch.compile (inductor's C++ code) of one step of a width-1/16 VGG-11 took 259 s on "
    "the shared 2-core CPU this smoke mode was built on: compiled steps run on the GPU only"
)
SMOKE = Plan(
    device="cpu",
    batches=(8, 4),
    warmup_steps=1,
    timed_steps=2,
    matmul_n=256,
    cifar_per_class=(20, 10),
    target_per_class=20,
    train_steps=20,
    spec_changes=dict(
        width=0.0625,
        batch_size=8,
        gc_examples=20,
        feature_examples=40,
        test_examples=0,
        bn_recalibration_examples=16,
        fewshot_episodes=10,
        checkpoint_every=10,
    ),
    estimator_settings=dict(
        gc_examples=20,
        budgets={"examples": [4], "hutchinson": [1], "outputs": [2], "mask": [0.001]},
    ),
    compile_skipped=COMPILE_TOO_SLOW_ON_CPU,
    estimated_seconds={
        "training": 0,
        "evaluation": 0,
        "train_run": 0,
        "e5": 0,
        "estimators": 0,
        "compiled": 0,
    },
)


class TimeGuard:
    """Seconds left of the budget; a section runs only when its estimate fits, else its
    skip is recorded as a note."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), budget_s
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, what: str, needs_s: float) -> bool:
        left = self.budget_s - self.elapsed()
        if left >= needs_s:
            return True
        self.notes.append(f"skipped {what}: {left:.0f} s of the budget left, it needs ~{needs_s} s")
        return False


@contextmanager
def stopwatch(device: torch.device, into: dict, key: str):
    """``into[key]`` = wall seconds of the block, queued CUDA work included."""
    finish_queued_work(device)
    start = time.perf_counter()
    yield
    finish_queued_work(device)
    into[key] = time.perf_counter() - start


# --- 1. the machine -------------------------------------------------------------------------


def environment(device: torch.device, commit: str) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "gpu": gpu,
        "versions": provenance.versions(),
        "gcstudy_commit": commit,
        "host": provenance.host(),
        "cpu_threads": torch.get_num_threads(),
    }


def bf16_matmul_rate(device: torch.device, n: int, warmup: int = 3, timed: int = 10) -> float:
    """FLOP/s of an n x n x n bf16 matrix product on random data (mean of ``timed``)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (
        torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=generator)
        for _ in range(2)
    )
    for _ in range(warmup):
        a @ b
    seconds: dict = {}
    with stopwatch(device, seconds, "products"):
        for _ in range(timed):
            a @ b
    return 2 * n**3 * timed / seconds["products"]


def datasheet_rate(gpu: str) -> tuple[str | None, float | None]:
    """(source, dense bf16 FLOP/s) of the GPU named ``gpu`` from ``DATASHEET_BF16``, or
    (None, None) when none is recorded for it."""
    return next((v for k, v in DATASHEET_BF16.items() if k in gpu), (None, None))


def peaks(gpu: str, device: torch.device, plan: Plan) -> dict:
    datasheet = datasheet_rate(gpu)
    return {
        "measured_bf16_matmul_flops": bf16_matmul_rate(device, plan.matmul_n),
        "matmul_n": plan.matmul_n,
        "datasheet_name": datasheet[0],
        "datasheet_bf16_flops": datasheet[1],
        "reference_h200_bf16_flops": H200_MEASURED[0],
        "reference_h200_source": H200_MEASURED[1],
    }


# --- 2.-3., 6., 8. training steps -------------------------------------------------------------


def training_spec(base: RunSpec, model: str, batch: int, **options) -> RunSpec:
    """``base`` (the check's E1 spec) with another model, batch size and step options."""
    return RunSpec.from_dict({**base.to_dict(), "model": model, "batch_size": batch, **options})


def flops_per_image(base: RunSpec, data: RunData, model: str, batch: int) -> float:
    """Matrix FLOPs of one fp32 training step (forward + backward) per image, counted by
    ``torch.utils.flop_counter`` at ``batch``."""
    device = data.train_images.device
    spec = training_spec(base, model, batch, precision="fp32", compile=False)
    network, optimizer = model_and_optimizer(spec, data, device)
    forward = make_step(network, spec, autocast_dtype(spec, device))
    with FlopCounterMode(display=False) as counter:
        train_step(network, optimizer, data, spec, 0, forward)
    return counter.get_total_flops() / batch


def time_training(
    spec: RunSpec, data: RunData, device: torch.device, plan: Plan
) -> tuple[dict, torch.nn.Module, object]:
    """Time ``plan.timed_steps`` training steps after a first step (compilation, cuDNN's
    choices) and ``plan.warmup_steps`` more; returns (timings, model, forward)."""
    if spec.compile:
        torch._dynamo.reset()  # each compiled configuration compiles afresh, within limits
    model, optimizer = model_and_optimizer(spec, data, device)
    forward = make_step(model, spec, autocast_dtype(spec, device))
    timings: dict = {}
    losses = []
    with stopwatch(device, timings, "first_step_seconds"):
        losses.append(train_step(model, optimizer, data, spec, 0, forward))
    for step in range(1, 1 + plan.warmup_steps):
        losses.append(train_step(model, optimizer, data, spec, step, forward))
    first = 1 + plan.warmup_steps
    with stopwatch(device, timings, "seconds"):
        for step in range(first, first + plan.timed_steps):
            losses.append(train_step(model, optimizer, data, spec, step, forward))
    images = spec.batch_size * plan.timed_steps
    timings.update(
        timed_steps=plan.timed_steps,
        warmup_steps=plan.warmup_steps,
        images=images,
        images_per_s=images / timings["seconds"],
        losses_finite=all(math.isfinite(v) for v in losses),
    )
    return timings, model, forward


def training_entry(spec, data, device, plan, flops: float, peak: dict) -> dict:
    timings, _, _ = time_training(spec, data, device, plan)
    rate = flops * timings["images_per_s"]
    sheet = peak["datasheet_bf16_flops"]
    return {
        **configuration(spec),
        **timings,
        "flops_per_image": flops,
        "model_flops_per_s": rate,
        "mfu_measured_peak": rate / peak["measured_bf16_matmul_flops"],
        "mfu_datasheet": None if sheet is None else rate / sheet,
    }


def configuration(spec: RunSpec) -> dict:
    return {
        "model": spec.model,
        "batch": spec.batch_size,
        "precision": spec.precision,
        "channels_last": spec.channels_last,
        "compile": spec.compile,
    }


def training_grid(plan: Plan, compile: bool) -> list[dict]:
    """The configurations, most useful first: the paper's (bf16, channels_last) at the
    paper's batch, then the others."""
    return [
        dict(model=model, batch=batch, precision=precision, channels_last=layout, compile=compile)
        for precision, layout in (("bf16", True), ("bf16", False), ("fp32", True), ("fp32", False))
        for batch in plan.batches
        for model in MODELS
    ]


def e5_check(plan, data, device, paper_config, paper_runs) -> dict:
    """E5's spec in bf16 at its largest penalty: finite losses, gradients, batch GC penalty
    and measured GC after the timed steps; step time against the same spec without the
    penalty, measured in this run."""
    strongest = max(paper_config["studies"][E5_STUDY]["sweeps"]["gc_penalty"])
    values = {**paper_spec(paper_runs, E5_STUDY, gc_penalty=strongest), **plan.spec_changes}
    spec = RunSpec.from_dict({**values, "precision": "bf16", "device": plan.device})
    plain = dataclasses.replace(spec, gc_penalty=0.0)
    plain_timings, _, _ = time_training(plain, data, device, plan)
    timings, model, forward = time_training(spec, data, device, plan)
    step = plan.warmup_steps + plan.timed_steps + 1
    gradients_finite = all(
        p.grad is not None and bool(p.grad.isfinite().all()) for p in model.parameters()
    )
    index = batch_indices(len(data.train_targets), spec.batch_size, spec.seed, step)
    x = data.normalise(data.train_images[index.to(device)])
    x = x.contiguous(memory_format=memory_format(device, spec.channels_last)).requires_grad_()
    embedding, _ = forward(x)
    penalty = batch_gc(embedding, x, spec.seed, step).item()
    model.eval()
    gc, _ = measure_gc(
        model,
        data,
        data.train_images[data.gc_sample],
        data.train_targets[data.gc_sample],
        spec,
        seed=0,
    )
    return {
        **configuration(spec),
        "gc_penalty": spec.gc_penalty,
        "embedding_dtype": str(embedding.dtype),
        "losses_finite": timings["losses_finite"],
        "gradients_finite": gradients_finite,
        "batch_gc": penalty,
        "measured_gc": gc.value,
        "finite": timings["losses_finite"]
        and gradients_finite
        and math.isfinite(penalty)
        and math.isfinite(gc.value),
        "seconds_per_step": timings["seconds"] / timings["timed_steps"],
        "seconds_per_step_without_penalty": plain_timings["seconds"] / plain_timings["timed_steps"],
    }


# --- 4., 7. evaluation ----------------------------------------------------------------------


def paper_spec(paper_runs, study: str, **point) -> dict:
    """The run spec (as a dict) of the first run of ``study`` at the swept ``point`` (the
    base point when empty) in config/paper.yaml."""
    for run in paper_runs:
        if run.study == study and all(run.point[k] == v for k, v in point.items()):
            return run.spec.to_dict()
    raise LookupError(f"{PAPER_CONFIG}: no run of study {study} at {point}")


def with_target_classes(data: RunData, per_class: int, classes: int = 20) -> RunData:
    """``data`` plus generated uint8 images of ``classes`` target classes (CIFAR-FS: 20
    target classes of 600 images), for the few-shot evaluation of a transfer run."""
    generator = torch.Generator().manual_seed(1)
    n = per_class * classes
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % classes + 64  # CIFAR-FS numbers its target classes 64..83
    device = data.train_images.device
    return dataclasses.replace(
        data,
        target_images=images.to(device),
        target_labels=labels.to(device),
        target_sample=stratified_sample(labels, 0, generator),
    )


def evaluation(spec: RunSpec, data: RunData, device: torch.device, plan: Plan) -> dict:
    """One evaluation of a VGG-13 at the paper's settings (``measure``, after one untimed
    call), then each of its parts alone, the few-shot part of a transfer run's evaluation
    and the Poincare constant computed once per run."""
    model, _ = model_and_optimizer(spec, data, device)
    seconds: dict = {}
    with stopwatch(device, seconds, "poincare_constant_once_per_run"):
        poincare = poincare_constant(data, spec)
    measure(model, data, spec, 0, poincare)
    with stopwatch(device, seconds, "measure"):
        measure(model, data, spec, 0, poincare)
    parts: dict = {}
    with stopwatch(device, parts, "batchnorm_recalibration"):
        recalibrate_batchnorm(model, data, spec)
    model.eval()
    with stopwatch(device, parts, "train_features"):
        features, _ = embed(model, data, data.train_images[data.feature_sample])
    with stopwatch(device, parts, "test_features"):
        test_features, _ = embed(model, data, data.test_images[data.test_sample])
    labels = data.train_targets[data.feature_sample]
    test_labels = data.test_targets[data.test_sample]
    for name, images, targets, sample in (
        ("gc_train", data.train_images, data.train_targets, data.gc_sample),
        ("gc_test", data.test_images, data.test_targets, data.gc_test_sample),
    ):
        with stopwatch(device, parts, name):
            measure_gc(model, data, images[sample], targets[sample], spec, seed=0)
    with stopwatch(device, parts, "nc_nc1_ncc"):
        neural_collapse(features, labels)
        neural_collapse(test_features, test_labels)
        nc1(features, labels)
        ncc_error(features, labels, features, labels)
        ncc_error(features, labels, test_features, test_labels)
    transfer = with_target_classes(data, plan.target_per_class)
    with stopwatch(device, seconds, "transfer_fewshot"):
        measure_transfer(model, transfer, spec)
    return {
        "spec": {
            k: getattr(spec, k)
            for k in (
                "model",
                "width",
                "gc_method",
                "gc_probes",
                "gc_examples",
                "feature_examples",
                "test_examples",
                "bn_recalibration_examples",
                "fewshot_episodes",
            )
        },
        "test_images": len(data.test_sample),
        "target_images": len(transfer.target_sample),
        "seconds": seconds,
        "part_seconds": parts,
    }


def estimator_study(spec, data, device, settings: EvaluationSettings) -> dict:
    """The exact GC of the study's sample alone, then the whole study (E2) with
    ``ESTIMATOR_REPEATS`` repeats per setting; its time at the settings' repeats is derived
    from the measured seconds per estimate."""
    model, _ = model_and_optimizer(spec, data, device)
    model.eval()
    sample = stratified_sample(
        data.train_targets.cpu(),
        settings.gc_examples,
        torch.Generator().manual_seed(spec.sample_seed + 1),
    )
    x = data.normalise(data.train_images[sample.to(device)])
    seconds: dict = {}
    with stopwatch(device, seconds, "exact_gc"):
        per_example_gc(model.embed, x, "exact")
    measured = dataclasses.replace(settings, gc_repeats=ESTIMATOR_REPEATS)
    with stopwatch(device, seconds, "study"):
        study = gc_estimator_study(model, spec, data, measured, diverged=False)
    per_estimate = study["seconds"].values.tolist()
    return {
        "examples": len(x),
        "repeats_measured": ESTIMATOR_REPEATS,
        "repeats_of_the_settings": settings.gc_repeats,
        "exact_gc_seconds": seconds["exact_gc"],
        "study_seconds": seconds["study"],
        "settings": [
            {"estimator": e, "budget": b, "seconds_per_estimate": s}
            for e, b, s in zip(
                study["estimator"].values.tolist(),
                study["budget"].values.tolist(),
                per_estimate,
                strict=True,
            )
        ],
        "derived_study_seconds": seconds["exact_gc"] + settings.gc_repeats * sum(per_estimate),
    }


# --- 5. a real `gcstudy train` ----------------------------------------------------------------


def train_run(spec_values: dict, folder: Path) -> dict:
    """``gcstudy train`` in a child process; its wall time and the trace's phases."""
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_values, sort_keys=False))
    out = folder / "run"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    command = [
        sys.executable,
        "-c",
        TRAIN_ON_GENERATED_FILES,
        "-q",
        "train",
        str(spec_path),
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    process_seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"gcstudy train failed ({result.returncode}):\n{result.stderr}")
    trace = traces.load(out / "trace.h5")
    spec = RunSpec.from_dict(trace.attrs["spec"])
    phases = trace.attrs["phase_seconds"]
    return {
        "spec": spec.to_dict(),
        "status": trace.attrs["status"],
        "device": trace.attrs["device"],
        "steps": spec.steps,
        "evaluations": len(trace.steps),
        "checkpoints": spec.steps // spec.checkpoint_every,
        "weights_written": 1,
        "process_seconds": process_seconds,
        "phase_seconds": {p: phases[p] for p in PHASES},
        "outside_phases_seconds": process_seconds - sum(phases[p] for p in PHASES),
        "last_test_accuracy": float(trace.values["test_accuracy"][-1]),
    }


def minutes_per_1000_steps(run: dict, paper: RunSpec) -> dict:
    """The paper run's minutes per 1,000 steps from the measured run's cost per step, per
    evaluation, per checkpoint and per start, at the paper run's own counts:

        minutes = (1000 t_step + E t_eval + K t_ckpt + 1000/steps t_start) / 60,

    E = evaluations of the paper run per 1,000 steps, K = its checkpoints and final
    weights per 1,000 steps, t_start = start-up plus everything outside the phases. Also
    the evaluation's cost against the training between two regular evaluations,
    ``t_eval / (eval_every t_step)``."""
    phases = run["phase_seconds"]
    per = {
        "step": phases["training"] / run["steps"],
        "evaluation": phases["evaluation"] / run["evaluations"],
        "checkpoint": phases["checkpointing"] / (run["checkpoints"] + run["weights_written"]),
        "start": phases["start_up"] + run["outside_phases_seconds"],
    }
    counts = {
        "step": 1000,
        "evaluation": 1000 * len(paper.evaluation_steps) / paper.steps,
        "checkpoint": 1000 * (paper.steps // paper.checkpoint_every + 1) / paper.steps,
        "start": 1000 / paper.steps,
    }
    seconds = {k: per[k] * counts[k] for k in per}
    return {
        "minutes_per_1000_steps": sum(seconds.values()) / 60,
        "seconds_each": per,
        "count_per_1000_steps": counts,
        "seconds_per_1000_steps": seconds,
        "evaluation_vs_training_per_1000_steps": seconds["evaluation"] / seconds["step"],
        "evaluation_vs_training_between_regular_evaluations": per["evaluation"]
        / (paper.eval_every * per["step"]),
        "paper_run": {
            "steps": paper.steps,
            "evaluations": len(paper.evaluation_steps),
            "checkpoint_every": paper.checkpoint_every,
            "eval_every": paper.eval_every,
        },
    }


# --- the check ------------------------------------------------------------------------------


def check(plan: Plan, budget_s: float, commit: str, smoke: bool, out: Path) -> dict:
    """Run every section that fits in ``budget_s`` seconds, writing the record after each
    (a check stopped from outside leaves what it measured); returns the record. A section
    that raises is recorded in ``errors`` and the next one runs."""
    guard = TimeGuard(budget_s)
    device = torch.device(plan.device)
    record: dict = {
        "mode": "smoke" if smoke else "gpu",
        "started_at": provenance.now(),
        "finished_at": None,
        "budget_s": budget_s,
        "wall_seconds": 0.0,
        "notes": guard.notes,
        "errors": [],
    }

    def save() -> None:
        record["wall_seconds"] = guard.elapsed()
        write_record(record, out)

    def attempt(name: str, compute) -> None:
        try:
            record[name] = compute()
        except Exception:
            record["errors"].append(f"{name}: {traceback.format_exc()}")
        save()

    record["environment"] = environment(device, commit)
    peak = record["peak"] = peaks(record["environment"]["gpu"], device, plan)
    paper_config = yamlio.load(PAPER_CONFIG)
    paper_runs = study_config.expand(paper_config)
    paper = RunSpec.from_dict(paper_spec(paper_runs, E1_STUDY))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        root = Path(scratch) / "data"
        write_cifar10(root, *plan.cifar_per_class)
        e1_spec = RunSpec.from_dict(
            {**paper.to_dict(), **plan.spec_changes, "data_root": str(root), "device": plan.device}
        )
        data = load_generated(e1_spec, device)
        record["seconds_from_start_to_data_on_device"] = guard.elapsed()
        flops = record["flops_per_image"] = {
            m: flops_per_image(e1_spec, data, m, min(plan.batches)) for m in MODELS
        }
        record["training"] = []

        def measure_steps(compile: bool) -> None:
            for options in training_grid(plan, compile):
                needs = plan.estimated_seconds["compiled" if compile else "training"]
                if compile and plan.compile_skipped:
                    entry = {**options, "skipped": plan.compile_skipped}
                elif not guard.fits(f"training {options}", needs):
                    entry = {**options, "skipped": guard.notes[-1]}
                else:
                    spec = training_spec(e1_spec, **options)
                    try:
                        entry = training_entry(spec, data, device, plan, flops[spec.model], peak)
                    except Exception:
                        record["errors"].append(f"training {options}: {traceback.format_exc()}")
                        entry = {**options, "skipped": "error (see errors)"}
                record["training"].append(entry)
                save()

        def train_and_derive() -> dict:
            # the paper run's evaluations within the shortened budget, its clock steps included
            cadence = [s for s in paper.evaluation_steps if s < plan.train_steps]
            values = {
                **e1_spec.to_dict(),
                "steps": plan.train_steps,
                "eval_steps": cadence,
                "eval_clock_steps": [],
            }
            measured = train_run(values, Path(scratch))
            record["derived"] = minutes_per_1000_steps(measured, paper)
            return measured

        settings = EvaluationSettings.from_dict(
            {**paper_config["evaluate"], **(plan.estimator_settings or {})}
        )
        measure_steps(compile=False)
        sections = (
            ("evaluation", lambda: evaluation(e1_spec, data, device, plan)),
            ("train_run", train_and_derive),
            ("e5", lambda: e5_check(plan, data, device, paper_config, paper_runs)),
            ("estimators", lambda: estimator_study(e1_spec, data, device, settings)),
        )
        for name, compute in sections:
            if guard.fits(name, plan.estimated_seconds[name]):
                attempt(name, compute)
        measure_steps(compile=True)
    record["finished_at"] = provenance.now()
    save()
    return record


def write_record(record: dict, out: Path) -> None:
    """``out/gpu_check.json`` and ``out/gpu_check.md``, each replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("gpu_check.json", json.dumps(record, indent=2) + "\n"),
                       ("gpu_check.md", markdown(record))):  # fmt: skip
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


def load_generated(spec: RunSpec, device: torch.device) -> RunData:
    """``load_run_data`` on the generated CIFAR-10 files (md5 check switched off here)."""
    import pytest
    from fixtures_data import skip_cifar_md5

    with pytest.MonkeyPatch.context() as patch:
        skip_cifar_md5(patch)
        return load_run_data(spec, device)


# --- the record -----------------------------------------------------------------------------


def paper_yaml_line(record: dict) -> str:
    """The line a person pastes into config/paper.yaml's ``resources`` (not done here)."""
    minutes = record["derived"]["minutes_per_1000_steps"]
    return (
        f"minutes_per_1000_steps: {math.ceil(minutes * 100) / 100:.2f}  # measured by "
        f"benchmarks/gpu_check.py on {record['environment']['gpu']}, "
        f"{record['started_at'][:10]} (E1 base: VGG-13, batch 256, paper cadence)"
    )


def markdown(record: dict) -> str:
    """The record as a readable page (the JSON beside it holds every number)."""
    env, peak = record["environment"], record["peak"]
    versions = env["versions"]
    sheet = peak["datasheet_bf16_flops"]
    lines = [
        f"# gcstudy GPU check ({record['mode']})",
        "",
        f"- device: {env['gpu']}; torch {versions['torch']}, CUDA {versions['cuda']}, "
        f"cuDNN {versions['cudnn']}; gcstudy commit {env['gcstudy_commit']}",
        f"- {record['started_at']} to {record['finished_at'] or '(stopped or running)'}, "
        f"{record['wall_seconds']:.0f} s "
        f"(budget {record['budget_s']:.0f} s)",
        f"- bf16 matrix rate measured here ({peak['matmul_n']}^3): "
        f"{peak['measured_bf16_matmul_flops'] / 1e12:.1f} TFLOP/s; datasheet: "
        + (f"{sheet / 1e12:.0f} TFLOP/s ({peak['datasheet_name']})" if sheet else "none recorded")
        + f"; for comparison {peak['reference_h200_bf16_flops'] / 1e12:.0f} TFLOP/s, "
        f"{peak['reference_h200_source']}",
        "",
        "## Training steps (gcstudy.training.trainer.train_step)",
        "",
        "| model | batch | precision | channels_last | compile | images/s | GFLOP/image "
        "| MFU (measured rate) | MFU (datasheet) | first step s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    reason = None
    for e in record["training"]:
        head = (
            f"| {e['model']} | {e['batch']} | {e['precision']} | {e['channels_last']} "
            f"| {e['compile']} "
        )
        if "skipped" in e:
            said = "as above" if e["skipped"] == reason else e["skipped"]
            lines.append(head + f"| skipped: {said} | | | | |")
            reason = e["skipped"]
            continue
        datasheet = "-" if e["mfu_datasheet"] is None else f"{e['mfu_datasheet']:.1%}"
        lines.append(
            head + f"| {e['images_per_s']:.0f} | {e['flops_per_image'] / 1e9:.3f} "
            f"| {e['mfu_measured_peak']:.1%} | {datasheet} | {e['first_step_seconds']:.2f} |"
        )
    if "evaluation" in record:
        ev = record["evaluation"]
        lines += [
            "",
            "## One evaluation at the paper's settings",
            "",
            f"settings: {ev['spec']}, {ev['test_images']} test images, "
            f"{ev['target_images']} target images (few-shot)",
            "",
            "| what | seconds |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.3f} |" for k, v in ev["seconds"].items()]
        lines += [f"| part of measure: {k} | {v:.3f} |" for k, v in ev["part_seconds"].items()]
    if "train_run" in record:
        run = record["train_run"]
        lines += [
            "",
            f"## gcstudy train: E1 base spec, {run['steps']} steps",
            "",
            f"{run['status']} on {run['device']}, {run['evaluations']} evaluations, "
            f"{run['checkpoints']} checkpoints + final weights, "
            f"{run['process_seconds']:.1f} s in all",
            "",
            "| phase | seconds |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.2f} |" for k, v in run["phase_seconds"].items()]
        lines.append(
            f"| outside the phases (interpreter, imports, final trace) "
            f"| {run['outside_phases_seconds']:.2f} |"
        )
        derived = record["derived"]
        lines += [
            "",
            "## minutes_per_1000_steps (the paper's E1 runs)",
            "",
            "| per 1,000 steps | count | seconds each | seconds |",
            "|---|---|---|---|",
        ]
        for k, seconds in derived["seconds_per_1000_steps"].items():
            lines.append(
                f"| {k} | {derived['count_per_1000_steps'][k]:.3g} "
                f"| {derived['seconds_each'][k]:.4g} | {seconds:.2f} |"
            )
        lines += [
            "",
            f"**{derived['minutes_per_1000_steps']:.3f} minutes per 1,000 steps**; "
            f"evaluation / training time: "
            f"{derived['evaluation_vs_training_per_1000_steps']:.1%} per 1,000 steps, "
            f"{derived['evaluation_vs_training_between_regular_evaluations']:.1%} between "
            f"two regular evaluations ({derived['paper_run']['eval_every']} steps apart)",
            "",
            "For config/paper.yaml (by hand):",
            "",
            f"    {paper_yaml_line(record)}",
        ]
        if record["mode"] == "smoke":
            lines += ["", "(smoke mode: tiny networks on the CPU, not a figure for the paper)"]
    if "e5" in record:
        e5 = record["e5"]
        lines += [
            "",
            "## E5: bf16 autocast with the GC penalty's double backward",
            "",
            f"finite: {e5['finite']} (losses {e5['losses_finite']}, gradients "
            f"{e5['gradients_finite']}, batch GC {e5['batch_gc']:.4g}, measured GC "
            f"{e5['measured_gc']:.4g}); {e5['seconds_per_step'] * 1e3:.1f} ms per step, "
            f"{e5['seconds_per_step_without_penalty'] * 1e3:.1f} ms without the penalty",
        ]
    if "estimators" in record:
        est = record["estimators"]
        lines += [
            "",
            f"## Estimator study (E2) on {est['examples']} examples",
            "",
            f"exact GC: {est['exact_gc_seconds']:.2f} s; the study with "
            f"{est['repeats_measured']} repeats: {est['study_seconds']:.1f} s; with the "
            f"settings' {est['repeats_of_the_settings']} repeats (derived): "
            f"{est['derived_study_seconds']:.1f} s",
            "",
            "| estimator | budget | seconds per estimate |",
            "|---|---|---|",
        ]
        lines += [
            f"| {s['estimator']} | {s['budget']:g} | {s['seconds_per_estimate']:.3f} |"
            for s in est["settings"]
        ]
    if record["notes"]:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in record["notes"]]
    if record["errors"]:
        lines += ["", "## Errors", ""]
        lines += [f"```\n{error.rstrip()}\n```" for error in record["errors"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "gpu_check",
        help="folder for gpu_check.json and gpu_check.md",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the same code on the CPU at tiny sizes (for CI)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="sections that no longer fit are skipped (default 330)",
    )
    parser.add_argument(
        "--commit",
        default=None,
        help="gcstudy's git commit when the checkout has no .git (default: git describe of src/)",
    )
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU machine, or --smoke on the CPU")
    plan = SMOKE if args.smoke else FULL
    commit = args.commit or provenance.git_commit()
    record = check(plan, args.budget_s, commit, args.smoke, args.out)
    sys.stdout.write(markdown(record))
    if "derived" in record and not args.smoke:
        print(f"\nfor config/paper.yaml resources (paste by hand):\n  {paper_yaml_line(record)}")
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 1 if record["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
