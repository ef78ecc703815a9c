"""The config's settings are declared once (gcstudy.study.settings): the shipped JSON schema
and config/README.md's tables are made from the declarations, and the workflow (the config
as the schema fills it in) and the command line (``gcstudy evaluate``, ``gcstudy stats``
and ``figures``) use the same defaults."""

import argparse
import copy
import json
from pathlib import Path

import pytest
import xarray as xr

from gcstudy import cli
from gcstudy.study import config as study_config
from gcstudy.study import schema
from gcstudy.study.settings import (
    EvaluationSettings,
    SettingError,
    StatsSettings,
    Study,
    declared,
)
from gcstudy.study.spec import RunSpec
from gcstudy.training.trainer import run

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {"studies": {"estimators": {"experiment": "E2", "dataset": "digits"}}}


def workflow_config() -> dict:
    """A config as the Snakefile holds it after validation (schema defaults filled in)."""
    config = copy.deepcopy(MINIMAL)
    study_config.validate(config)
    return config


def test_the_shipped_schema_is_made_from_the_declarations():
    assert study_config.SCHEMA.read_text() == schema.schema_text(), (
        "run: python -m gcstudy.study.schema --schema src/gcstudy/schemas/config.schema.yaml"
    )


def test_the_config_readme_tables_are_made_from_the_declarations():
    text = (REPO / "config" / "README.md").read_text()
    assert schema.readme_with_tables(text) == text, (
        "run: python -m gcstudy.study.schema --readme config/README.md"
    )


def test_the_schema_fills_in_every_declared_default():
    config = workflow_config()
    assert config["evaluate"] == EvaluationSettings().to_dict()
    assert config["stats"] == StatsSettings().to_dict()
    # the E2 budgets the default study's results were made with
    assert config["evaluate"]["budgets"]["mask"] == [0.002, 0.005, 0.01]


def stats_flags(argv: list[str]) -> StatsSettings:
    parser = argparse.ArgumentParser()
    cli.add_stats_settings(parser)
    return cli.stats_settings(parser.parse_args(argv))


def test_stats_and_figures_flags_default_to_the_workflows_stats_section():
    config = workflow_config()
    assert stats_flags([]).to_dict() == config["stats"]
    # what the workflow's stats and figures rules pass reads back as the same settings
    assert stats_flags(cli.stats_options(config["stats"]).split()).to_dict() == config["stats"]
    changed = {**config["stats"], "alpha": 0.01, "clocks": ["examples"], "seed": 7}
    assert stats_flags(cli.stats_options(changed).split()).to_dict() == changed


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits run, trained once."""
    out = tmp_path_factory.mktemp("run")
    spec = RunSpec(
        width=0.0625, steps=4, eval_steps=[0], batch_size=32, gc_examples=20,
        feature_examples=40, test_examples=40, bn_recalibration_examples=32, device="cpu",
    )  # fmt: skip
    run(spec, out, progress=False)
    return out


def estimator_settings(path: Path) -> tuple[dict, list[tuple[str, float]]]:
    with xr.open_dataset(path, engine="h5netcdf") as study:
        measured = list(
            zip(study.estimator.values.tolist(), study.budget.values.tolist(), strict=True)
        )
        return json.loads(study.attrs["settings"]), measured


@pytest.mark.slow
def test_gc_estimators_by_hand_measure_the_workflows_e2(trained):
    """``gcstudy evaluate --gc-estimators`` without --settings measures the estimator
    budgets (and sample, repeats) that the workflow's evaluation does."""
    config = workflow_config()
    assert cli.main(["-q", "evaluate", str(trained), "--gc-estimators", "--device", "cpu"]) == 0
    recorded, measured = estimator_settings(trained / "gc_estimators.nc")
    assert recorded == config["evaluate"]
    budgets = config["evaluate"]["budgets"]
    assert measured == [(name, float(b)) for name, values in budgets.items() for b in values]
    # the workflow's own call (its --settings) records the same
    settings = json.dumps(config["evaluate"], sort_keys=True)
    assert EvaluationSettings.from_dict(json.loads(settings)).to_dict() == recorded


def test_a_section_refuses_what_its_declaration_refuses():
    with pytest.raises(SettingError, match=r"evaluate\.budgets\.mask = \[0\.0\]: expected"):
        EvaluationSettings(budgets={"mask": [0.0]})
    with pytest.raises(SettingError, match=r"evaluate\.budgets = .*unknown key 'probes'"):
        EvaluationSettings(budgets={"probes": [1]})
    with pytest.raises(SettingError, match=r"stats\.clocks = \['steps', 'steps'\]: clocks repeat"):
        StatsSettings(clocks=["steps", "steps"])


def test_every_study_key_is_in_the_schema_and_checked_by_gcstudy():
    """The keys gcstudy.study.config accepts in a study are the schema's, and a value the
    declaration refuses is refused by both (gcstudy's message first)."""
    study_schema = schema.config_schema()["properties"]["studies"]["additionalProperties"]
    assert list(study_schema["properties"]) == [key.name for key in declared(Study)]
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema.config_schema())
    for key, value in (("seeds", [0, -1]), ("evaluations", ["bond"]), ("experiment", "E7"),
                       ("sweeps", {"lr": []}), ("description", 3)):  # fmt: skip
        config = copy.deepcopy(MINIMAL)
        config["studies"]["estimators"][key] = value
        assert not validator.is_valid(config), key
        with pytest.raises(study_config.ConfigError, match=rf"studies\.estimators\.{key}"):
            study_config.validate(copy.deepcopy(config))
