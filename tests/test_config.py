# ruff: noqa: E501 (the table of broken configs reads best one case a line)
"""Study configs: validation messages, the grid, run ids, the shipped configs."""

import copy
import json
import os
import re
from pathlib import Path

import pytest

from gcstudy.study import config as study_config
from gcstudy.study.config import ConfigError, number_id, run_table, validate
from gcstudy.yamlio import load

REPO = Path(__file__).resolve().parents[1]

GOOD = {
    "defaults": {"width": 0.125, "steps": 20},
    "studies": {
        "fig1": {
            "experiment": "E1",
            "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"lr": [0.02, 0.05, 0.1], "batch_size": [16, 32], "l2": [0.0, 1e-4]},
            "seeds": [0, 1],
        },
        "transfer": {
            "experiment": "E4",
            "dataset": "digits_fs",
            "sweeps": {"lr": [0.1]},
            "evaluations": ["fewshot"],
        },
    },
}


def broken(path: str, value) -> dict:
    """GOOD with the dotted ``path`` set to ``value`` (``...`` deletes the key)."""
    config = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return config


BROKEN = [
    (broken("studies.fig1.model", "vgg16"), r"studies\.fig1.*key 'model' = 'vgg16': expected one of vgg11, vgg13, resnet18"),
    (broken("studies.fig1.dataset", "imagenet"), r"key 'dataset' = 'imagenet': unknown dataset 'imagenet'; built in: digits"),
    (broken("studies.fig1.sweps", {"lr": [0.1]}), r"unknown key studies\.fig1\.sweps \(did you mean 'sweeps'\?\)"),
    (broken("studies.fig1.base.learning_rate", 0.1), r"unknown key 'learning_rate'"),
    (broken("studies.fig1.sweeps.lr", [0.1, -0.05]), r"studies\.fig1\.sweeps\.lr\[1\]: key 'lr' = -0\.05: must be > 0"),
    (broken("studies.fig1.base.lr", 0), r"studies\.fig1 \(base with defaults\): key 'lr' = 0: must be > 0"),
    (broken("studies.fig1.sweeps.lr", []), r"studies\.fig1\.sweeps\.lr = \[\]: expected a non-empty list"),
    (broken("studies.fig1.seeds", [0, 1.5]), r"studies\.fig1\.seeds = \[0, 1\.5\]: expected a non-empty list of non-negative integers"),
    (broken("studies.fig1.seeds", [1, 1]), r"studies\.fig1\.seeds = \[1, 1\]: seeds repeat"),
    (broken("studies.fig1.sweeps.batch_size", [32, 5000]), r"batch_size 5000 is larger than the 1442 training examples of 'digits'"),
    (broken("studies.fig1.evaluations", ["fewshot"]), r"'fewshot' needs a data set with target classes \(glyphs, cifar_fs, digits_fs, mini_imagenet\), but dataset is 'digits'"),
    (broken("studies.fig1.sweeps.momentum", [0.9]), r"studies\.fig1\.sweeps\.momentum: cannot sweep 'momentum'; sweepable: lr, batch_size, l2, gc_penalty"),
    (broken("studies.fig1.experiment", "E9"), r"studies\.fig1\.experiment = 'E9': expected one of E1, E1b, E2, E3, E4, E5"),
    (broken("studies.fig1.experiment", ...), r"studies\.fig1\.experiment = None: expected one of"),
    (broken("studies", {}), r"key 'studies' must be a non-empty mapping"),
    (broken("defaults.steps", "many"), r"defaults: key 'steps' = 'many': expected an integer"),
    (broken("studies.fig1.sweeps.l2", [0.0, "1e-4x"]), r"studies\.fig1\.sweeps\.l2\[1\] = '1e-4x': expected a number"),
    (broken("studies.fig1.sweeps.lr", [0.05, 0.05]), r"studies\.fig1\.sweeps\.lr = \[0\.05, 0\.05\]: values repeat"),
    (broken("studies.fig1.base.model", "vgg13"), r"studies\.fig1\.base\.model: set it on the study"),
    (broken("studies.fig 1", {"experiment": "E1"}), r"study name 'fig 1' must be letters, digits"),
    (broken("studies.fig1.evaluations", ["fewshots"]), r"evaluations = \['fewshots'\]: expected a list of fewshot, gc_estimators, bound"),
    (broken("studies.fig1.minutes_per_1000_steps", 0), r"cfg\.yaml: studies\.fig1\.minutes_per_1000_steps = 0: must be > 0"),
    (broken("studies.fig1.minutes_per_1000_steps", "2 min"), r"studies\.fig1\.minutes_per_1000_steps = '2 min': expected a number > 0"),
    (broken("resources", {"gpu": -1}), r"resources\.gpu: -1 is less than the minimum of 0"),
    (broken("evaluate", {"gc_repeats": 1}), r"evaluate\.gc_repeats: 1 is less than the minimum of 2"),
    (broken("defaults.gc_examples", 12), r"studies\.fig1 \(base with defaults\): run spec: key 'gc_examples' = 12 is too small for the 10 classes of 'digits'"),
    (broken("outputs", "results"), r"unknown key outputs; allowed: results"),
    (broken("studies.fig1.model", "torchvision:ResNet18"), r"studies\.fig1.*key 'model' = 'torchvision:ResNet18': expected torchvision:<arch> with <arch> the name"),
    (broken("studies.fig1.model", "torchvision:resnet18"), r"studies\.fig1.*key 'width' = 0\.125: torchvision:resnet18 is torchvision's own network, built at width 1 only"),
]  # fmt: skip


@pytest.mark.parametrize("model", ["resnet50", "torchvision:convnext_tiny"])
def test_every_kind_of_model_name_passes_the_checks_and_the_schema(model):
    config = broken("studies.fig1.model", model)
    config["studies"]["fig1"]["width"] = 1
    runs = validate(config, source="cfg.yaml")
    assert {r.spec.model for r in runs if r.study == "fig1"} == {model}


@pytest.mark.parametrize(("config", "message"), BROKEN)
def test_broken_config_is_refused_with_key_value_and_allowed(config, message):
    with pytest.raises(ConfigError, match=message):
        validate(config, source="cfg.yaml")


def test_grid_trains_the_shared_base_point_once():
    runs = validate(copy.deepcopy(GOOD))
    fig1 = [r for r in runs if r.study == "fig1"]
    # base + lr {0.02, 0.1} + batch {16} + l2 {1e-4} (0.05, 32 and 0.0 are the base): 5 points
    assert len(fig1) == 5 * 2
    base = [
        r for r in fig1 if r.point == {"lr": 0.05, "batch_size": 32, "l2": 0.0, "gc_penalty": 0.0}
    ]
    assert len(base) == 2 and base[0].sweeps == ("base", "lr", "batch_size", "l2")
    assert len({r.run_id for r in runs}) == len(runs)
    transfer = [r for r in runs if r.study == "transfer"]
    assert [r.run_id for r in transfer] == [
        "transfer/lr-0.05_bs-64_l2-0_gcp-0_seed-0",
        "transfer/lr-0.1_bs-64_l2-0_gcp-0_seed-0",
    ]
    assert all(r.evaluations == ("fewshot",) for r in transfer)
    assert all(r.spec.width == 0.125 and r.spec.steps == 20 for r in runs)


def test_run_ids_write_numbers_exactly():
    assert [number_id(v) for v in (0.05, 1e-05, 5e-4, 64, 0.0, 1.0, 0.1 + 0.2)] == [
        "0.05", "1e-05", "0.0005", "64", "0", "1", "0.30000000000000004"]  # fmt: skip
    assert float(number_id(0.1 + 0.2)) == 0.1 + 0.2


def test_defaults_come_from_the_schema():
    config = copy.deepcopy(GOOD)
    validate(config)
    assert config["results"] == "results" and config["data_root"] == "data"
    assert config["resources"]["gpu"] == 0
    assert config["evaluate"]["fewshot_episodes"] == 10000
    assert config["studies"]["fig1"]["evaluations"] == []


def test_run_table_is_plain_json():
    table = run_table(validate(copy.deepcopy(GOOD)) and copy.deepcopy(GOOD))
    assert json.loads(json.dumps(table)) == table
    assert table["studies"]["fig1"]["base"]["lr"] == 0.05
    assert len(table["config_hash"]) == 16


def test_shipped_configs_are_valid():
    default = study_config.load(REPO / "config" / "config.yaml")
    paper = study_config.load(REPO / "config" / "paper.yaml")
    assert {s["experiment"] for s in paper["studies"].values()} == {
        "E1", "E1b", "E2", "E3", "E4", "E5"}  # fmt: skip
    paper_runs = study_config.expand(paper)
    assert all(r.spec.width == 1.0 for r in paper_runs)
    assert all(len(s["seeds"]) >= 3 for s in paper["studies"].values())
    assert len(paper["studies"]["E3_bound"]["seeds"]) == 5
    assert paper["studies"]["E5_penalty"]["sweeps"]["gc_penalty"] == [0.0, 1e-7, 1e-6, 1e-4]
    default_runs = study_config.expand(default)
    assert {r.spec.dataset for r in default_runs} == {"mnist_5k", "glyphs"}
    assert len(default["studies"]["bound"]["seeds"]) >= 3


def test_default_study_is_sized_to_decide():
    """Issue 10: >= 3 seeds at every point of every study, >= 4 values of each E1 factor,
    E3 with >= 3 seeds, E5 with >= 3 GC-penalty values, VGG-11 on real MNIST, few-shot on
    the glyph target classes."""
    default = study_config.load(REPO / "config" / "config.yaml")
    runs = study_config.expand(default)
    by_study: dict[str, list] = {}
    for run in runs:
        by_study.setdefault(run.study, []).append(run)
    for name, study in default["studies"].items():
        points = {tuple(sorted(r.point.items())) for r in by_study[name]}
        seeds = {p: {r.seed for r in by_study[name] if tuple(sorted(r.point.items())) == p}
                 for p in points}  # fmt: skip
        assert all(len(s) >= 3 for s in seeds.values()), name
        if study["experiment"] in ("E1", "E1b"):
            assert {r.spec.model for r in by_study[name]} == {"vgg11"}
            assert {r.spec.dataset for r in by_study[name]} == {"mnist_5k"}
            for factor in ("lr", "batch_size", "l2"):
                assert len({r.point[factor] for r in by_study[name]}) >= 4, factor
        if study["experiment"] == "E5":
            assert len({r.point["gc_penalty"] for r in by_study[name]}) >= 4  # 0 and 3 more
        if study["experiment"] == "E4":
            assert {r.spec.dataset for r in by_study[name]} == {"glyphs"}
            assert study["evaluations"] == ["fewshot"]
    experiments = {s["experiment"] for s in default["studies"].values()}
    assert {"E2", "E3", "E4", "E5"} <= experiments and experiments & {"E1", "E1b"}


def test_default_study_gives_l2_a_dose():
    """Issue 18: a study that sweeps L2 has >= 3 values, the largest at a dose
    2 x lr x L2 x steps >= 0.5 (weights decayed by L2 alone to exp(-0.5) = 0.61 or less)."""
    default = study_config.load(REPO / "config" / "config.yaml")
    swept = set()
    for run in study_config.expand(default):
        if "l2" in run.sweeps:
            swept.add(run.study)
            values = default["studies"][run.study]["sweeps"]["l2"]
            assert len(values) >= 3, run.study
            if run.spec.l2 == max(values):
                assert 2 * run.spec.lr * run.spec.l2 * run.spec.steps >= 0.5, run.run_id
    assert swept == {"sweeps", "transfer"}


def test_runs_with_one_spec_are_trained_once_and_keep_their_study():
    config = copy.deepcopy(GOOD)
    config["studies"]["bound"] = {
        "experiment": "E3", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 32},
        "seeds": [0, 1, 2], "evaluations": ["bound"],
    }  # fmt: skip
    runs = validate(copy.deepcopy(config))
    bound = [r for r in runs if r.study == "bound"]
    assert [r.trained_in for r in bound] == [
        "fig1/lr-0.05_bs-32_l2-0_gcp-0_seed-0", "fig1/lr-0.05_bs-32_l2-0_gcp-0_seed-1",
        "bound/lr-0.05_bs-32_l2-0_gcp-0_seed-2",  # fig1 has no seed 2
    ]  # fmt: skip
    assert bound[0].run_id == "bound/lr-0.05_bs-32_l2-0_gcp-0_seed-0"
    trained = study_config.trained_runs(runs)
    assert len(trained) == len(runs) - 2
    assert len({r.run_id for r in trained}) == len(trained)
    table = run_table(copy.deepcopy(config))
    entry = next(e for e in table["runs"] if e["run_id"] == bound[0].run_id)
    assert entry["study"] == "bound" and entry["folder"] == bound[0].trained_in
    config["share_runs"] = False
    assert all(r.trained_in == r.run_id for r in validate(copy.deepcopy(config)))


def test_config_readme_documents_every_key():
    text = (REPO / "config" / "README.md").read_text()
    schema = load(study_config.SCHEMA)
    keys = set(schema["properties"])
    keys |= set(schema["properties"]["resources"]["properties"])
    keys |= set(schema["properties"]["evaluate"]["properties"])
    keys |= set(schema["properties"]["studies"]["additionalProperties"]["properties"])
    from gcstudy.study.spec import RunSpec

    keys |= set(RunSpec().to_dict())
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"config/README.md does not document {missing}"


@pytest.mark.slow
def test_schema_ships_in_the_wheel_and_validates_outside_the_checkout(tmp_path):
    """A non-editable install (built wheel, no workflow/ folder beside the package) still
    finds the schema through importlib.resources and fills in its defaults."""
    import subprocess
    import sys

    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w",
         str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("gcstudy-*.whl")
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "import gcstudy, json; from gcstudy.study import config;"
        "cfg = {'studies': {'s': {'experiment': 'E1'}}}; config.validate(cfg);"
        "print(json.dumps([gcstudy.__file__, str(config.SCHEMA), cfg['resources']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    package, schema, resources = json.loads(out.stdout)
    assert package.startswith(str(target)) and schema.startswith(str(target))
    assert resources["minutes_per_1000_steps"] == load(study_config.SCHEMA)["properties"][
        "resources"]["properties"]["minutes_per_1000_steps"]["default"]  # fmt: skip


CLOCKED = {
    "defaults": {"width": 0.0625, "steps": 300, "eval_every": 1000, "eval_log_points": 0},
    "studies": {
        "sweeps": {
            "experiment": "E1b",
            "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"lr": [0.025, 0.1], "batch_size": [64]},
            "seeds": [0, 1],
        },
        "slower": {
            "experiment": "E1b",
            "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"lr": [0.0125]},
            "seeds": [0],
        },
    },
}
# Worked by hand from the clocks' definitions (300 steps, 2/3 of a value for stability).
# sweeps.lr (lr 0.025, 0.05, 0.1 at batch 32): steps and examples read every run at 300
# and 200; lr x steps has the common value 0.025 x 300 = 7.5, reached by lr 0.05 at step
# 150 (2/3: 100) and by lr 0.1 at 75 (50). sweeps.batch_size (32, 64 at lr 0.05): examples
# have the common value 32 x 300, reached by batch 64 at step 150 (100). slower.lr (lr
# 0.0125, 0.05): lr x steps 3.75, reached by lr 0.05 at step 75 (50).
CLOCK_STEPS = {
    "sweeps/lr-0.05_bs-32_l2-0_gcp-0": [100, 150, 200, 300],
    "sweeps/lr-0.025_bs-32_l2-0_gcp-0": [200, 300],
    "sweeps/lr-0.1_bs-32_l2-0_gcp-0": [50, 75, 200, 300],
    "sweeps/lr-0.05_bs-64_l2-0_gcp-0": [100, 150, 200, 300],
    "slower/lr-0.0125_bs-32_l2-0_gcp-0": [200, 300],
}


def test_runs_are_evaluated_where_every_design_clock_reads_them():
    config = copy.deepcopy(CLOCKED)
    config["share_runs"] = False
    for run in validate(config):
        point = run.run_id.rsplit("_seed-", 1)[0]
        if point == "slower/lr-0.05_bs-32_l2-0_gcp-0":
            assert run.spec.eval_clock_steps == [50, 75, 200, 300]
        else:
            assert run.spec.eval_clock_steps == CLOCK_STEPS[point], run.run_id
        assert run.spec.evaluation_steps == [0, *run.spec.eval_clock_steps]


def test_a_shared_run_is_evaluated_at_the_clock_steps_of_every_study_that_reads_it():
    runs = validate(copy.deepcopy(CLOCKED))
    base = [
        r for r in runs if r.point == {"lr": 0.05, "batch_size": 32, "l2": 0.0, "gc_penalty": 0.0}
    ]
    # seed 0 of both studies is one training run; seed 1 is only the sweeps'
    assert [r.trained_in for r in base] == [
        "sweeps/lr-0.05_bs-32_l2-0_gcp-0_seed-0", "sweeps/lr-0.05_bs-32_l2-0_gcp-0_seed-1",
        "sweeps/lr-0.05_bs-32_l2-0_gcp-0_seed-0",
    ]  # fmt: skip
    assert base[0].spec == base[2].spec
    assert base[0].spec.eval_clock_steps == [50, 75, 100, 150, 200, 300]  # the union
    assert base[1].spec.eval_clock_steps == [100, 150, 200, 300]
    assert len(study_config.trained_runs(runs)) == len(runs) - 1
    # run ids and folders do not depend on the schedule
    unclocked = copy.deepcopy(CLOCKED)
    unclocked["stats"] = {"clocks": []}
    plain = study_config.expand(unclocked)
    assert [(r.run_id, r.trained_in) for r in plain] == [(r.run_id, r.trained_in) for r in runs]
    assert all(r.spec.eval_clock_steps == [] for r in plain)


def test_the_clock_panel_comes_from_the_stats_section():
    config = copy.deepcopy(CLOCKED)
    study_config.fill_defaults(config)
    config["stats"]["clocks"] = ["steps"]
    assert {tuple(r.spec.eval_clock_steps) for r in study_config.expand(config)} == {(200, 300)}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("torchvision:resnet5", r"torchvision \S+ has no classification architecture 'resnet5'"),
        ("torchvision:squeezenet1_0", r"no final linear layer .* 'classifier\.1', is Conv2d"),
    ],
)
def test_the_workflow_refuses_a_torchvision_network_it_cannot_build_before_any_job(
    model, message, capsys
):
    from gcstudy.scheduling import workflow_config

    config = broken("studies.fig1.model", model)
    config["studies"]["fig1"]["width"] = 1
    assert {r.spec.model for r in validate(copy.deepcopy(config))} >= {model}  # its form is fine
    with pytest.raises(SystemExit):
        workflow_config.runs(config, ["cfg.yaml"])
    error = capsys.readouterr().err
    assert f"cfg.yaml: studies.fig1.model = '{model}': torchvision:" in error
    assert re.search(message, error)
    config["studies"]["fig1"]["model"] = "torchvision:resnet18"
    assert workflow_config.runs(config, ["cfg.yaml"])
