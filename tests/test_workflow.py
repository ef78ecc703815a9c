"""The Snakemake workflow on a tiny config (trained, aggregated, reported, and Snakemake's own
report of it), lint, the software environment, the paper grid's dry run, the SLURM
profile's partitions, and config refusal."""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from gcstudy.study import config as study_config
from gcstudy.study import traces

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

RESULTS = "out"  # not the default "results": the report text must follow the config
TINY_CONFIG = {
    "results": RESULTS,
    "defaults": {
        "width": 0.0625, "steps": 6, "eval_steps": [0, 3], "gc_examples": 20,
        "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
        "fewshot_episodes": 20, "checkpoint_every": 3, "device": "cpu",
    },
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 16}, "sweeps": {"lr": [0.1]}, "seeds": [0],
        },
    },
}  # fmt: skip


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny config run once through `snakemake --cores 2` to the report."""
    workdir = tmp_path_factory.mktemp("tiny")
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    result = snakemake(workdir, "--configfile", "cfg.yaml", "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_tiny_study_trains_each_run_and_aggregates(tiny_study):
    ids = [r.run_id for r in study_config.validate(yaml.safe_load(yaml.safe_dump(TINY_CONFIG)))]
    assert ids == ["tiny/lr-0.05_bs-16_l2-0_gcp-0_seed-0", "tiny/lr-0.1_bs-16_l2-0_gcp-0_seed-0"]
    # eval_steps 0, 3 and the last step 6, plus where the design clocks read the lr sweep:
    # at steps 6 and 4 (2/3 of 6) for equal steps and examples; for equal lr x steps, the
    # common value 0.05 x 6 = 0.3, reached by lr 0.1 at step 3 (2/3 of it: step 2)
    planned = {ids[0]: [0, 3, 4, 6], ids[1]: [0, 2, 3, 4, 6]}
    for run_id in ids:
        trace = traces.read(tiny_study / RESULTS / "runs" / run_id / "trace.h5")
        assert trace.step.values.tolist() == planned[run_id]
        assert trace.attrs["spec"]["lr"] == float(run_id.split("_")[0].split("-")[1])
        assert (tiny_study / "logs" / "train" / f"{run_id}.log").exists()
        assert (tiny_study / RESULTS / "benchmarks" / "train" / f"{run_id}.tsv").exists()
    with xr.open_dataset(tiny_study / RESULTS / "study.nc", engine="h5netcdf") as study:
        assert study.sizes["run"] == 2
        first = traces.read(tiny_study / RESULTS / "runs" / ids[0] / "trace.h5")
        assert sorted(study.run.values.tolist()) == ids
        gc = study.gc.sel(run=ids[0]).dropna("step")
        np.testing.assert_array_equal(gc.step.values, first.step.values)
        np.testing.assert_array_equal(gc.values, first.gc.values)


def test_finished_study_has_nothing_left_to_do(tiny_study):
    result = snakemake(tiny_study, "--configfile", "cfg.yaml", "--cores", "1", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def report_items(html: str, paths: list[str]) -> dict[str, dict]:
    """The result entries Snakemake's report embeds (JSON) for these output paths."""
    items = {}
    for path in paths:
        key = json.dumps(path) + ": "
        start = html.find(key)
        assert start >= 0, f"{path} is not in the report"
        items[path], _ = json.JSONDecoder().raw_decode(html, start + len(key))
    return items


def test_snakemake_report_has_every_figure_and_table_with_caption_and_label(tiny_study):
    result = snakemake(tiny_study, "--configfile", "cfg.yaml", "--report", "report.zip")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]  # e.g. docutils' warnings
    with zipfile.ZipFile(tiny_study / "report.zip") as archive:
        html = archive.read("report/report.html").decode()
        names = {Path(n).name for n in archive.namelist()}
    figures = sorted(p.name for p in (tiny_study / RESULTS / "figures").glob("*.png"))
    tables = sorted(p.name for p in (tiny_study / RESULTS / "stats").glob("*.csv"))
    assert figures and {"claims.csv", "tests.csv"} <= set(tables)
    assert set(figures) | set(tables) | {"report.html"} <= names  # the files themselves

    items = report_items(html, [f"{RESULTS}/figures/{n}" for n in figures])
    for name, item in zip(figures, items.values(), strict=True):
        assert item["labels"] == {"figure": name.removesuffix(".png")}
        assert item["caption"].startswith(f'<p>Figure <tt class="docutils literal">{name[:-4]}')
    items = report_items(html, [f"{RESULTS}/stats/{n}" for n in tables])
    for name, item in zip(tables, items.values(), strict=True):
        assert item["labels"] == {"table": name.removesuffix(".csv")}
        assert "Statistics table" in item["caption"] and item["mime_type"] == "text/csv"
    (page,) = report_items(html, [f"{RESULTS}/report.html"]).values()
    assert page["labels"] == {"page": "study report"} and "self-contained" in page["caption"]
    # the workflow description names the config's results folder, not a hard-coded one
    assert f">{RESULTS}/study.nc</tt>" in html and ">results/study.nc<" not in html
    assert "system-message" not in html  # no reStructuredText errors rendered


def test_lint_is_clean():
    result = subprocess.run(
        [*SNAKEMAKE, "--lint"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stderr


def test_software_environment_pins_what_pyproject_allows_and_the_tests_ran_with():
    """workflow/envs/gcstudy.yaml (every rule's `conda:`) pins each dependency of gcstudy to
    the version installed here, inside pyproject's bounds, and installs gcstudy itself."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    env = yaml.safe_load((REPO / "workflow" / "envs" / "gcstudy.yaml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python={}.{}".format(*sys.version_info[:2])
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert "-e ../.." in pip  # the repository, from <workdir>/.snakemake/conda/
    assert (REPO / ".snakemake" / "conda" / ".." / "..").resolve() == REPO
    pins = dict(p.split("==") for p in pip if "==" in p)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"]):
        name = canonicalize_name(requirement.name)
        pinned = {canonicalize_name(k): v for k, v in pins.items()}.get(name)
        assert pinned, f"{requirement.name} is not pinned in workflow/envs/gcstudy.yaml"
        assert requirement.specifier.contains(pinned), (requirement, pinned)
        assert pinned == importlib.metadata.version(requirement.name), requirement.name
    assert len(pins) == len(project["dependencies"])  # nothing pinned that gcstudy lacks


def test_bad_config_is_refused_before_any_job(tmp_path):
    broken = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    broken["studies"]["tiny"]["sweeps"]["lr"] = [0.1, -1]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(broken))
    result = snakemake(tmp_path, "--configfile", "cfg.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "studies.tiny.sweeps.lr[1]: key 'lr' = -1: must be > 0" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("model", "refusal"),
    [
        ("torchvision:squeezenet1_0", "torchvision:squeezenet1_0: no final linear layer"),
        ("torchvision:vit_b_16", "does not take the 32 x 32 images of 'digits' (Wrong image"),
    ],
)
def test_a_torchvision_network_it_cannot_train_is_refused_before_any_job(tmp_path, model, refusal):
    """No head to take the embedding from (squeezenet's classifier is a convolution), or
    an input size the network refuses (torchvision's ViT-B/16 takes 224 x 224 only)."""
    broken = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    broken["studies"]["tiny"].update(model=model, width=1)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(broken))
    result = snakemake(tmp_path, "--configfile", "cfg.yaml", "--cores", "1")
    assert result.returncode != 0
    assert f"cfg.yaml: studies.tiny.model = '{model}'" in result.stderr, result.stderr[-2000:]
    assert refusal in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / RESULTS).exists()


def test_slurm_profile_sends_only_gpu_rules_to_the_gpu_partition(tmp_path):
    """With GCSTUDY_SLURM_PARTITION=gpu, the dry run through profiles/slurm gives
    slurm_partition=gpu exactly to the jobs that ask for a GPU; the train jobs carry the
    warning signal. (Every other rule is a local rule: it never reaches sbatch.)"""
    config = {**TINY_CONFIG, "resources": {"gpu": 1, "cpus_per_gpu": 2}}
    config["studies"] = {
        **TINY_CONFIG["studies"],
        "fs": {"experiment": "E4", "dataset": "digits_fs", "base": {"batch_size": 16},
               "evaluations": ["fewshot"]},
        "est": {"experiment": "E2", "dataset": "digits", "base": {"batch_size": 16},
                "evaluations": ["gc_estimators"]},
    }  # fmt: skip
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--profile", str(REPO / "profiles" / "slurm"),
         "--configfile", "cfg.yaml", "-n"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "GCSTUDY_SLURM_PARTITION": "gpu"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout, re.M)
    rules = {rule for rule, _ in jobs}
    assert {"train", "aggregate"} <= rules
    for rule, resources in jobs:
        on_gpu = "gpu=1" in resources.split(", ")
        assert ("slurm_partition=gpu" in resources) == on_gpu, (rule, resources)
        assert ("slurm_extra=--signal=USR1@120" in resources) == (rule == "train"), rule


@pytest.mark.parametrize("batch", ["run", "study_seed"])
def test_train_jobs_time_limit_follows_their_studys_rate(tmp_path, batch):
    """The train rule's `runtime`: twice its runs' expected minutes, each run at its own
    study's `minutes_per_1000_steps` (else the resources'). 3,000-step runs: `tiny` at the
    resources' 5 min per 1,000 steps, 2 x 15 = 30 min; `big` at its own 12, 2 x 36 = 72 min
    a run. big's base point of seed 0 has tiny's spec: trained once, in tiny's folder (the
    first in config order), so at tiny's rate; with resources.batch study_seed, big's seed 0
    batch holds one run (72 min), its seed 1 batch two (144 min)."""
    config = {**TINY_CONFIG, "resources": {"minutes_per_1000_steps": 5, "batch": batch}}
    config["defaults"] = {**TINY_CONFIG["defaults"], "steps": 3000}
    tiny = {"experiment": "E1", "dataset": "digits", "base": {"batch_size": 16}}
    config["studies"] = {
        "tiny": tiny,
        "big": {**tiny, "sweeps": {"lr": [0.1]}, "seeds": [0, 1], "minutes_per_1000_steps": 12},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(tmp_path, "--configfile", "cfg.yaml", "-n", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(
        r"^rule train:\n(?:    .*\n)*?    wildcards: batch=(\S+)\n    resources: .*runtime=(\d+)",
        result.stdout,
        re.M,
    )
    limits = {batch_id: int(minutes) for batch_id, minutes in jobs}
    if batch == "run":
        assert limits == {
            "tiny/lr-0.05_bs-16_l2-0_gcp-0_seed-0": 30,
            "big/lr-0.05_bs-16_l2-0_gcp-0_seed-1": 72,
            "big/lr-0.1_bs-16_l2-0_gcp-0_seed-0": 72,
            "big/lr-0.1_bs-16_l2-0_gcp-0_seed-1": 72,
        }
    else:
        assert limits == {"tiny/seed-0": 30, "big/seed-0": 72, "big/seed-1": 144}


def test_paper_grid_dry_run_lists_every_job(tmp_path):
    result = snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config" / "paper.yaml"),
        "--cores",
        "1",
        "results/study.nc",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    runs = study_config.expand(study_config.load(REPO / "config" / "paper.yaml"))
    appendix = {  # lr and L2 sweeps: 5 + 5 - 1 points; lr, batch and L2: 5 + 5 + 5 - 2; 3 seeds
        "E1b_resnet50_cifar100": 9 * 3,
        "E4_transfer_mini_imagenet": 13 * 3,
    }
    main = [run for run in runs if run.study not in appendix]
    # E2, E3 and E5's base point share E1's base runs (same spec): 203 runs, 194 trained
    assert len(main) == 203
    assert len(study_config.trained_runs(main)) == 194
    assert {s: sum(r.study == s for r in runs) for s in appendix} == appendix
    # resources.batch: run (the default): one training job per run folder, each also
    # writing the run's evaluations; the appendix's runs share no folder
    trained = 194 + sum(appendix.values())
    assert int(counts["train"]) == int(counts["batch_spec"]) == trained == 260
    assert len(study_config.trained_runs(runs)) == trained
    # cifar10, mnist, fashion_mnist, cifar_fs; the appendix's cifar100 and mini_imagenet
    assert int(counts["prepare_data"]) == 6
    # each train job's time limit: twice its run's steps at its study's rate (the appendix's
    # own, else the resources'), read here from the YAML: 36 min for ResNet-50's 30,000
    # steps at 0.6, 108 min for mini-ImageNet's 15,000 at 3.6
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    rate = {name: study.get("minutes_per_1000_steps", paper["resources"]["minutes_per_1000_steps"])
            for name, study in paper["studies"].items()}  # fmt: skip
    steps = {name: study.get("base", {}).get("steps", paper["defaults"]["steps"])
             for name, study in paper["studies"].items()}  # fmt: skip
    job = (
        r"^rule train:\n(?:    .*\n)*?"
        r"    wildcards: batch=(\w+)/\S+\n    resources: .*runtime=(\d+)"
    )
    limits = re.findall(job, result.stdout, re.M)
    assert len(limits) == trained
    for study, minutes in limits:
        assert int(minutes) == max(10, round(2 * rate[study] * steps[study] / 1000)), study
    assert {s: int(m) for s, m in limits if s in appendix} == {
        "E1b_resnet50_cifar100": 36, "E4_transfer_mini_imagenet": 108
    }  # fmt: skip


def test_tiny_study_report_uses_the_configs_stats_keys(tiny_study):
    """stats / figures / report through Snakemake, with the config's `stats` keys reaching
    `gcstudy stats` and recorded in claims.json (after the other tiny-study tests: the new
    keys change the run table)."""
    keyed = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    keyed["stats"] = {"alpha": 0.01, "summary_window": 1, "permutations": 199}
    (tiny_study / "cfg_stats.yaml").write_text(yaml.safe_dump(keyed))
    result = snakemake(
        tiny_study, "--configfile", "cfg_stats.yaml", "--cores", "2", f"{RESULTS}/report.html"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tiny_study / RESULTS / "stats" / "claims.json").read_text())
    assert (summary["alpha"], summary["summary_window"], summary["permutations"]) == (0.01, 1, 199)
    assert summary["settings"]["seed"] == 0  # the schema's default
    assert not summary["generated_by"]  # trained, not generated
    text = (tiny_study / RESULTS / "report.html").read_text()
    assert "GENERATED STUDY" not in text and "claim 1:" in text
