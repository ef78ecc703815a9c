"""Where ``gcstudy measure`` spends its time on one network: CPU seconds per part, as ratios.

    python benchmarks/bench_measure.py [--dataset digits_fs] [--root data] [--model vgg11]
                                       [--width 0.25] [--threads 1]

Builds an untrained network (the cost does not depend on the weights) and times, with
``time.process_time`` in this process at ``--threads`` torch threads, each part of one
measurement with the command's defaults (``gcstudy.cli.MEASURE_SETTINGS``): the BatchNorm
recalibration, embedding the feature and test samples, the GC of the training GC sample
(Hutchinson, one probe), the Gaussian-proxy Poincare constant, and the transfer part
(embedding the target images and 2 x 600 few-shot episodes). Prints each part's seconds
and its share of the whole, so the cost of GC can be set beside that of the few-shot
evaluation it is meant to stand in for.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from gcstudy.cli import MEASURE_OVERRIDES, MEASURE_SETTINGS
from gcstudy.data.run_data import load_run_data
from gcstudy.measure import traced
from gcstudy.models import build
from gcstudy.study.spec import RunSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits_fs")
    parser.add_argument("--root", default="data")
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fields = {f.name: f.default for f in dataclasses.fields(RunSpec)}
    settings = {key: MEASURE_OVERRIDES.get(key, (fields[key],))[0] for key in MEASURE_SETTINGS}
    spec = RunSpec.from_dict({"dataset": args.dataset, "data_root": args.root, **settings})
    data = load_run_data(spec, torch.device("cpu"))
    model = build(args.model, data.num_classes, data.train_images.shape[1], args.width)
    gc_images = data.train_images[data.gc_sample]
    gc_targets = data.train_targets[data.gc_sample]
    parts = {
        "BatchNorm recalibration": lambda: traced.recalibrate_batchnorm(model, data, spec),
        "feature and test samples": lambda: traced.embed_samples(model.eval(), data),
        "GC (training GC sample)": lambda: traced.measure_gc(
            model, data, gc_images, gc_targets, spec, traced.probe_seed(spec, 0)
        ),
        "Poincare constant": lambda: traced.poincare_constant(data, spec),
    }
    if data.target_images is not None:
        parts["target NC and few-shot"] = lambda: traced.measure_transfer(model, data, spec, True)
    seconds = {}
    for name, part in parts.items():
        start = time.process_time()
        part()
        seconds[name] = time.process_time() - start
    total = sum(seconds.values())
    print(f"{args.model} width {args.width} on {args.dataset}, {args.threads} thread(s):")
    for name, value in seconds.items():
        print(f"  {name:<26} {value:8.2f} CPU s  {value / total:6.1%}")
    if "target NC and few-shot" in seconds:
        ratio = seconds["GC (training GC sample)"] / seconds["target NC and few-shot"]
        print(f"  GC / transfer evaluation: {ratio:.2f}")


if __name__ == "__main__":
    main()
