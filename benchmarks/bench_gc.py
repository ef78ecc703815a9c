"""Cost and accuracy of the GC estimators (prints ratios measured in one run; not a test).

Figures, on whatever device runs it (CUDA if available, else CPU):
1. Hutchinson GC (1 probe) on 128 examples / one SGD training step at batch 128, VGG-13
   32x32x3 (floor ~2/3: forward + input-gradient vs forward + full backward; target <= 0.75).
2. Exact GC time per example / Hutchinson time per example (VGG-13).
3. Relative error of Hutchinson (1 probe) vs exact GC over >= 256 examples of the digits
   data on a narrow VGG-13 briefly trained on them (target <= 5 %).
4. Peak extra memory of exact GC for several chunk sizes (each in a fresh process).

Usage: python benchmarks/bench_gc.py [--repeats 3] [--exact-examples 2] [--quick]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from gcstudy.data import load
from gcstudy.metrics.gc import geometric_complexity
from gcstudy.models import build


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def timed(fn) -> float:
    """Wall seconds of one call of ``fn`` (synchronising CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def step_vs_hutchinson(repeats: int) -> tuple[float, float]:
    """Median seconds of one SGD step (batch 128) and of one Hutchinson GC estimate on 128
    examples, interleaved so that machine noise hits both alike."""
    torch.manual_seed(0)
    model = build("vgg13", num_classes=10).to(device())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(128, 3, 32, 32, device=device())
    y = torch.randint(0, 10, (128,), device=device())

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def hutchinson():
        model.eval()
        geometric_complexity(model.embed, x, "hutchinson", probes=1, generator=0, batch_size=128)

    train_step(), hutchinson()  # warm-up
    steps, gcs = [], []
    for _ in range(repeats):
        steps.append(timed(train_step))
        gcs.append(timed(hutchinson))
    return statistics.median(steps), statistics.median(gcs)


def exact_per_example(examples: int) -> float:
    """Seconds per example of exact GC on full-width VGG-13."""
    torch.manual_seed(0)
    model = build("vgg13", num_classes=10).to(device()).eval()
    x = torch.randn(examples, 3, 32, 32, device=device())
    return timed(lambda: geometric_complexity(model.embed, x, "exact", chunk_size=64)) / examples


def hutchinson_error_on_digits(examples: int, steps: int) -> tuple[float, float, float]:
    """Exact and 1-probe Hutchinson GC over ``examples`` digits on a narrow VGG-13 trained
    for ``steps`` SGD steps; returns (exact, hutchinson, relative error)."""
    torch.manual_seed(0)
    data = load("digits", None, "train")
    x = (data.images.float() / 255 - 0.5) / 0.5
    model = build("vgg13", num_classes=10, in_channels=1, width=0.25)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (64,))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[batch]), data.labels[batch]).backward()
        optimizer.step()
    model.eval()
    sample = x[:examples]
    exact = geometric_complexity(model.embed, sample, "exact").value
    estimate = geometric_complexity(model.embed, sample, "hutchinson", generator=1).value
    return exact, estimate, abs(estimate - exact) / exact


MEMORY_PROBE = """
import json, sys, threading, time, torch
from gcstudy.metrics.gc import geometric_complexity
from gcstudy.models import build

def rss():  # resident set size now, bytes (Linux)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

chunk, examples = int(sys.argv[1]), int(sys.argv[2])
cuda = torch.cuda.is_available()
dev = torch.device("cuda" if cuda else "cpu")
model = build("vgg13", num_classes=10).to(dev).eval()
x = torch.randn(examples, 3, 32, 32, device=dev)
with torch.no_grad():
    model.embed(x)
peak, done = [rss()], threading.Event()

def sample():  # the CPU allocator has no peak counter: sample the RSS every 2 ms
    while not done.is_set():
        peak.append(rss())
        time.sleep(0.002)

if cuda:
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    base = rss()
    threading.Thread(target=sample, daemon=True).start()
geometric_complexity(model.embed, x, "exact", chunk_size=chunk, batch_size=examples)
done.set()
extra = (torch.cuda.max_memory_allocated() if cuda else max(peak)) - base
print(json.dumps({"extra_mib": extra / 2**20}))
"""


def exact_peak_memory(chunk: int, examples: int) -> float:
    """Peak extra memory (MiB) of exact GC on ``examples`` VGG-13 inputs, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(chunk), str(examples)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exact-examples", type=int, default=2)
    parser.add_argument("--error-examples", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 32, 128])
    args = parser.parse_args()
    print(f"device: {device()}  torch {torch.__version__}  threads {torch.get_num_threads()}")

    step, hutchinson = step_vs_hutchinson(args.repeats)
    print(
        f"[1] VGG-13 SGD step (batch 128): {step:.3f} s; Hutchinson GC (1 probe, 128 ex.): "
        f"{hutchinson:.3f} s; ratio GC/step = {hutchinson / step:.3f} (target <= 0.75)"
    )

    exact = exact_per_example(args.exact_examples)
    per_example = hutchinson / 128
    print(
        f"[2] exact GC: {exact:.2f} s/example; Hutchinson: {per_example * 1e3:.1f} ms/example;"
        f" ratio exact/Hutchinson = {exact / per_example:.0f}x"
    )

    truth, estimate, error = hutchinson_error_on_digits(args.error_examples, args.train_steps)
    print(
        f"[3] narrow VGG-13 on {args.error_examples} digits: exact GC {truth:.4g}, Hutchinson "
        f"(1 probe) {estimate:.4g}, relative error {100 * error:.2f} % (target <= 5 %)"
    )

    for chunk in args.chunks:
        mib = exact_peak_memory(chunk, 8)
        print(f"[4] exact GC, 8 examples, chunk {chunk:4d} VJPs: peak extra memory {mib:.0f} MiB")
    print(
        f"    (resident set of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
