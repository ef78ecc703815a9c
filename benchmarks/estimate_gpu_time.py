"""An estimate (not a measurement) of a config's training time per 1,000 steps on a GPU,
per study, and the check of the config's rates against it.

    python benchmarks/estimate_gpu_time.py [--configfile config/paper.yaml]
        [--gpu-matmul-tflops 790] [--repeats 3]

No GPU has run gcstudy yet, so the ``minutes_per_1000_steps`` of config/paper.yaml (the
resources' one, and a study's own where its steps cost more) are derived, and this script
shows the derivation:

1. FLOPs, counted by ``torch.utils.flop_counter`` on the real models (width, classes and
   input of each study, at its data set's image size: 32x32, mini-ImageNet 84x84; a
   convolutional net's FLOPs per image grow with the image's area, (84/32)^2 = 6.9x): a
   training step is forward + backward at the study's batch size (with the GC penalty:
   plus its double backward, counted too); an evaluation is one forward pass per image of
   the fixed samples (features, test, BatchNorm recalibration, few-shot target images) plus
   ``1 + 2 * gc_probes`` forward-equivalents per GC example (a VJP costs about two
   forwards). Per 1,000 steps: 1,000 steps + the evaluations that fall in them.
2. The rate this code reaches, measured here on the CPU: training steps of the first
   study's model, timed, as a fraction of this CPU's matrix-multiply rate measured in the
   same run (``benchmarks/bench_train.py`` does the same per model).
3. The GPU rate ASSUMED: that same fraction of a GPU's bf16 matrix-multiply rate
   (``--gpu-matmul-tflops``; 790 TFLOP/s, measured on an H200: docs/facts.md#gpu-matrix-rate). Small
   32x32 networks usually use a GPU less well than a large matrix multiply, so this is
   optimistic: the config rounds up and the job time limit is twice the estimate (and
   doubles again on each retry, which resumes from the checkpoint).
4. A study's own rate, where its steps cost more than those the resources' rate covers:
   the resources' ``minutes_per_1000_steps`` times the FLOPs per 1,000 steps of the study's
   costliest shape over those of the costliest shape among the studies without a rate of
   their own ("scaled" below; it does not depend on the timing of items 2-3). It keeps the
   allowance the resources' value has over its own estimate and errs long: per-step
   overheads do not grow with the FLOPs, and larger convolutions use a GPU better. The
   script says, per study, whether the config's rate is at least that.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gcstudy.models import build
from gcstudy.scheduling import jobs
from gcstudy.study import config as study_config
from gcstudy.study.datasets import DATASETS


def side(spec) -> int:
    """Pixels per side of the images the spec's model is fed (its data set's)."""
    return DATASETS[spec.dataset].image_size


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def step_flops(spec, channels: int, classes: int, batch: int = 4) -> tuple[int, int]:
    """(FLOPs of one training step at the spec's batch size, forward FLOPs per image),
    counted at a small batch and scaled (both are linear in the batch)."""
    model = build(spec.model, classes, channels, spec.width).train()
    pixels = side(spec)
    leaf = torch.randn(batch, channels, pixels, pixels, requires_grad=bool(spec.gc_penalty))
    y = torch.randint(0, classes, (batch,))

    def train_step():
        x = leaf * 1.0  # the flop counter cannot take a gradient w.r.t. a leaf
        embedding = model.embed(x)
        loss = F.cross_entropy(model.head(embedding), y)
        if spec.gc_penalty:  # one probe, differentiated through (double backward)
            (grad,) = torch.autograd.grad(embedding.sum(), x, create_graph=True)
            loss = loss + spec.gc_penalty * grad.square().sum()
        loss.backward()

    def forward():
        with torch.no_grad():
            model.eval()
            model(leaf)

    return counted(train_step) * spec.batch_size // batch, counted(forward) // batch


def evaluation_images(spec) -> float:
    """Forward-equivalents (images) of one evaluation of the run."""
    dataset = DATASETS[spec.dataset]
    test = spec.test_examples or dataset.test_size
    return (spec.feature_examples + test + spec.bn_recalibration_examples
            + dataset.target_size
            + spec.gc_examples * (1 + 2 * spec.gc_probes))  # fmt: skip


def flops_per_1000_steps(spec) -> float:
    info = DATASETS[spec.dataset]
    classes = len(info.split_classes("train"))
    step, forward = step_flops(spec, info.channels, classes)
    evaluations = len(spec.evaluation_steps) * 1000 / spec.steps
    return 1000 * step + evaluations * evaluation_images(spec) * forward


def cpu_fraction_of_peak(spec, repeats: int) -> tuple[float, float]:
    """(measured training FLOP/s of the spec's model at batch 32 on this CPU, that as a
    fraction of this CPU's float32 matrix-multiply FLOP/s), measured in one run."""
    info = DATASETS[spec.dataset]
    model = build(spec.model, len(info.split_classes("train")), info.channels, spec.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    pixels = side(spec)
    x, y = torch.randn(32, info.channels, pixels, pixels), torch.randint(0, 10, (32,))

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = counted(step)
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    rate = flops / statistics.median(times)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    peak = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        peak.append(2 * 2048**3 / (time.perf_counter() - start))
    return rate, rate / statistics.median(peak)


def shape(run) -> tuple:
    """What a run's FLOPs per 1,000 steps depend on, besides its spec's cadence."""
    spec = run.spec
    return (run.study, spec.model, spec.dataset, spec.batch_size, spec.gc_penalty > 0)


def study_flops(runs) -> dict[str, tuple[float, float]]:
    """Per study of ``runs`` (trained runs), (FLOPs per 1,000 steps of its costliest shape,
    mean over its runs), printing each shape's count with its estimate."""
    by_shape: dict[tuple, float] = {}
    per_study: dict[str, list[float]] = {}
    for run in runs:
        key = shape(run)
        if key not in by_shape:
            by_shape[key] = flops_per_1000_steps(run.spec)
            study, model, dataset, batch, penalty = key
            print(
                f"{study:26s} {model:9s} {dataset:14s} {side(run.spec):3d}px batch {batch:4d}"
                f"{' +GC penalty' if penalty else '            '} "
                f"{by_shape[key] / 1e15:7.2f} PFLOP per 1,000 steps"
            )
        per_study.setdefault(run.study, []).append(by_shape[key])
    return {s: (max(f), statistics.fmean(f)) for s, f in per_study.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/paper.yaml")
    parser.add_argument("--gpu-matmul-tflops", type=float, default=790.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = study_config.load(args.configfile)
    runs = study_config.trained_runs(study_config.expand(config))
    torch.manual_seed(0)
    rate, fraction = cpu_fraction_of_peak(runs[0].spec, args.repeats)
    gpu_rate = fraction * args.gpu_matmul_tflops * 1e12
    print(
        f"measured here: {runs[0].spec.model} training at {rate / 1e9:.1f} GFLOP/s on the "
        f"CPU = {fraction:.1%} of this CPU's matmul rate (threads: {torch.get_num_threads()})"
    )
    print(
        f"ASSUMED GPU rate: {fraction:.1%} x {args.gpu_matmul_tflops:.0f} TFLOP/s = "
        f"{gpu_rate / 1e12:.1f} TFLOP/s"
    )
    flops = study_flops(runs)
    own = {s for s in flops if config["studies"][s].get("minutes_per_1000_steps") is not None}
    covered = max(worst for s, (worst, _) in flops.items() if s not in own)
    resources = config["resources"]["minutes_per_1000_steps"]
    print("\nper study: costliest shape (mean over its runs) -> estimate; config rate")
    for study, (worst, mean) in flops.items():
        given = jobs.rate(config, study)
        line = (
            f"{study:26s} {worst / 1e15:6.2f} ({mean / 1e15:5.2f}) PFLOP -> "
            f"{worst / gpu_rate / 60:5.2f} min per 1,000 steps (estimate); config {given:g}"
        )
        if study in own:
            scaled = resources * worst / covered
            verdict = "OK" if given >= scaled else "BELOW the scaled rate"
            line += f" (own; scaled {scaled:.2f}: {verdict})"
        print(line)
    print(
        f"largest estimate covered by resources.minutes_per_1000_steps ({resources:g}): "
        f"{covered / gpu_rate / 60:.2f} min per 1,000 steps"
    )


if __name__ == "__main__":
    main()
