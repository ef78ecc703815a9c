"""How far BatchNorm's running statistics lag the weights early in training (not a test).

Trains one run as ``gcstudy.training.trainer`` does (``train_step``, digits, VGG-11 at width 0.25 by
default, a large learning rate) and at a few steps measures the test accuracy in eval mode
twice: with the running statistics that training left behind (PyTorch's exponential average,
momentum 0.1), and after ``gcstudy.measure.traced.recalibrate_batchnorm`` recomputed them on
the run's fixed training sample, as every traced measurement does. Prints one line per
step; the gap is why the measurements recalibrate first (docs/facts.md#stale-batchnorm-statistics).

Usage: python benchmarks/stale_batchnorm.py [--steps 5 10 20 40 80] [key=value ...]
(keys of the run spec, e.g. lr=0.2 dataset=mnist_5k data_root=data)
"""

import argparse
import copy

import torch

from gcstudy.data.run_data import load_run_data
from gcstudy.measure.traced import accuracy, embed, recalibrate_batchnorm
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import make_step, model_and_optimizer, train_step

DEFAULTS = {"dataset": "digits", "model": "vgg11", "width": 0.25, "lr": 0.1, "batch_size": 64}


def test_accuracy(model, data) -> float:
    """Test accuracy of ``model`` in eval mode with its current running statistics."""
    model.eval()
    _, logits = embed(model, data, data.test_images)
    model.train()
    return accuracy(logits, data.test_targets)


def parse(text: str):
    """A command-line value as int, float or string, whichever reads it first."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 40, 80])
    parser.add_argument("overrides", nargs="*", help="run-spec key=value")
    args = parser.parse_args()
    values = dict(DEFAULTS, device="cpu", steps=max(args.steps))
    for item in args.overrides:
        key, _, value = item.partition("=")
        values[key] = parse(value)
    spec = RunSpec.from_dict(values, source="command line")
    torch.set_num_threads(1)
    device = torch.device("cpu")
    data = load_run_data(spec, device)
    model, optimizer = model_and_optimizer(spec, data, device)
    forward = make_step(model, spec, None)
    print(f"{spec.model} width {spec.width} on {spec.dataset}, lr {spec.lr}, batch "
          f"{spec.batch_size}; test accuracy in eval mode")  # fmt: skip
    print("step  running statistics  recalibrated")
    for step in range(
        max(args.steps)
    ):  # as in gcstudy.training.trainer: step t makes weights t + 1
        train_step(model, optimizer, data, spec, step, forward)
        if step + 1 in args.steps:
            stale = test_accuracy(model, data)
            fresh = copy.deepcopy(model)
            recalibrate_batchnorm(fresh, data, spec)
            print(f"{step + 1:4d}  {stale:18.3f}  {test_accuracy(fresh, data):12.3f}")


if __name__ == "__main__":
    main()
