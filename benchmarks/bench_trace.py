"""Tracing overhead of a run (not a test): how much the evaluation cadence costs.

Runs ``gcstudy.training.trainer.run`` on the default run spec (digits, narrow VGG-11, CPU) twice per
repeat, interleaved: once as is, once with the measurement replaced by a stored record
(the same loop, checkpoints and trace writing, no metric work). Prints

    overhead = (wall time with the default cadence - wall time without) / wall time without

(target <= 20 %) and the training throughput in images/s.

Usage: python benchmarks/bench_trace.py [--repeats 2] [--steps N]
"""

import argparse
import statistics
import tempfile
import time
from unittest import mock

import torch

from gcstudy.study.spec import RunSpec
from gcstudy.training import trainer as train


def timed_run(spec: RunSpec, stub_record: dict | None) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        if stub_record is None:
            train.run(spec, folder, progress=False)
        else:
            with mock.patch.object(train, "measure", lambda *a: dict(stub_record)):
                train.run(spec, folder, progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="override the default steps")
    args = parser.parse_args()
    spec = RunSpec(device="cpu", **({"steps": args.steps} if args.steps else {}))
    print(
        f"spec: {spec.model} width {spec.width} on {spec.dataset}, {spec.steps} steps, "
        f"batch {spec.batch_size}, {len(spec.evaluation_steps)} evaluations at "
        f"{spec.evaluation_steps}; threads {torch.get_num_threads()}"
    )
    captured = {}
    original = train.measure

    def capture(*a):
        captured.update(original(*a))
        return dict(captured)

    with mock.patch.object(train, "measure", capture):
        timed_run(RunSpec(**{**spec.to_dict(), "steps": 1}), None)  # warm-up, one record
    with_eval, without = [], []
    for _ in range(args.repeats):
        with_eval.append(timed_run(spec, None))
        without.append(timed_run(spec, captured))
    full, bare = statistics.median(with_eval), statistics.median(without)
    print(
        f"wall time with evaluation {full:.1f} s, without {bare:.1f} s "
        f"(medians of {args.repeats}: {with_eval} / {without})"
    )
    print(f"tracing overhead = {(full - bare) / bare:.1%} (target <= 20 %)")
    print(
        f"training throughput without evaluation: "
        f"{spec.steps * spec.batch_size / bare:.0f} images/s (incl. start-up and data load)"
    )


if __name__ == "__main__":
    main()
