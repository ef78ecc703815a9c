"""benchmarks/gpu_check.py --smoke end to end, as CI runs it (no GPU): the record's structure
and the consistency of its numbers, with the packages the GPU machine lacks made unimportable
(for the check and for the `gcstudy train` it starts)."""

import functools
import importlib.util
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gcstudy import yamlio
from gcstudy.data.run_data import load_run_data
from gcstudy.models import build
from gcstudy.study.networks import MODELS
from gcstudy.study.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
# not installed on the GPU machine (the device notes list its packages)
MISSING_ON_GPU_MACHINE = (
    "snakemake", "snakemake_interface_common", "submitit", "h5netcdf", "mlxtend", "jsonschema",
)  # fmt: skip


def environment(folder: Path) -> dict:
    """A child environment in which every package of MISSING_ON_GPU_MACHINE fails to import."""
    blocked = folder / "blocked"
    for name in MISSING_ON_GPU_MACHINE:
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed on the GPU machine')\n"
        )
    path = os.pathsep.join([str(blocked), str(REPO / "src")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def smoke_check(folder: Path, *options: str) -> tuple[dict, str]:
    out = folder / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out),
         *options],
        env=environment(folder), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    return smoke_check(tmp_path_factory.mktemp("gpu_check"))


def measured(record: dict) -> list[dict]:
    return [entry for entry in record["training"] if "skipped" not in entry]


def test_the_blocked_packages_cannot_be_imported(tmp_path):
    env = environment(tmp_path)
    for name in MISSING_ON_GPU_MACHINE:
        result = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=env, capture_output=True, text=True
        )
        assert result.returncode != 0 and "not installed on the GPU machine" in result.stderr


def test_every_training_configuration_is_measured_or_skipped_with_its_reason(smoke):
    record, _ = smoke
    seen = [
        (e["model"], e["batch"], e["precision"], e["channels_last"], e["compile"])
        for e in record["training"]
    ]
    expected = itertools.product(MODELS, (8, 4), ("bf16", "fp32"), (True, False), (True, False))
    assert sorted(seen) == sorted(expected)
    for entry in record["training"]:
        if entry["compile"]:  # too slow to compile on a CPU: skipped, saying why
            assert "torch.compile" in entry["skipped"]
        else:
            assert "skipped" not in entry and entry["losses_finite"]


def test_throughput_and_mfu_follow_from_the_measured_numbers(smoke):
    record, _ = smoke
    peak = record["peak"]["measured_bf16_matmul_flops"]
    assert peak > 0 and record["peak"]["datasheet_bf16_flops"] is None  # no datasheet: a CPU
    for e in measured(record):
        assert e["images"] == e["batch"] * e["timed_steps"]
        assert e["images_per_s"] * e["seconds"] == pytest.approx(e["images"], rel=1e-12)
        assert e["flops_per_image"] == record["flops_per_image"][e["model"]]
        rate = e["flops_per_image"] * e["images_per_s"]
        assert e["model_flops_per_s"] == pytest.approx(rate, rel=1e-12)
        assert e["mfu_measured_peak"] == pytest.approx(rate / peak, rel=1e-12)
        assert e["mfu_datasheet"] is None


def forward_flops(model: torch.nn.Module) -> tuple[float, float]:
    """(matrix FLOPs of one forward pass per image, those of the first convolution), from
    the layer shapes: 2 * outputs * (inputs per output) for every convolution and linear."""
    counts = []

    def count(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            per_output = module.in_features
        counts.append(2 * output[0].numel() * per_output)

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            module.register_forward_hook(count)
    model(torch.zeros(1, 3, 32, 32))
    return sum(counts), counts[0]


@pytest.mark.parametrize("name", MODELS)
def test_flops_per_image_are_forward_and_backward_of_the_model(smoke, name):
    """A training step costs the forward F, the weight gradients F and the input gradients
    F less those of the first convolution (the images need no gradient)."""
    record, _ = smoke
    width = record["train_run"]["spec"]["width"]
    forward, first = forward_flops(build(name, 10, 3, width))
    assert record["flops_per_image"][name] == 3 * forward - first


def test_train_run_is_split_into_phases_within_its_process_time(smoke):
    record, _ = smoke
    run = record["train_run"]
    spec = run["spec"]
    assert run["status"] == "complete" and run["device"] == "cpu"
    assert spec["model"] == "vgg13" and spec["dataset"] == "cifar10"
    assert run["evaluations"] == len({0, spec["steps"], *spec["eval_steps"]})
    assert run["checkpoints"] == spec["steps"] // spec["checkpoint_every"]
    phases = run["phase_seconds"]
    assert set(phases) == {"start_up", "training", "evaluation", "checkpointing"}
    assert all(seconds > 0 for seconds in phases.values())
    assert run["outside_phases_seconds"] > 0
    assert sum(phases.values()) + run["outside_phases_seconds"] == pytest.approx(
        run["process_seconds"], rel=1e-12
    )


def test_minutes_per_1000_steps_follow_from_the_run_at_the_paper_cadence(smoke):
    """Recomputed from the paper config's own numbers: its E1 run evaluates at 0, every
    eval_every steps, eval_log_points log-spaced steps and the last step, and checkpoints
    every checkpoint_every steps plus the final weights."""
    record, page = smoke
    run, derived = record["train_run"], record["derived"]
    defaults = yamlio.load(REPO / "config" / "paper.yaml")["defaults"]
    steps, every, points = defaults["steps"], defaults["eval_every"], defaults["eval_log_points"]
    evaluations = {0, steps, *range(0, steps, every)}
    evaluations |= {round(math.exp(math.log(steps) * k / (points - 1))) for k in range(points)}
    # and where the design clocks read the E1 base run (lr 0.01, batch 256): equal steps at
    # the budget and 2/3 of it; equal lr x steps with the lr sweep's smallest lr; equal
    # examples with the batch sweep's smallest batch (gcstudy.study.clocks)
    sweeps = yamlio.load(REPO / "config" / "paper.yaml")["studies"]["E1_vgg13_cifar10"]["sweeps"]
    lr, batch = defaults["lr"], defaults["batch_size"]
    for fraction in (1.0, min(sweeps["lr"]) / lr, min(sweeps["batch_size"]) / batch):
        evaluations |= {round(fraction * steps), round(2 / 3 * fraction * steps)}
    phases = run["phase_seconds"]
    seconds = (
        1000 * phases["training"] / run["steps"]
        + 1000 * len(evaluations) / steps * phases["evaluation"] / run["evaluations"]
        + 1000 * (steps // defaults["checkpoint_every"] + 1) / steps
        * phases["checkpointing"] / (run["checkpoints"] + 1)
        + 1000 / steps * (phases["start_up"] + run["outside_phases_seconds"])
    )  # fmt: skip
    assert derived["minutes_per_1000_steps"] == pytest.approx(seconds / 60, rel=1e-12)
    per_step = phases["training"] / run["steps"]
    between = phases["evaluation"] / run["evaluations"] / (every * per_step)
    assert derived["evaluation_vs_training_between_regular_evaluations"] == pytest.approx(
        between, rel=1e-12
    )
    assert f"**{derived['minutes_per_1000_steps']:.3f} minutes per 1,000 steps**" in page


def test_evaluation_e5_and_estimator_sections_ran(smoke):
    record, page = smoke
    evaluation = record["evaluation"]
    assert set(evaluation["part_seconds"]) == {
        "batchnorm_recalibration", "train_features", "test_features", "gc_train", "gc_test",
        "nc_nc1_ncc",
    }  # fmt: skip
    assert all(s > 0 for s in [*evaluation["part_seconds"].values(),
                               *evaluation["seconds"].values()])  # fmt: skip
    e5 = record["e5"]
    assert e5["finite"] and e5["gradients_finite"] and e5["losses_finite"]
    assert e5["precision"] == "bf16" and e5["embedding_dtype"] == "torch.bfloat16"
    assert e5["gc_penalty"] > 0 and e5["batch_gc"] > 0 and e5["measured_gc"] > 0
    estimators = record["estimators"]
    per_estimate = [s["seconds_per_estimate"] for s in estimators["settings"]]
    assert estimators["derived_study_seconds"] == pytest.approx(
        estimators["exact_gc_seconds"] + estimators["repeats_of_the_settings"] * sum(per_estimate)
    )
    assert record["notes"] == [] and record["errors"] == [] and record["mode"] == "smoke"
    assert record["finished_at"] is not None
    for heading in ("## Training steps", "## One evaluation", "## gcstudy train", "## E5",
                    "## Estimator study"):  # fmt: skip
        assert heading in page


def test_the_time_guard_skips_what_does_not_fit_and_still_writes_the_record(tmp_path):
    record, page = smoke_check(tmp_path, "--budget-s", "0")
    assert all("skipped" in entry for entry in record["training"])
    assert not {"evaluation", "train_run", "e5", "estimators"} & set(record)
    assert len(record["notes"]) == 4 + sum(not e["compile"] for e in record["training"])
    assert all(note.startswith("skipped ") for note in record["notes"]) and "## Notes" in page


def test_a_check_stopped_from_outside_leaves_the_record_of_what_it_measured(tmp_path):
    """The record is rewritten (atomically) after each section: a check killed by its
    timeout still leaves readable files."""
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out",
               str(out)]  # fmt: skip
    check = subprocess.Popen(command, env=environment(tmp_path), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (out / "gpu_check.md").exists():
            assert check.poll() is None, check.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        check.terminate()  # what `timeout` sends
        check.wait(timeout=60)
    finally:
        check.kill()
        check.stderr.close()
    record = json.loads((out / "gpu_check.json").read_text())
    assert record["finished_at"] is None and len(record["training"]) >= 1
    assert "(stopped or running)" in (out / "gpu_check.md").read_text()


@functools.cache
def load_script():
    """benchmarks/gpu_check.py as the module ``gpu_check``."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_datasheet_rates_are_found_by_the_names_the_gpus_report():
    gpu_check = load_script()
    assert gpu_check.datasheet_rate("NVIDIA H100 80GB HBM3")[1] == 989e12  # H100 SXM
    assert gpu_check.datasheet_rate("NVIDIA H200")[1] == 989e12
    assert gpu_check.datasheet_rate("NVIDIA H100 PCIe") == (None, None)  # another chip
    assert gpu_check.datasheet_rate("cpu") == (None, None)


def test_compiled_steps_are_captured_by_dynamo_afresh_for_each_configuration(monkeypatch):
    """The compile branch on the CPU: torch.compile with a backend that records the graphs
    dynamo captures and runs them as they are (inductor's C++ build takes minutes on a
    CPU); each timed configuration compiles afresh."""
    gpu_check = load_script()
    graphs = []

    def recording_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    compile_for_real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda f: compile_for_real(f, backend=recording_backend))
    base = RunSpec.from_dict(dict(dataset="digits", width=0.0625, device="cpu"))
    data = load_run_data(base, torch.device("cpu"))
    spec = gpu_check.training_spec(base, "vgg11", 8, precision="fp32", compile=True)
    for configuration in (1, 2):
        timings, _, _ = gpu_check.time_training(spec, data, torch.device("cpu"), gpu_check.SMOKE)
        assert timings["losses_finite"] and timings["images"] == 8 * gpu_check.SMOKE.timed_steps
        assert len(graphs) == configuration  # one graph of the forward, captured again
    ops = {node.target for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert torch.conv2d in ops or torch.nn.functional.conv2d in ops
