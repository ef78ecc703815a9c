"""``gcstudy measure``: trained networks measured through the real command, against oracles.

A tiny digits-FS run (source digits 0-4, target 5-9) is trained once. The command measures
it in its three forms (the run folder, its model.pt, ``vgg11=STATE_DICT.pt``) in a
subprocess; the numbers are checked against

* the run's own trace at its last step (measured with the run's sample sizes, the command
  must reproduce the trace, which tests/test_traced_values.py checks against formulas),
* the exact GC and geometric collapse recomputed here with plain autograd and numpy,
* a network whose embedding is exactly twice the run's (GC x 4, NC unchanged) for the
  ranking, and the Student-t interval against scipy and ``statistics``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats
from tiny_study import TINY_DEFAULTS

from gcstudy.cli import main
from gcstudy.data.run_data import load_run_data
from gcstudy.metrics.fewshot import fewshot_eval
from gcstudy.models import build
from gcstudy.study import networks, seals, traces
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import run

RUN = {**TINY_DEFAULTS, "dataset": "digits_fs", "batch_size": 32, "fewshot_episodes": 100}
# The run's sample sizes and episodes as options: the command then measures what the trace did.
AS_TRACED = [
    "--gc-examples", RUN["gc_examples"], "--feature-examples", RUN["feature_examples"],
    "--test-examples", RUN["test_examples"], "--fewshot-episodes", RUN["fewshot_episodes"],
    "--bn-recalibration-examples", RUN["bn_recalibration_examples"],
]  # fmt: skip
# Computed in float64 by a Krylov iteration whose BLAS sums depend on the thread count: the
# trainer's process and the command's may round the last bits differently.
KRYLOV = ("poincare_constant", "bound_gc")
HEAD = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")  # not measured
TRANSFER = ("target_nc", "fewshot_1shot_accuracy", "fewshot_5shot_accuracy")


def gcstudy(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def measured(*args) -> tuple[xr.Dataset, str]:
    """The file and the printed table of a successful ``gcstudy measure`` (``--out`` last)."""
    done = gcstudy("measure", *args)
    assert done.returncode == 0, done.stderr
    with xr.open_dataset(args[-1], engine="h5netcdf") as file:
        return file.load(), done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """The run folder and three networks made from its weights:

    * ``foreign``: a bare state dict with a 7-way head (as if pre-trained on other classes)
      and BatchNorm running statistics reset to (0, 1), which only recalibration undoes;
    * ``doubled``: a model.pt whose embedding is exactly twice the run's (the last
      BatchNorm's scale and shift doubled; the ReLU and max-pool after it are positively
      homogeneous);
    * ``renormalised``: a model.pt that records another input normalisation."""
    root = tmp_path_factory.mktemp("measure")
    folder = root / "run"
    assert run(RunSpec.from_dict(RUN), folder, progress=False) == "complete"
    saved = torch.load(folder / "model.pt", weights_only=True)
    foreign = build("vgg11", 7, 1, RUN["width"]).state_dict()
    foreign.update({k: v for k, v in saved["state_dict"].items() if not k.startswith("head.")})
    for key in foreign:
        if key.endswith(("running_mean", "running_var")):
            foreign[key] = torch.full_like(foreign[key], float(key.endswith("var")))
    torch.save(foreign, root / "foreign.pt")
    doubled = copy.deepcopy(saved)
    last_norm = [k for k in doubled["state_dict"] if k.endswith(".running_var")][-1]
    for key in ("weight", "bias"):
        doubled["state_dict"][last_norm.replace("running_var", key)] *= 2
    torch.save(doubled, root / "doubled.pt")
    torch.save({**saved, "normalisation": {"mean": [0.5], "std": [0.25]}}, root / "renorm.pt")
    return {"run": folder, "foreign": root / "foreign.pt", "doubled": root / "doubled.pt",
            "renormalised": root / "renorm.pt"}  # fmt: skip


@pytest.fixture(scope="module")
def as_traced(trained, tmp_path_factory) -> tuple[xr.Dataset, str]:
    """The doubled network, the run folder and its model.pt, with the run's settings."""
    out = tmp_path_factory.mktemp("out") / "measured.nc"
    run_dir = trained["run"]
    return measured(trained["doubled"], run_dir, run_dir / "model.pt", "--dataset",
                    "digits_fs", *AS_TRACED, "--out", out)  # fmt: skip


@pytest.fixture(scope="module")
def foreign(trained, tmp_path_factory) -> xr.Dataset:
    """The foreign state dict measured with the run's settings and the exact GC."""
    out = tmp_path_factory.mktemp("out") / "foreign.nc"
    file, _ = measured(f"vgg11={trained['foreign']}", "--width", RUN["width"], "--dataset",
                       "digits_fs", *AS_TRACED, "--gc-method", "exact", "--out", out)  # fmt: skip
    return file


def test_a_run_measured_with_its_settings_reproduces_its_trace(trained, as_traced):
    file, _ = as_traced
    last = traces.read(trained["run"] / "trace.h5").isel(step=-1)
    compared = [n for n in file.data_vars if n in last and not n.endswith("_ci95")]
    not_measured = {"examples_seen", "wall_time", *HEAD}
    assert set(compared) == {
        n for n in traces.VARIABLES if n not in not_measured and not n.endswith("_ci95")
    }
    for name in compared:
        check = np.testing.assert_allclose if name in KRYLOV else np.testing.assert_array_equal
        options = {"rtol": 1e-12} if name in KRYLOV else {}
        for network in (trained["run"], trained["run"] / "model.pt"):
            check(file[name].sel(network=str(network)).values, last[name].values,
                  err_msg=name, **options)  # fmt: skip
    assert file.poincare_constant.values[1] == pytest.approx(
        last.attrs["facts"]["poincare_constant"], rel=1e-12
    )
    assert not set(HEAD) & set(file)


def test_the_interval_is_student_t(trained, as_traced):
    """The trace's interval is 1.96 sd / sqrt(n); the command's t_{0.975, n-1} sd / sqrt(n)."""
    file, _ = as_traced
    last = traces.read(trained["run"] / "trace.h5").isel(step=-1)
    n = RUN["fewshot_episodes"]
    for shots in (1, 5):
        name = f"fewshot_{shots}shot_ci95"
        sd = last[name].item() * math.sqrt(n) / 1.96
        expected = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        assert file[name].sel(network=str(trained["run"])).item() == pytest.approx(
            expected, rel=1e-12
        )


def test_student_t_interval_against_statistics():
    features = torch.randn(200, 6, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(200) % 8
    result = fewshot_eval(features, labels, shots=1, episodes=600, seed=3)
    accuracies = result.per_episode.tolist()
    expected = stats.t.ppf(0.975, 599) * statistics.stdev(accuracies) / math.sqrt(600)
    assert result.ci95_t == pytest.approx(expected, rel=1e-12)
    normal = statistics.NormalDist().inv_cdf(0.975)
    assert result.ci95_t / result.ci95 == pytest.approx(stats.t.ppf(0.975, 599) / 1.96)
    assert stats.t.ppf(0.975, 599) / normal > 1.001  # t is wider than the normal interval


def test_a_run_folder_and_its_model_file_agree(trained, as_traced):
    file, _ = as_traced
    folder, model = (
        file.sel(network=str(n)) for n in (trained["run"], trained["run"] / "model.pt")
    )
    assert folder.source.item() == model.source.item() == str(trained["run"] / "model.pt")
    for name in file.data_vars:
        np.testing.assert_array_equal(folder[name], model[name], err_msg=name)


def test_a_foreign_state_dict_is_measured_like_the_run(trained, as_traced, foreign):
    """Another head size and stale BatchNorm statistics: the embedding is the run's, BN is
    recalibrated as the trace does, and the input normalisation is the data set's (here
    the run's own, computed again: same training pixels), so every quantity but GC (other
    estimator, step 0) equals the run's."""
    file, _ = as_traced
    folder = file.sel(network=str(trained["run"]))
    assert foreign.normalised_as.values.tolist() == ["data set"]
    assert foreign.step.values.tolist() == [0] and foreign.model.values.tolist() == ["vgg11"]
    pixels = load_run_data(RunSpec.from_dict(RUN), torch.device("cpu")).train_images.numpy()
    assert foreign.normalisation_mean.item() == pytest.approx(pixels.mean() / 255, rel=1e-6)
    assert foreign.normalisation_std.item() == pytest.approx((pixels / 255).std(ddof=1), rel=1e-6)
    probed = ("gc", "gc_stderr", "gc_per_class", "gc_test", "gc_test_stderr", "bound_gc",
              "geometric_collapse", "geometric_collapse_test")  # fmt: skip
    for name in set(foreign.data_vars) - set(probed):
        np.testing.assert_allclose(foreign[name][0], folder[name], rtol=1e-12, err_msg=name)


def test_exact_gc_and_geometric_collapse_against_autograd(trained, foreign):
    """The foreign network's exact GC against Jacobians from autograd on the run's weights
    (whose saved BatchNorm statistics are the recalibrated ones), with numpy formulas."""
    data = load_run_data(RunSpec.from_dict(RUN), torch.device("cpu"))
    model = build("vgg11", 5, 1, RUN["width"])
    model.load_state_dict(torch.load(trained["run"] / "model.pt", weights_only=True)["state_dict"])
    model.eval()
    x = data.normalise(data.train_images[data.gc_sample])
    per_example = np.array([
        torch.autograd.functional.jacobian(lambda v: model.embed(v[None])[0], xi)
        .double().square().sum().item()
        for xi in x
    ])  # fmt: skip
    assert foreign.gc.item() == pytest.approx(per_example.mean(), rel=1e-5)
    assert foreign.gc_stderr.item() == pytest.approx(
        per_example.std(ddof=1) / math.sqrt(len(x)), rel=1e-4
    )
    labels = data.train_targets[data.gc_sample].numpy()
    per_class = np.array([per_example[labels == c].mean() for c in range(5)])
    np.testing.assert_allclose(foreign.gc_per_class[0], per_class, rtol=1e-5)
    with torch.no_grad():
        features = model.embed(data.normalise(data.train_images[data.feature_sample])).double()
    means = class_means(features.numpy(), data.train_targets[data.feature_sample].numpy())
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    collapse = np.mean([(per_class[i] + per_class[j]) / (2 * np.sum((means[i] - means[j]) ** 2))
                        for i, j in pairs])  # fmt: skip
    assert foreign.geometric_collapse.item() == pytest.approx(collapse, rel=1e-5)


def class_means(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([features[labels == c].mean(axis=0) for c in np.unique(labels)])


def test_a_recorded_normalisation_is_used(trained, tmp_path):
    """A model.pt's own normalisation feeds the network; with recalibration off, NC equals
    the CDNV of features computed here with that normalisation and the saved statistics."""
    file, _ = measured(trained["renormalised"], "--dataset", "digits_fs", *AS_TRACED,
                       "--bn-recalibration-examples", 0, "--out", tmp_path / "r.nc")  # fmt: skip
    assert file.normalised_as.values.tolist() == ["trained"]
    assert (file.normalisation_mean.item(), file.normalisation_std.item()) == (0.5, 0.25)
    data = load_run_data(RunSpec.from_dict(RUN), torch.device("cpu"))
    model = build("vgg11", 5, 1, RUN["width"])
    model.load_state_dict(torch.load(trained["renormalised"], weights_only=True)["state_dict"])
    model.eval()
    images = data.train_images[data.feature_sample].double() / 255
    with torch.no_grad():
        features = model.embed(((images - 0.5) / 0.25).float()).double().numpy()
    labels = data.train_targets[data.feature_sample].numpy()
    means = class_means(features, labels)
    spread = np.array([np.square(features[labels == c] - means[c]).sum(axis=1).mean()
                       for c in range(5)])  # fmt: skip
    cdnv = np.mean([(spread[i] + spread[j]) / (2 * np.sum((means[i] - means[j]) ** 2))
                    for i in range(5) for j in range(i + 1, 5)])  # fmt: skip
    assert file.nc_train.item() == pytest.approx(cdnv, rel=1e-5)


def test_networks_are_ranked_by_gc_lowest_first(trained, as_traced, tmp_path):
    """The doubled network: GC x 4 with the same probes (its model.pt keeps the run's
    step), NC unchanged; given first or last, it is ranked last."""
    run_dir, doubled = trained["run"], trained["doubled"]
    again = measured(run_dir, doubled, "--dataset", "digits_fs", *AS_TRACED,
                     "--out", tmp_path / "again.nc")  # fmt: skip
    for file, printed in (as_traced, again):
        assert file.network.values.tolist()[-1] == str(doubled)
        assert file["rank"].values.tolist() == list(range(1, file.sizes["network"] + 1))
        assert np.all(np.diff(file.gc.values) >= 0)
        first, last = file.isel(network=0), file.isel(network=-1)
        assert last.gc.item() == pytest.approx(4 * first.gc.item(), rel=1e-6)
        assert last.nc_train.item() == pytest.approx(first.nc_train.item(), rel=1e-6)
        count = file.sizes["network"]
        rows = [line.split()[:2] for line in printed.splitlines()[1 : count + 1]]
        assert rows[0] == ["1", str(run_dir)] and rows[-1] == [str(count), str(doubled)]


def test_the_file_records_its_provenance(trained, as_traced):
    file, printed = as_traced
    folder = file.sel(network=str(trained["run"]))
    weights = trained["run"] / "model.pt"
    assert folder.sha256.item() == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (
        file.sel(network=str(trained["doubled"])).sha256.item()
        == hashlib.sha256(trained["doubled"].read_bytes()).hexdigest()
    )
    assert (folder.model.item(), folder.width.item()) == ("vgg11", RUN["width"])
    assert folder.step.item() == RUN["steps"] and folder.normalised_as.item() == "trained"
    settings = json.loads(file.attrs["settings"])
    assert settings["fewshot_episodes"] == RUN["fewshot_episodes"]
    assert settings["dataset"] == "digits_fs" and settings["seed"] == 0
    assert json.loads(file.attrs["versions"])["torch"] == torch.__version__
    assert file.attrs["host"] == platform.node() and file.attrs["git_commit"]
    assert file.attrs["command"].startswith("gcstudy -q measure ")
    assert file.attrs["command"].endswith(" --out " + str(file.encoding["source"]))
    assert file.attrs["target_metrics"].startswith("measured on the 5 target classes")
    assert file.gc.attrs["units"] == "1" and "Student-t" in file.fewshot_5shot_ci95.long_name
    assert "ranked by gc (lowest first)" in printed


def test_a_set_without_target_classes_skips_the_target_metrics(trained, tmp_path):
    """digits (all 10 classes are source classes): a note, no target variables; the
    defaults of the settings are recorded (600 episodes, the RFS convention)."""
    out = tmp_path / "digits.nc"
    done = gcstudy("measure", f"vgg11={trained['foreign']}", "--width", RUN["width"],
                   "--dataset", "digits", "--gc-examples", 20, "--feature-examples", 60,
                   "--test-examples", 60, "--out", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped: data set 'digits' has no target classes" in done.stdout
    assert "skipped" in done.stderr
    with xr.open_dataset(out, engine="h5netcdf") as file:
        assert file.attrs["target_metrics"].startswith("skipped")
        assert not set(TRANSFER) & set(file.data_vars) and file.sizes["class"] == 10
        assert json.loads(file.attrs["settings"])["fewshot_episodes"] == 600
    assert seals.problem(out) is None  # written atomically and sealed


@pytest.mark.parametrize(
    ("network", "options", "message"),
    [
        ("missing/run", [], "missing/run: no such file or folder"),
        ("vgg11=missing.pt", [], "no such state-dict file 'missing.pt'"),
        ("{state_dict}", [], "not a gcstudy model.pt"),
        ("vgg11={state_dict}", ["--width", "0.125"], "does not fit vgg11 at width 0.125"),
        ("resnet18={state_dict}", ["--width", "0.0625"], "does not fit resnet18"),
        ("vgg11={model}", [], "a gcstudy model.pt; give it without 'vgg11='"),
        ("{run}", ["--gc-examples", "-1"], "key 'gc_examples' = -1: must be >= 0"),
        ("{run}", ["--dataset", "nope"], "key 'dataset' = 'nope'"),
        ("{run}", ["--fewshot-queries", "200"], "lower --fewshot-ways or --fewshot-queries"),
        ("{run}", ["--fewshot-ways", "6"], "6-way episodes with 5 shots"),
    ],
)
def test_bad_input_is_refused_before_measuring(trained, tmp_path, caplog, network, options,
                                               message):  # fmt: skip
    """In-process (the same command, faster): exit status 2, one line naming the problem,
    no file."""
    paths = {"state_dict": trained["foreign"], "run": trained["run"],
             "model": trained["run"] / "model.pt"}  # fmt: skip
    out = tmp_path / "bad.nc"
    argv = ["measure", network.format(**paths), "--dataset", "digits_fs", *options,
            "--out", str(out)]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="gcstudy"):
        assert main(argv) == 2
    assert message in caplog.text
    assert not out.exists()


def test_a_network_named_twice_is_refused(trained, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="gcstudy"):
        status = main(["measure", str(trained["run"]), str(trained["run"]), "--dataset",
                       "digits_fs", "--out", str(tmp_path / "twice.nc")])  # fmt: skip
    assert status == 2 and "named more than once" in caplog.text


@pytest.mark.skipif(
    not hasattr(networks, "check_model_name"),
    reason="torchvision:<arch> networks arrive with the models22 branch",
)
def test_a_torchvision_state_dict_in_either_layout(tmp_path):
    """The same weights as torchvision's own state dict (1000-way ``fc``) and as gcstudy's
    wrapper's measure the same, bit for bit; a state dict missing a stage is refused."""
    import torchvision

    torch.manual_seed(0)
    own = torchvision.models.get_model("resnet18", weights=None, num_classes=1000).state_dict()
    torch.save(own, tmp_path / "own.pt")
    wrapped = build("torchvision:resnet18", 1000, 1)
    wrapped.load_torchvision_state_dict(own)
    torch.save(wrapped.state_dict(), tmp_path / "wrapped.pt")
    small = ["--gc-examples", 10, "--feature-examples", 20, "--test-examples", 20,
             "--bn-recalibration-examples", 16, "--fewshot-episodes", 20]  # fmt: skip
    file, _ = measured(*(f"torchvision:resnet18={tmp_path / n}.pt" for n in ("own", "wrapped")),
                       "--dataset", "digits_fs", *small, "--out", tmp_path / "tv.nc")  # fmt: skip
    assert file.model.values.tolist() == ["torchvision:resnet18"] * 2
    for name in file.data_vars:
        np.testing.assert_array_equal(*file[name].values, err_msg=name)
    torch.save({k: v for k, v in own.items() if not k.startswith("layer4.")}, tmp_path / "cut.pt")
    done = gcstudy("measure", f"torchvision:resnet18={tmp_path / 'cut.pt'}", "--dataset",
                   "digits_fs", "--out", tmp_path / "cut.nc")  # fmt: skip
    assert done.returncode == 2 and "does not fit torchvision:resnet18" in done.stderr
    assert "layer4.0.conv1.weight" in done.stderr
