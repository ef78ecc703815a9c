"""One pre-training run: plain SGD with optional L2 and GC penalties, traced metrics,
checkpoints and exact resume (``gcstudy train RUN.yaml --out DIR``).

Loss at step t on the batch B_t (``|B_t|`` = batch size, constant learning rate):

    L = CE(F(x), y) + l2 * ||theta||^2 + gc_penalty * mean_{i in B_t} ||v_i^T J_f(x_i)||^2

with one Rademacher probe ``v_i`` per example (an unbiased estimate of the GC of the batch,
differentiated through by double backward; the batch forward runs in train mode, so the
embedding's BatchNorm uses batch statistics, as in the forward of the loss).

Everything random is derived from the run seed and the step, never from a global stream:
initialisation (``torch.manual_seed(seed)``), the data order (one permutation per epoch),
the penalty probes and the metric probes. A run resumed from a checkpoint therefore
continues bit for bit like an uninterrupted one (CPU, deterministic algorithms, the same
torch thread count in every segment: the trace records them, see ``segment``).

Outputs in the run folder: ``trace.h5`` (see ``gcstudy.study.traces``) and ``model.pt`` (final
weights with the run spec), each sealed (``gcstudy.study.seals``: size, time and SHA-256 in
``<name>.sum``), ``trace.running.h5`` while running, and ``ckpt/`` (removed once the run is
finished). A run whose trace is finished and
whose two result files are as sealed is not trained again; a broken or half result (one
of the two missing, truncated or changed) is removed and the run trained again.

The finished trace records where the run's wall-clock seconds went (attribute
``phase_seconds``, summed over resumes): ``start_up`` (from ``run`` being called to the
first step: data onto the device, model, Poincare constant), ``training`` (the SGD steps,
compilation included), ``evaluation`` (the measurements and the running trace) and
``checkpointing`` (checkpoints and the final weights). CUDA work is waited for at the end of
the last step before an evaluation or a checkpoint, so it is counted as training. Not
counted: the interpreter's start, imports, and the final trace write.

``run_many`` trains several runs one after another in one process (a batch,
``gcstudy.scheduling.batches``): the interpreter, torch and the data sets are loaded once.
Each run keeps its own folder, trace, checkpoints and resume; a run that fails is logged
and the others go on.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gcstudy import files, provenance
from gcstudy.data.run_data import RunData, load_run_data
from gcstudy.measure.traced import measure, poincare_constant
from gcstudy.models import build
from gcstudy.scheduling.status import PROGRESS_SECONDS, duration
from gcstudy.study import runlock, traces
from gcstudy.study import seals as runfiles
from gcstudy.study.runfolder import RunFolder, differing_keys
from gcstudy.study.spec import RunSpec
from gcstudy.training import checkpoints

log = logging.getLogger(__name__)
# SIGINT: Ctrl-C in a terminal (it reaches every process of the foreground group, so the
# trainer under Snakemake gets it too); SIGTERM, SIGUSR1, SIGUSR2: what SLURM and submitit
# send before a time limit or on preemption.
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Interrupted(Exception):
    """The run received ``signum``, wrote a checkpoint at ``step`` and stopped."""

    def __init__(self, signum: int, step: int, signals: tuple[int, ...] = ()):
        super().__init__(
            f"stopped by signal {signal.Signals(signum).name} at step {step}; "
            "a checkpoint was written: run the same command again to resume"
        )
        self.signum, self.step = signum, step
        # every signal received before stopping, in order (SIGTERM then SIGUSR2 on a
        # preemption): a launcher that requeues on one of them must see all of them
        self.signals = tuple(signals) or (signum,)


def run(spec: RunSpec, out: str | os.PathLike, progress: bool = True) -> str:
    """Train one run into the folder ``out``; returns the final status ("complete" or
    "diverged"). Resumes from ``out/ckpt`` when a valid checkpoint is there; does nothing
    when ``out/trace.h5`` is already finished and ``out/model.pt`` there, both as sealed
    (a broken or half result is removed and trained again). Raises ``Interrupted`` after
    checkpointing when SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 arrives; raises ``runlock.RunLocked``
    when another live process trains ``out``."""
    entered = time.perf_counter()
    out = Path(out)
    folder = RunFolder(out)
    runlock.acquire(out)  # one writer per run folder: a live second trainer is refused
    finished = finished_status(out)
    if finished is not None:
        return finished
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(spec.device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    saved = checkpoints.latest(folder.checkpoints)
    if saved is not None:
        check_same_spec(saved["spec"], spec, out)
    data = load_run_data(spec, device)
    model, optimizer = model_and_optimizer(spec, data, device)
    start = starting_point(saved, model, optimizer, out, spec)
    start["segments"].append(segment(start["step"], device))
    poincare = poincare_constant(data, spec)
    attrs = trace_attributes(spec, data, device, poincare, start)
    training = Training(spec, out, model, optimizer, data, poincare, attrs, start["phase_seconds"])
    training.phases["start_up"] += time.perf_counter() - entered
    end = train_loop(training, start, progress)
    write_result(training, end)
    return end.status


PHASES = ("start_up", "training", "evaluation", "checkpointing")  # see phase_seconds above


@dataclass(frozen=True)
class Training:
    """What one run's training loop works with and never rebinds: the spec, the run folder,
    the network and its optimizer (their weights change in place), the data, the Poincare
    constant of the data (for ``measure``), the trace attributes (``trace_attributes``;
    ``started_at`` and ``segments`` go into every checkpoint from there) and ``phases``, the
    run's wall-clock seconds per phase (``PHASES``), added to in place by ``timed``."""

    spec: RunSpec
    out: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: RunData
    poincare: float
    attrs: dict
    phases: dict[str, float]


@dataclass(frozen=True)
class LoopEnd:
    """Where ``train_loop`` stopped: the status ("complete" or "diverged"), the number of
    SGD steps done, the trace records (one dict per evaluation step) and the CPU seconds
    spent in the loop over all segments (the trace's ``cpu_seconds``)."""

    status: str
    step: int
    records: list[dict]
    cpu_seconds: float


def finished_status(out: Path) -> str | None:
    """The status of the finished result in ``out``, or None when the run must be trained;
    a broken or half result is removed first."""
    folder = RunFolder(out)
    problems = folder.trained_problems()
    if not any(problems.values()):
        finished = folder.trace_status()
        log.info("%s is already %s; nothing to do", folder.trace, finished)
        return finished
    if any(problem != "missing" for problem in problems.values()):
        broken = "; ".join(f"{path.name}: {p}" for path, p in problems.items() if p)
        log.warning("the result in %s is broken (%s): training the run again", out, broken)
        folder.remove_trained()
    return None


def starting_point(saved: dict | None, model, optimizer, out: Path, spec: RunSpec) -> dict:
    """The state the loop starts from: step 0 and no records, or the checkpoint ``saved``
    (whose weights and optimizer state are loaded into ``model`` and ``optimizer``). Keys:
    ``step``, ``records``, ``wall_time`` and ``cpu_time`` (seconds in the loop so far),
    ``started_at``, ``phase_seconds`` and ``segments``."""
    start = {
        "step": 0,
        "records": [],
        "wall_time": 0.0,
        "cpu_time": 0.0,
        "started_at": provenance.now(),
        "phase_seconds": dict.fromkeys(PHASES, 0.0),
        "segments": [],
    }
    if saved is None:
        log.info("%s: training from step 0 to %d", out, spec.steps)
        return start
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    start = {k: saved.get(k, start[k]) for k in start}  # older checkpoints lack some
    log.info("%s: resuming at step %d, training to %d", out, start["step"], spec.steps)
    return start


def write_result(training: Training, end: LoopEnd) -> None:
    """Write the final weights and the finished trace, each sealed, and remove what only a
    running run needs (the running trace, the progress file, the checkpoints)."""
    out, phases = training.out, training.phases
    folder = RunFolder(out)
    with timed(phases, "checkpointing"):
        write_model(
            folder.model, training.model, training.spec, training.data, end.status, end.step
        )
        runfiles.seal(folder.model)
    finished = {
        **training.attrs,
        "finished_at": provenance.now(),
        "phase_seconds": phases,
        "cpu_seconds": end.cpu_seconds,
    }
    write_trace(folder.trace, end.records, training.data, finished, end.status)
    runfiles.seal(folder.trace)
    folder.remove_progress()
    log.info("run %s: %s after %d steps -> %s", out.name, end.status, end.step, folder.trace)


def model_and_optimizer(spec: RunSpec, data: RunData, device: torch.device):
    """The spec's network, seeded by the run seed, on ``device`` in the spec's memory
    format, and its SGD optimizer."""
    torch.manual_seed(spec.seed)
    model = build(spec.model, data.num_classes, data.train_images.shape[1], spec.width)
    model = model.to(device, memory_format=memory_format(device, spec.channels_last))
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    return model, optimizer


@contextmanager
def timed(seconds: dict[str, float], phase: str):
    """Add the wall-clock seconds the block takes to ``seconds[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] += time.perf_counter() - start


def finish_queued_work(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_many(
    runs: list[tuple[RunSpec, Path]],
    progress: bool = True,
    then: Callable[[Path], object] | None = None,
    announce: Callable[[str], object] | None = None,
) -> dict[Path, str]:
    """Train the runs one after another in this process, calling
    ``then(out)`` after each finished run (its evaluations); returns each run folder's
    status, or "failed" for a run whose training or ``then`` raised (the error is logged
    and the others go on). ``Interrupted`` stops the whole job at once (it is re-raised).
    After each run, one ``JobProgress`` line goes to the log and, after the time of day, to
    ``announce``."""
    outcomes: dict[Path, str] = {}
    job = JobProgress([spec.steps * spec.batch_size for spec, _ in runs])
    for number, (spec, out) in enumerate(runs, start=1):
        log.info("run %d of %d: %s", number, len(runs), out)
        start = time.perf_counter()
        try:
            outcomes[out] = run(spec, out, progress=progress)
            if then is not None:
                then(out)
        except Interrupted:
            raise
        except Exception:
            log.exception("run %s failed; going on with the others", out)
            outcomes[out] = "failed"
        line = job.finished(out, outcomes[out], time.perf_counter() - start)
        log.info("%s", line)
        if announce is not None:
            announce(f"{time.strftime('%H:%M:%S')} {line}")
    return outcomes


class JobProgress:
    """Where a job of runs trained one after another stands, one line per finished run.

    ETA (an estimate): the job's elapsed time scaled by the cost of its runs still to
    train over that of the runs done, ``elapsed * (C_total - C_done) / C_done``, with a
    run's cost taken as the training examples it sees (steps x batch size). Runs already
    finished cost no time, so after a rerun the first estimates are low.
    """

    def __init__(self, costs: list[float]):
        self.costs, self.done = costs, 0
        self.start = time.perf_counter()

    def finished(self, out: Path, outcome: str, seconds: float) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        done_cost = sum(self.costs[: self.done])
        left = elapsed * (sum(self.costs) - done_cost) / done_cost if done_cost else 0.0
        return (
            f"run {self.done} of {len(self.costs)} {outcome}: {out.parent.name}/"
            f"{out.name} ({seconds:.1f} s); job {duration(elapsed)} in, "
            + (f"about {duration(left)} left" if self.done < len(self.costs) else "done")
        )


def train_loop(training: Training, start: dict, progress: bool) -> LoopEnd:
    """SGD from ``start['step']`` to ``spec.steps``, measuring at the evaluation steps (the
    step's record is appended to the records of ``start``). Wall-clock and CPU seconds
    continue from ``start['wall_time']`` and ``start['cpu_time']``: the CPU seconds that
    come back add up what this process spends in the loop (training and measuring, the
    final evaluation included: the trace's ``cpu_seconds``). Checkpoints every
    ``spec.checkpoint_every`` steps, and on a stop signal before raising ``Interrupted``."""
    spec, model, out, phases = training.spec, training.model, training.out, training.phases
    step, records = start["step"], start["records"]
    evaluation_steps = set(spec.evaluation_steps)
    device = training.data.train_images.device
    forward = make_step(model, spec, autocast_dtype(spec, device))
    clock = time.perf_counter() - start["wall_time"]
    cpu_clock = time.process_time() - start["cpu_time"]
    bar = progress_bar(spec.steps, step, out.name, progress)
    shown: dict[str, str] = {}  # latest loss and measurements, shown after the bar
    progress_at = (
        time.perf_counter()
    )  # when progress.json was last written (gcstudy.scheduling.status)
    with catch_signals() as received:
        while True:
            wall_time, cpu_time = time.perf_counter() - clock, time.process_time() - cpu_clock
            if step in evaluation_steps and not (records and records[-1]["step"] == step):
                with timed(phases, "evaluation"):
                    record = trace_record(training, step, wall_time)
                    if record is None:
                        return LoopEnd("diverged", step, records, cpu_time)
                    records.append(record)
                    running = RunFolder(out).running_trace
                    write_trace(running, records, training.data, training.attrs, "running")
                shown.update(
                    test_acc=f"{record['test_accuracy']:.3f}",
                    gc=f"{record['gc']:.3g}",
                    nc=f"{record['nc_train']:.3g}",
                )
            if step == spec.steps:
                return LoopEnd("complete", step, records, time.process_time() - cpu_clock)
            with timed(phases, "training"):
                loss = train_step(model, training.optimizer, training.data, spec, step, forward)
                if step + 1 in evaluation_steps or (step + 1) % spec.checkpoint_every == 0:
                    finish_queued_work(device)
            if not math.isfinite(loss):
                log.warning("non-finite loss %s at step %d: the run diverged", loss, step)
                return LoopEnd("diverged", step, records, cpu_time)
            step += 1
            bar.update(1)
            shown["loss"] = f"{loss:.3f}"
            bar.set_postfix(shown, refresh=False)
            if time.perf_counter() - progress_at >= PROGRESS_SECONDS:
                progress_at = time.perf_counter()
                RunFolder(out).record_progress(step, progress_at - clock)
            if received or step % spec.checkpoint_every == 0:
                wall_time, cpu_time = time.perf_counter() - clock, time.process_time() - cpu_clock
                with timed(phases, "checkpointing"):
                    save_checkpoint(training, step, records, wall_time, cpu_time)
            if received:
                bar.close()
                raise Interrupted(received[0], step, tuple(received))


def progress_bar(steps: int, step: int, name: str, shown: bool) -> tqdm:
    """The run's progress bar in steps, from ``step`` of ``steps`` (hidden unless ``shown``)."""
    return tqdm(
        total=steps,
        initial=step,
        disable=not shown,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        desc=name,
    )


def trace_record(training: Training, step: int, wall_time: float) -> dict | None:
    """The trace record of ``step`` (``measure``'s metrics, the examples seen and the
    wall-clock seconds in the loop so far), or None when a weight is not finite (the run
    diverged)."""
    model, spec = training.model, training.spec
    if not all(p.isfinite().all() for p in model.parameters()):
        log.warning("non-finite weights at step %d: the run diverged", step)
        return None
    record = measure(model, training.data, spec, step, training.poincare)
    return {"step": step, "examples_seen": step * spec.batch_size, "wall_time": wall_time, **record}


def save_checkpoint(
    training: Training, step: int, records: list, wall_time: float, cpu_time: float
) -> None:
    """A checkpoint at ``step``: weights, optimizer state, spec and everything ``run`` needs
    to resume (``starting_point`` reads it back)."""
    checkpoints.save(
        RunFolder(training.out).checkpoints,
        step,
        {
            "model": training.model.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "spec": training.spec.to_dict(),
            "records": records,
            "wall_time": wall_time,
            "cpu_time": cpu_time,
            "started_at": training.attrs["started_at"],
            "phase_seconds": training.phases,
            "segments": training.attrs["segments"],
        },
    )


def make_step(model, spec: RunSpec, autocast: torch.dtype | None):
    """The forward pass of a training step, ``x -> (embedding, logits)``, optionally under
    bf16 autocast and ``torch.compile``."""

    def forward(x):
        with torch.autocast(
            x.device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            embedding = model.embed(x)
            return embedding, model.head(embedding)

    return torch.compile(forward) if spec.compile else forward


def train_step(model, optimizer, data: RunData, spec: RunSpec, step: int, forward) -> float:
    """One SGD update on the batch of ``step``; returns the total loss (not applied when it
    is not finite)."""
    model.train()
    index = batch_indices(len(data.train_targets), spec.batch_size, spec.seed, step)
    index = index.to(data.train_images.device)
    x = data.normalise(data.train_images[index])
    x = x.contiguous(memory_format=memory_format(x.device, spec.channels_last))
    y = data.train_targets[index]
    if spec.gc_penalty:
        x.requires_grad_(True)
    embedding, logits = forward(x)
    loss = F.cross_entropy(logits.float(), y)
    if spec.l2:
        loss = loss + spec.l2 * sum(p.square().sum() for p in model.parameters())
    if spec.gc_penalty:
        loss = loss + spec.gc_penalty * batch_gc(embedding, x, spec.seed, step)
    value = loss.item()
    if math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return value


def batch_gc(embedding: torch.Tensor, x: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Differentiable one-probe Hutchinson estimate ``mean_i ||v_i^T J_f(x_i)||^2``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, step, 2))
    v = torch.randint(0, 2, embedding.shape, generator=generator).to(embedding) * 2 - 1
    (grad,) = torch.autograd.grad((embedding.float() * v).sum(), x, create_graph=True)
    return grad.square().flatten(1).sum(dim=1).mean()


@lru_cache(maxsize=2)
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the ``n`` training examples in ``epoch``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, epoch, 3)))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Training examples of ``step``: epochs of ``n // batch_size`` full batches (the last
    partial batch is dropped), each epoch in its own seeded random order."""
    per_epoch = n // batch_size
    epoch, position = divmod(step, per_epoch)
    return epoch_order(n, seed, epoch)[position * batch_size : (position + 1) * batch_size]


def derived_seed(seed: int, step: int, stream: int) -> int:
    """An independent 63-bit seed for (run seed, step, stream)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(2, np.uint64)[0] >> 1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run spec asks for device 'cuda' but no CUDA device is available")
    return torch.device(name)


def memory_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    """NHWC (channels_last) on CUDA when asked; the default NCHW layout otherwise."""
    return (
        torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
    )


def autocast_dtype(spec: RunSpec, device: torch.device) -> torch.dtype | None:
    """bf16 for the training step when asked (auto: on CUDA), else None (fp32)."""
    if spec.precision == "bf16" or (spec.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def check_same_spec(saved: dict, spec: RunSpec, out: Path) -> None:
    differing = differing_keys(saved, spec.to_dict())
    if differing:
        raise ValueError(
            f"the checkpoints in {RunFolder(out).checkpoints} belong to a different run spec "
            f"(keys {', '.join(differing)} differ); remove that folder or train "
            "into another --out"
        )


def segment(first_step: int, device: torch.device) -> dict:
    """What a stretch of training from ``first_step`` to the next interruption ran with.
    Float results depend on the thread count and the device (torch splits reductions by
    thread), so a resumed run equals an uninterrupted one bit for bit only when every
    segment had the same of both: the trace lists them all (``segments``)."""
    return {
        "first_step": first_step,
        "threads": torch.get_num_threads(),
        "device": device_name(device),
        "host": provenance.host(),
        "started_at": provenance.now(),
    }


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def trace_attributes(spec, data: RunData, device, poincare: float, state: dict) -> dict:
    """Provenance and run facts recorded in the trace; ``segments``: one ``segment`` per
    stretch of training (the first, then one per resume)."""
    return {
        "spec": spec.to_dict(),
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "device": device_name(device),
        "host": provenance.host(),
        "seed": spec.seed,
        "started_at": state["started_at"],
        "segments": state["segments"],
        "classes": data.classes.tolist(),
        "target_classes": (
            [] if data.target_labels is None else torch.unique(data.target_labels).tolist()
        ),
        "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
        "facts": {
            "poincare_constant": poincare,
            "bn_recalibration_examples": len(data.bn_sample)
            if spec.bn_recalibration_examples
            else 0,
            "gc_examples": len(data.gc_sample),
            "feature_examples": len(data.feature_sample),
            "test_examples": len(data.test_sample),
            "train_examples": len(data.train_targets),
            "deterministic": device.type == "cpu",
        },
    }


def write_trace(path: Path, records: list[dict], data: RunData, attrs: dict, status: str):
    """Write the records so far (step 0 is always recorded first) as a trace file."""
    names = [n for n in records[0] if n != "step"]
    values = {n: np.array([r[n] for r in records]) for n in names}
    steps = np.array([r["step"] for r in records])
    traces.write(path, steps, data.classes.numpy(), values, attrs, status)


def write_model(path: Path, model, spec: RunSpec, data: RunData, status: str, step: int):
    """Final weights with everything needed to rebuild and feed the network; atomic."""
    with files.replacing(path) as tmp:
        torch.save(
            {
                "state_dict": model.state_dict(),
                "spec": spec.to_dict(),
                "status": status,
                "step": step,
                "classes": data.classes.tolist(),
                "in_channels": data.train_images.shape[1],
                "normalisation": {"mean": data.mean.tolist(), "std": data.std.tolist()},
            },
            tmp,
        )


@contextmanager
def catch_signals():
    """Record the ``INTERRUPT_SIGNALS`` instead of dying, so the loop can checkpoint first."""
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, frame: received.append(signum))
        for s in INTERRUPT_SIGNALS
    }
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
