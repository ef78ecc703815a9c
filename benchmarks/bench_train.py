"""Training throughput: images/s and fraction of the device's peak FLOP/s (not a test).

For VGG-11, VGG-13, ResNet-18 and ResNet-50 (width 1, 32x32x3, 10 classes) at batch 128 on
whatever device runs it: one SGD step as ``gcstudy.training.trainer`` runs it (CUDA:
channels_last and bf16 autocast), timed over a few repeats after warm-up. FLOPs per step come from
``torch.utils.flop_counter`` (forward + backward); the peak is measured in the same run as
the throughput of a large matrix multiply in the step's precision, so the fraction compares
like with like on a noisy machine.

Usage: python benchmarks/bench_train.py [--steps 3] [--batch 128] [--models vgg11 ...]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from gcstudy.models import MODELS, build


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of an n x n matrix multiply (median of 5), the practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(5):
        synchronise()
        start = time.perf_counter()
        a @ b
        synchronise()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def step_throughput(name: str, device: torch.device, batch: int, steps: int):
    """(images/s, FLOPs per step) of SGD steps for one model."""
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = build(name, num_classes=10).to(device, memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    step()
    times = []
    for _ in range(steps):
        synchronise()
        start = time.perf_counter()
        step()
        synchronise()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times), counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
    print(
        f"device: {name}, threads {torch.get_num_threads()}, matmul peak "
        f"({str(dtype).split('.')[-1]}): {peak / 1e12:.3f} TFLOP/s"
    )
    for model in args.models:
        images, flops = step_throughput(model, device, args.batch, args.steps)
        achieved = flops * images / args.batch
        print(
            f"{model:9s} batch {args.batch}: {images:9.1f} images/s, "
            f"{flops / args.batch / 1e9:.2f} GFLOP/image (fwd+bwd), "
            f"{achieved / 1e12:.3f} TFLOP/s = {achieved / peak:.1%} of peak"
        )


if __name__ == "__main__":
    main()
