"""One pre-training run: spec validation, traces, penalties, divergence, checkpoints, resume."""

import logging
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
import yaml

from gcstudy.data.run_data import load_run_data, stratified_sample
from gcstudy.models import build
from gcstudy.study import seals as runfiles
from gcstudy.study import traces
from gcstudy.study.runfolder import RunFolder
from gcstudy.study.spec import RunSpec, SpecError, example_yaml
from gcstudy.training.trainer import (
    batch_gc,
    batch_indices,
    derived_seed,
    finish_queued_work,
    memory_format,
    run,
)
from gcstudy.yamlio import loads

# A run small enough for a test on 2 CPU cores: a 1/16-width VGG-11 on digits.
TINY = dict(
    model="vgg11", width=0.0625, dataset="digits", lr=0.05, batch_size=32, steps=12,
    eval_steps=[0, 3, 7], gc_examples=40, feature_examples=120, test_examples=100,
    bn_recalibration_examples=64, fewshot_episodes=50, checkpoint_every=4, device="cpu",
)  # fmt: skip


def tiny(**changes) -> RunSpec:
    return RunSpec.from_dict({**TINY, **changes})


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def gcstudy(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def same_results(a: Path, b: Path) -> None:
    """Two run folders hold bitwise identical traces (up to wall times) and weights."""
    first, second = traces.read(a / "trace.h5"), traces.read(b / "trace.h5")
    assert list(first.data_vars) == list(second.data_vars)
    for name in first.data_vars:
        if name != "wall_time":
            np.testing.assert_array_equal(first[name].values, second[name].values, err_msg=name)
    np.testing.assert_array_equal(first.step.values, second.step.values)
    assert first.attrs["spec"] == second.attrs["spec"]
    weights = [torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (a, b)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


# --- the run spec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": 0.1}, "unknown key 'learning_rate'"),
        ({"batchsize": 8}, "did you mean 'batch_size'"),
        ({"lr": -0.1}, "key 'lr' = -0.1: must be > 0"),
        ({"lr": 0}, "key 'lr' = 0: must be > 0"),
        ({"lr": "fast"}, "key 'lr' = 'fast': expected a number"),
        ({"steps": 2.5}, "key 'steps' = 2.5: expected an integer"),
        ({"steps": True}, "key 'steps' = True: expected an integer"),
        ({"model": "vgg16"}, "key 'model' = 'vgg16': expected one of vgg11, vgg13, resnet18"),
        (
            {"dataset": "imagenet"},
            "key 'dataset' = 'imagenet': unknown dataset 'imagenet'; built in: digits",
        ),
        ({"gc_method": "jvp"}, "expected one of exact, hutchinson, outputs, mask"),
        ({"momentum": 1.5}, "key 'momentum' = 1.5: must be <= 0.999"),
        ({"eval_steps": [0, 99]}, r"key 'eval_steps' has steps \[99\] outside"),
        ({"compile": "yes"}, "key 'compile' = 'yes': expected true or false"),
        ({"device": "tpu"}, "expected one of auto, cpu, cuda"),
    ],
)
def test_bad_spec_is_refused_naming_the_key(changes, message):
    with pytest.raises(SpecError, match=message):
        RunSpec.from_dict({**TINY, **changes})


def test_example_spec_parses_to_the_defaults():
    text = example_yaml()
    assert all(f"\n{key}:" in text for key in RunSpec().to_dict())
    assert RunSpec.from_dict(loads(text)) == RunSpec()
    assert RunSpec().dataset == "digits"


def test_yaml_reads_exponent_floats_as_numbers():
    assert loads("l2: 1e-5\nlr: 5E-2")["l2"] == 1e-5
    assert RunSpec.from_dict(loads("l2: 1e-4")).l2 == 1e-4


def test_cadence_is_dense_early_and_always_has_first_and_last_steps():
    steps = RunSpec(steps=1000, eval_every=250, eval_log_points=7).evaluation_steps
    assert steps[0] == 0 and steps[-1] == 1000
    assert {250, 500, 750, 1, 1000}.issubset(steps)
    early = [s for s in steps if s < 100]
    assert len(early) >= 4  # log-spaced: 1, 3, 10, 32
    assert RunSpec(steps=20, eval_steps=[5]).evaluation_steps == [0, 5, 20]


# --- data order, samples and the penalty --------------------------------------------------


def test_each_epoch_is_a_permutation_without_the_last_partial_batch():
    n, batch = 103, 10  # 10 full batches per epoch, 3 examples left out each epoch
    epoch = torch.cat([batch_indices(n, batch, seed=0, step=s) for s in range(10)])
    assert len(epoch) == 100 and len(set(epoch.tolist())) == 100
    next_epoch = torch.cat([batch_indices(n, batch, seed=0, step=s) for s in range(10, 20)])
    assert not torch.equal(epoch, next_epoch)
    assert torch.equal(batch_indices(n, batch, 0, 13), batch_indices(n, batch, 0, 13))
    assert not torch.equal(batch_indices(n, batch, 1, 13), batch_indices(n, batch, 0, 13))


def test_stratified_sample_is_balanced_and_respects_small_classes():
    labels = torch.tensor([0] * 50 + [1] * 50 + [2] * 5)
    index = stratified_sample(labels, 30, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[index]).tolist()
    assert counts == [13, 12, 5] and len(set(index.tolist())) == 30
    assert len(stratified_sample(labels, 0, torch.Generator())) == 105


def test_gc_penalty_is_unbiased_and_differentiable_for_a_linear_map():
    """For f(x) = A x the penalty estimates ||A||_F^2 and its gradient is 2A on average."""
    torch.manual_seed(0)
    a = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    x = torch.randn(64, 9, dtype=torch.float64, requires_grad=True)
    values, grads = [], []
    for step in range(300):
        penalty = batch_gc(x @ a.T, x, seed=0, step=step)
        (grad,) = torch.autograd.grad(penalty, a)
        values.append(penalty.item())
        grads.append(grad)
    frobenius = a.detach().square().sum().item()
    assert np.mean(values) == pytest.approx(frobenius, rel=0.03)
    torch.testing.assert_close(torch.stack(grads).mean(0), 2 * a.detach(), rtol=0.1, atol=0.05)


# --- whole runs ---------------------------------------------------------------------------


def test_run_writes_a_complete_trace_with_provenance(tmp_path):
    before = os.times()
    assert run(tiny(), tmp_path / "run", progress=False) == "complete"
    after = os.times()
    trace = traces.read(tmp_path / "run" / "trace.h5")
    # the loop's CPU seconds: some, and no more than the whole call took (data and model
    # set-up included)
    assert 0 < trace.attrs["cpu_seconds"] <= after.user + after.system - before.user - before.system
    assert trace.step.values.tolist() == [0, 3, 7, 12]
    assert trace.gc_per_class.dims == ("step", "class")
    assert trace["class"].values.tolist() == list(range(10))
    assert trace.attrs["status"] == "complete"
    assert trace.attrs["spec"] == tiny().to_dict()
    assert trace.attrs["seed"] == 0 and trace.attrs["git_commit"]
    assert {"torch", "gcstudy", "cuda"} <= set(trace.attrs["versions"])
    assert trace.gc.attrs["units"] and trace.gc.attrs["description"]
    with xr.open_dataset(tmp_path / "run" / "trace.h5", engine="h5netcdf") as opened:
        assert opened.gc_per_class.dims == ("step", "class")  # real dimension scales
        assert opened.gc.attrs["description"] == trace.gc.attrs["description"]
        np.testing.assert_array_equal(opened.gc.values, trace.gc.values)
    for name in trace.data_vars:
        assert np.isfinite(trace[name].values).all(), name
    assert trace.test_accuracy.values[-1] > 0.5 > trace.test_accuracy.values[0]
    assert (trace.examples_seen.values == trace.step.values * 32).all()
    assert not (tmp_path / "run" / "ckpt").exists()
    assert not (tmp_path / "run" / "trace.running.h5").exists()
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["spec"] == tiny().to_dict() and saved["status"] == "complete"


def test_transfer_run_traces_target_collapse_and_fewshot(tmp_path):
    run(tiny(dataset="digits_fs", steps=6, eval_steps=[0]), tmp_path / "fs", progress=False)
    trace = traces.read(tmp_path / "fs" / "trace.h5")
    assert trace["class"].values.tolist() == [0, 1, 2, 3, 4]
    assert trace.attrs["target_classes"] == [5, 6, 7, 8, 9]
    for shots in (1, 5):
        accuracy = trace[f"fewshot_{shots}shot_accuracy"].values
        assert ((accuracy > 0.2) & (accuracy <= 1)).all()  # 5-way: chance is 0.2
        assert (trace[f"fewshot_{shots}shot_ci95"].values > 0).all()
    assert np.isfinite(trace.target_nc.values).all()


# --- the training options act -------------------------------------------------------------

PENALTIES = {"plain": {}, "l2": {"l2": 0.1}, "gc_penalty": {"gc_penalty": 1e-4},
             "both": {"l2": 0.1, "gc_penalty": 1e-4}}  # fmt: skip
# each penalty's gradient is of the order of the cross-entropy's at initialisation, so
# removing it moves the weights after one step by ~1e-3 to 1e-1, far beyond the tolerance


def one_step_spec(penalty: str) -> RunSpec:
    return tiny(steps=1, eval_steps=[], gc_examples=20, feature_examples=40, test_examples=40,
                bn_recalibration_examples=32, **PENALTIES[penalty])  # fmt: skip


def one_sgd_step(spec: RunSpec) -> dict[str, torch.Tensor]:
    """The weights after step 0, by an independent autograd computation of SGD on
    ``CE + l2 ||theta||^2 + gc_penalty * mean_i ||v_i^T J_f(x_i)||^2`` (the run's own
    initialisation, batch of step 0 and Rademacher probes; train mode, fp32)."""
    data = load_run_data(spec, torch.device("cpu"))
    torch.manual_seed(spec.seed)
    model = build(spec.model, data.num_classes, 1, spec.width).train()
    index = batch_indices(len(data.train_targets), spec.batch_size, spec.seed, 0)
    mean, std = (t.view(1, -1, 1, 1) for t in (data.mean, data.std))
    x = ((data.train_images[index].float() / 255 - mean) / std).requires_grad_(True)
    embedding = model.embed(x)
    loss = F.cross_entropy(model.head(embedding), data.train_targets[index])
    loss = loss + spec.l2 * sum(p.square().sum() for p in model.parameters())
    probes = torch.Generator().manual_seed(derived_seed(spec.seed, 0, 2))
    v = torch.randint(0, 2, embedding.shape, generator=probes).float() * 2 - 1
    (vjp,) = torch.autograd.grad((embedding * v).sum(), x, create_graph=True)
    loss = loss + spec.gc_penalty * vjp.square().sum(dim=(1, 2, 3)).mean()
    names, params = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(loss, params)
    return {n: (p - spec.lr * g).detach() for n, p, g in zip(names, params, grads, strict=True)}


@pytest.fixture(scope="module")
def one_step_runs(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """The weights after one training step of a run with each penalty setting."""
    weights = {}
    for name in PENALTIES:
        out = tmp_path_factory.mktemp(name)
        assert run(one_step_spec(name), out, progress=False) == "complete"
        saved = torch.load(out / "model.pt", weights_only=True)["state_dict"]
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        weights[name] = {k: v for k, v in saved.items() if not k.endswith(buffers)}
    return weights


@pytest.mark.parametrize("penalty", PENALTIES)
def test_one_training_step_is_sgd_on_the_penalised_loss(one_step_runs, penalty):
    expected = one_sgd_step(one_step_spec(penalty))
    assert expected.keys() == one_step_runs[penalty].keys()
    for name, value in one_step_runs[penalty].items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("penalty", ["l2", "gc_penalty", "both"])
def test_penalised_runs_differ_from_the_plain_run(one_step_runs, penalty):
    plain, penalised = one_step_runs["plain"], one_step_runs[penalty]
    change = max((penalised[k] - plain[k]).abs().max().item() for k in plain)
    assert change > 1e-3


def test_a_torchvision_network_trains_with_the_gc_penalty_and_is_measured(tmp_path):
    """torchvision's ResNet-18 (its own stem, 1-channel digits repeated to RGB) in a run:
    one step is SGD on the GC-penalised loss (double backward through the torchvision
    network, the independent computation above), and the trace measures GC and collapse."""
    spec = one_step_spec("gc_penalty")
    spec = RunSpec.from_dict({**spec.to_dict(), "model": "torchvision:resnet18", "width": 1})
    assert run(spec, tmp_path / "tv", progress=False) == "complete"
    saved = torch.load(tmp_path / "tv" / "model.pt", weights_only=True)["state_dict"]
    expected = one_sgd_step(spec)
    assert {"head.weight", "body.conv1.weight"} <= expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6, msg=name)
    trace = traces.read(tmp_path / "tv" / "trace.h5")
    assert trace.step.values.tolist() == [0, 1]
    for name in ("gc", "geometric_collapse", "nc1_train", "test_accuracy"):
        assert np.isfinite(trace[name].values).all() and (trace[name].values >= 0).all(), name
    assert (trace.gc.values > 0).all()


def forward_dtypes(monkeypatch) -> list[tuple[str, torch.dtype]]:
    """Record, for every conv and linear layer call of the next run's model, the phase
    (a training step: train mode with gradients; BatchNorm recalibration: train mode
    without; measurement: eval mode) and the dtype of the layer's output."""
    import gcstudy.training.trainer

    seen = []

    def record(module, args, output):
        if not module.training:
            phase = "measure"
        else:
            phase = "train" if torch.is_grad_enabled() else "recalibrate"
        seen.append((phase, output.dtype))

    def build_with_hooks(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.register_forward_hook(record)
        return model

    monkeypatch.setattr(gcstudy.training.trainer, "build", build_with_hooks)
    return seen


def test_bf16_run_trains_in_bf16_and_measures_in_float32(tmp_path, monkeypatch):
    """bf16 autocast (the CUDA default; also runs on the CPU) acts on the training
    forward, with the GC penalty's double backward; every measurement runs in float32, so
    at step 0 (before any update) the bf16 run measures exactly what an fp32 run does."""
    spec = dict(steps=2, eval_steps=[], gc_penalty=1e-4)
    seen = forward_dtypes(monkeypatch)
    assert run(tiny(precision="bf16", **spec), tmp_path / "bf16", progress=False) == "complete"
    dtypes = {phase: {d for p, d in seen if p == phase} for phase, _ in seen}
    expected = {"train": torch.bfloat16, "recalibrate": torch.float32, "measure": torch.float32}
    assert dtypes == {phase: {dtype} for phase, dtype in expected.items()}
    seen.clear()
    run(tiny(precision="fp32", **spec), tmp_path / "fp32", progress=False)
    assert {d for p, d in seen if p == "train"} == {torch.float32}
    bf16, fp32 = (traces.read(tmp_path / d / "trace.h5") for d in ("bf16", "fp32"))
    for name in set(bf16.data_vars) - {"wall_time"}:
        np.testing.assert_array_equal(bf16[name][0], fp32[name][0], err_msg=name)
    assert not np.array_equal(bf16.train_loss[-1], fp32.train_loss[-1])  # training differed


def test_phase_seconds_split_the_run_into_its_four_phases(tmp_path, monkeypatch):
    """Each phase gets exactly the time spent in it: a virtual clock that stands still
    except inside the real functions of each phase, which advance it by a known amount
    per call (data loading: start-up; a step: training; a measurement: evaluation; a
    checkpoint and the final weights: checkpointing)."""
    import gcstudy.training.trainer

    now = [0.0]

    def advancing(function, seconds):
        def wrapped(*args, **kwargs):
            now[0] += seconds
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(
        gcstudy.training.trainer,
        "time",
        types.SimpleNamespace(perf_counter=lambda: now[0], process_time=time.process_time),
    )
    for name, seconds in (("load_run_data", 1e5), ("train_step", 1.0), ("measure", 10.0),
                          ("write_model", 1e4)):  # fmt: skip
        monkeypatch.setattr(
            gcstudy.training.trainer,
            name,
            advancing(getattr(gcstudy.training.trainer, name), seconds),
        )
    save = gcstudy.training.trainer.checkpoints.save
    monkeypatch.setattr(gcstudy.training.trainer.checkpoints, "save", advancing(save, 100.0))
    # 5 steps, evaluations at 0, 2 and 5, checkpoints after steps 2 and 4
    run(tiny(steps=5, eval_steps=[2], checkpoint_every=2), tmp_path / "run", progress=False)
    trace = traces.read(tmp_path / "run" / "trace.h5")
    assert trace.attrs["phase_seconds"] == {
        "start_up": 1e5,
        "training": 5 * 1.0,
        "evaluation": 3 * 10.0,
        "checkpointing": 2 * 100.0 + 1e4,
    }
    # the traced wall time (since the first step) is the time of the phases before it
    # (the checkpoint after step 2 comes before the evaluation at step 2)
    assert trace.wall_time.values.tolist() == [
        0.0,
        2 * 1.0 + 10.0 + 100.0,
        5 + 2 * 10.0 + 2 * 100.0,
    ]


def test_queued_cuda_work_is_waited_for_on_cuda_only(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", waited.append)
    finish_queued_work(torch.device("cpu"))
    assert waited == []
    finish_queued_work(torch.device("cuda", 0))
    assert waited == [torch.device("cuda", 0)]


def test_channels_last_is_the_cuda_layout_unless_switched_off():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert memory_format(cuda, channels_last=True) == torch.channels_last
    assert memory_format(cuda, channels_last=False) == torch.contiguous_format
    assert memory_format(cpu, channels_last=True) == torch.contiguous_format
    assert RunSpec().channels_last


def test_extra_evaluations_do_not_change_the_training_trajectory(tmp_path):
    """The clock steps a config adds (eval_clock_steps) only add measurements: a transfer
    run (every measurement, few-shot episodes included) evaluated at steps 2, 3 and 5 as
    well ends with bitwise the same weights and final measurements as without them."""
    plain = tiny(dataset="digits_fs", steps=8, eval_steps=[0])
    clocked = tiny(dataset="digits_fs", steps=8, eval_steps=[0], eval_clock_steps=[2, 3, 5])
    run(plain, tmp_path / "plain", progress=False)
    run(clocked, tmp_path / "clocked", progress=False)
    first, second = (traces.read(tmp_path / d / "trace.h5") for d in ("plain", "clocked"))
    assert first.step.values.tolist() == [0, 8]
    assert second.step.values.tolist() == [0, 2, 3, 5, 8]
    for name in first.data_vars:
        if name != "wall_time":
            np.testing.assert_array_equal(
                first[name].sel(step=8).values, second[name].sel(step=8).values, err_msg=name
            )
    weights = [
        torch.load(tmp_path / d / "model.pt", weights_only=True)["state_dict"]
        for d in ("plain", "clocked")
    ]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_divergence_ends_the_run_with_its_trace_so_far(tmp_path):
    result = gcstudy("train", write_spec(tmp_path / "s.yaml", lr=1e20), "--out", tmp_path / "d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "diverged"
    trace = traces.read(tmp_path / "d" / "trace.h5")
    assert trace.attrs["status"] == "diverged"
    assert trace.step.values[0] == 0 and trace.step.values[-1] < 12
    assert "non-finite" in result.stderr


def test_finished_run_is_not_redone_or_overwritten(tmp_path):
    out = tmp_path / "run"
    run(tiny(steps=3, eval_steps=[]), out, progress=False)
    before = (out / "trace.h5").stat().st_mtime_ns
    assert run(tiny(steps=3, eval_steps=[]), out, progress=False) == "complete"
    assert (out / "trace.h5").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="finished trace"):
        traces.write(out / "trace.h5", np.array([0]), np.array([0]), {}, {}, "complete")


def test_a_finished_run_without_its_weights_is_trained_again(tmp_path, caplog):
    """A trace without its model.pt is no finished run: the trace goes, the run is trained
    again, to the same results, and both files are sealed."""
    out = tmp_path / "run"
    spec = tiny(steps=3, eval_steps=[])
    run(spec, out, progress=False)
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("trace.h5", "model.pt"):
        (reference / name).write_bytes((out / name).read_bytes())
    (out / "model.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="gcstudy.training.trainer"):
        assert run(spec, out, progress=False) == "complete"
    assert "is broken (model.pt: missing): training the run again" in caplog.text
    same_results(out, reference)
    assert all(runfiles.verify(path) is None for path in RunFolder(out).trained)


# `gcstudy train` in a child that sends itself a signal at a fixed point of the run, so
# that no test races a running trainer: after the update of training step AT ("step"), or
# once the temporary file of the checkpoint of step AT is written and synced, before it is
# renamed into place ("checkpoint").
STOP_AT = """
import os, signal, sys
import gcstudy.training.trainer
from gcstudy import cli

point, at, signum = sys.argv[1], int(sys.argv[2]), signal.Signals[sys.argv[3]]
if point == "step":
    train_step = gcstudy.training.trainer.train_step

    def stopping_step(model, optimizer, data, spec, step, forward):
        loss = train_step(model, optimizer, data, spec, step, forward)
        if step == at:
            os.kill(os.getpid(), signum)
        return loss

    gcstudy.training.trainer.train_step = stopping_step
else:
    replace = os.replace

    def stopping_replace(source, destination):
        if os.path.basename(destination) == f"step-{at:08d}.pt":
            os.kill(os.getpid(), signum)
        replace(source, destination)

    os.replace = stopping_replace
sys.exit(cli.main(sys.argv[4:]))
"""


def train_until(spec: Path, out: Path, point: str, at: int, signum: signal.Signals,
                threads: int | None = None):  # fmt: skip
    """Run ``gcstudy train spec --out out`` in a child that signals itself at ``point`` (with
    ``threads`` torch threads; default: as this process, so that it can resume here)."""
    return subprocess.run(
        [sys.executable, "-c", STOP_AT, point, str(at), signum.name, "-q", "train", str(spec),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("point", "at", "left"),
    [
        ("step", 6, ["step-00000004.pt", "step-00000006.pt"]),  # mid-way to the next one
        ("checkpoint", 8, ["step-00000004.pt", "step-00000006.pt", "step-00000008.pt.tmp"]),
    ],
)
def test_killed_run_resumes_to_the_same_trace_and_weights(tmp_path, caplog, point, at, left):
    """SIGKILL after a checkpoint (during a later step, or while the next checkpoint is
    being written), then rerun: bitwise identical results to an uninterrupted run; a
    truncated newest checkpoint is skipped for the previous one."""
    # with momentum, so that the optimizer has state to resume
    changes = dict(steps=16, eval_steps=[0, 2, 9], checkpoint_every=2, momentum=0.9)
    victim = tmp_path / "victim"
    killed = train_until(write_spec(tmp_path / "s.yaml", **changes), victim, point, at,
                         signal.SIGKILL)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (victim / "trace.h5").exists()
    assert sorted(p.name for p in (victim / "ckpt").iterdir()) == left
    newest = victim / "ckpt" / "step-00000006.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncate it
    caplog.set_level(logging.INFO, logger="gcstudy")
    assert run(tiny(**changes), victim, progress=False) == "complete"
    assert "step-00000006.pt is unreadable" in caplog.text
    assert "step-00000004.pt (step 4)" in caplog.text  # resumed from the one before
    run(tiny(**changes), tmp_path / "reference", progress=False)
    same_results(tmp_path / "reference", victim)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGINT])
def test_stop_signal_checkpoints_then_resumes_to_the_same_results(tmp_path, signum):
    """A stop signal during step 5 (SLURM's warning SIGUSR1; SIGINT, what Ctrl-C sends)
    ends the run after that step with a checkpoint (none is due: checkpoint_every is 100),
    one line that says so, no traceback, and the exit status 128 + signal."""
    changes = dict(steps=16, eval_steps=[0, 9], checkpoint_every=100, momentum=0.9)
    out = tmp_path / "stopped"
    stopped = train_until(write_spec(tmp_path / "s.yaml", **changes), out, "step", 5, signum)
    assert stopped.returncode == 128 + signum, stopped.stderr
    assert f"stopped by signal {signum.name} at step 6; a checkpoint was written" in (
        stopped.stderr
    )
    assert "Traceback" not in stopped.stderr
    assert [p.name for p in (out / "ckpt").iterdir()] == ["step-00000006.pt"]
    assert not (out / "trace.h5").exists()
    assert run(tiny(**changes), out, progress=False) == "complete"
    run(tiny(**changes), tmp_path / "reference", progress=False)
    same_results(tmp_path / "reference", out)


def test_ctrl_c_before_training_exits_cleanly_with_nothing_half_written(tmp_path):
    """SIGINT while the data load (before the training loop and its handler): one line, no
    traceback, exit status 130, no trace; the same command then trains the run."""
    stop_in_load = (
        "import os, signal, sys\n"
        "import gcstudy.training.trainer\n"
        "from gcstudy import cli\n"
        "def load(*args):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "gcstudy.training.trainer.load_run_data = load\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    spec = write_spec(tmp_path / "s.yaml", steps=3, eval_steps=[])
    out = tmp_path / "run"
    stopped = subprocess.run(
        [sys.executable, "-c", stop_in_load, "-q", "train", str(spec), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr
    assert "interrupted (Ctrl-C)" in stopped.stderr and "Traceback" not in stopped.stderr
    assert not (out / "trace.h5").exists()
    assert gcstudy("train", spec, "--out", out).returncode == 0
    assert traces.status(out / "trace.h5") == "complete"


def test_trace_records_the_threads_and_device_of_every_training_segment(tmp_path):
    """Stopped at step 4 under 1 torch thread, resumed under 2: the trace lists both
    segments, each with its first step, thread count and device."""
    spec = write_spec(tmp_path / "s.yaml", steps=8, eval_steps=[0], checkpoint_every=100)
    out = tmp_path / "run"
    stopped = train_until(spec, out, "step", 3, signal.SIGUSR1, threads=1)
    assert stopped.returncode == 128 + signal.SIGUSR1, stopped.stderr
    resumed = gcstudy("train", spec, "--out", out, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert resumed.returncode == 0, resumed.stderr
    segments = traces.read(out / "trace.h5").attrs["segments"]
    assert [(s["first_step"], s["threads"], s["device"]) for s in segments] == [
        (0, 1, "cpu"),
        (4, 2, "cpu"),
    ]


def test_checkpoint_of_another_spec_is_refused(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", steps=16, eval_steps=[], checkpoint_every=2)
    out = tmp_path / "run"
    assert train_until(spec, out, "step", 3, signal.SIGKILL).returncode == -signal.SIGKILL
    assert list((out / "ckpt").glob("step-*.pt"))
    other = write_spec(tmp_path / "t.yaml", steps=16, eval_steps=[], checkpoint_every=2, lr=0.01)
    result = gcstudy("train", other, "--out", out)
    assert result.returncode == 2
    assert "belong to a different run spec (keys lr differ)" in result.stderr


def test_metric_sample_smaller_than_two_per_class_is_refused(tmp_path):
    result = gcstudy(
        "train", write_spec(tmp_path / "s.yaml", gc_examples=12), "--out", tmp_path / "run"
    )
    assert result.returncode == 2
    assert "key 'gc_examples' = 12 is too small for the 10 classes of 'digits'" in result.stderr
    assert not (tmp_path / "run" / "trace.h5").exists()


def test_unwritable_output_fails_loudly_and_leaves_no_trace(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = gcstudy("train", write_spec(tmp_path / "s.yaml"), "--out", blocker / "run")
    assert result.returncode != 0
    assert "file" in result.stderr
    assert not list(tmp_path.rglob("trace.h5"))


def test_failed_trace_write_leaves_no_file(tmp_path, monkeypatch):
    values = {
        n: np.zeros((1, 1) if v.dims == ("step", "class") else 1)
        for n, v in traces.VARIABLES.items()
        if not v.transfer_only
    }

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space left"):
        traces.write(tmp_path / "trace.h5", np.array([0]), np.array([0]), values, {}, "complete")
    assert list(tmp_path.iterdir()) == []


def test_reader_names_bad_trace_files(tmp_path):
    with pytest.raises(traces.TraceError, match="does not exist"):
        traces.read(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(traces.TraceError, match=r"junk\.h5 is corrupt or truncated"):
        traces.read(tmp_path / "junk.h5")
    values = {
        n: np.zeros((1, 1) if v.dims == ("step", "class") else 1)
        for n, v in traces.VARIABLES.items()
        if not v.transfer_only
    }
    traces.write(tmp_path / "r.h5", np.array([0]), np.array([0]), values, {}, "running")
    with pytest.raises(traces.TraceError, match="status 'running'"):
        traces.read(tmp_path / "r.h5")
    assert traces.read(tmp_path / "r.h5", allow_running=True).attrs["status"] == "running"
