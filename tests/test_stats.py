"""gcstudy stats on generated studies whose truth is known: planted effects are found, null
effects are not, reversed effects are contradicted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gcstudy import cli
from gcstudy.analysis import aggregate, stats, synthetic


def make(tmp_path_factory, name: str, planted: synthetic.Planted, seed: int = 0, **kw):
    root = tmp_path_factory.mktemp(name)
    kw.setdefault("studies", ("sweeps", "transfer", "bound", "penalty"))
    config = synthetic.small_config(steps=20, seeds=(0, 1, 2), **kw)
    synthetic.make_study(root, config, planted, seed=seed)
    return aggregate.aggregate(root / "run_table.json", root / "runs")


def verdicts(results: stats.Results, parts: bool = False) -> dict[str, str]:
    table = dict(zip(results.claims["claim"], results.claims["verdict"], strict=True))
    return {k: v for k, v in table.items() if parts or k.isdigit()}


def verdicts_of(results: stats.Results, claim: int) -> set[str]:
    return {t.verdict for t in results.tests if t.claim == claim}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return make(tmp_path_factory, "planted", synthetic.Planted(), studies=None)


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    effects = dict.fromkeys(synthetic.EXPECTED_EFFECTS, 0.0)
    truth = synthetic.Planted(
        effects=effects,
        nc_exponent=0.0,
        collapse_exponent=0.0,
        target_exponent=0.0,
        accuracy_slope=0.0,
        noise=0.2,
    )
    return make(tmp_path_factory, "null", truth, seed=3)


@pytest.fixture(scope="module")
def reversed_(tmp_path_factory):
    effects = {k: -v for k, v in synthetic.EXPECTED_EFFECTS.items()}
    truth = synthetic.Planted(
        effects=effects,
        nc_exponent=-1.0,
        collapse_exponent=-1.0,
        target_exponent=-1.0,
        accuracy_slope=0.08,
        bound_fraction=0.005,
        error_power=-1.0,
    )
    return make(tmp_path_factory, "reversed", truth, seed=5)


def test_planted_effects_are_found(planted):
    results = stats.analyse(planted, n_boot=200)
    assert set(verdicts(results, parts=True).values()) == {"supported"}
    slopes = results.tables["sweep_slopes"].set_index(["study", "sweep"])
    # the planted log-log slopes are recovered (lr -0.5, batch +0.5, penalty ~ -0.3 on the
    # shifted axis), within their confidence intervals
    for study, factor, truth in (
        ("sweeps", "lr", -0.5),
        ("sweeps", "batch_size", 0.5),
        ("transfer", "lr", -0.5),
    ):
        row = slopes.loc[(study, factor)]
        assert row["ci_low"] <= truth <= row["ci_high"]
    collapse = results.tables["collapse_vs_gc"]
    nc = collapse[(collapse["study"] == "sweeps") & (collapse["y"] == "NC")].iloc[0]
    assert nc["ci_low"] <= 1.0 <= nc["ci_high"]
    assert nc["runs"] == 21  # 7 points x 3 seeds, clusters are runs


def test_null_effects_are_not_found(null):
    results = stats.analyse(null, n_boot=200)
    for claim in (1, 2, 3):
        assert verdicts_of(results, claim) == {"inconclusive"}, claim
        assert verdicts(results)[str(claim)] == "inconclusive"


def test_reversed_effects_are_contradicted(reversed_):
    results = stats.analyse(reversed_, n_boot=200)
    parts = verdicts(results, parts=True)
    for part in ("1a", "1b", "1c", "1d", "2a", "2b", "4a", "4b", "4c", "4d"):
        assert parts[part] == "contradicted", part
    for claim in ("1", "2", "4"):
        assert parts[claim] == "contradicted", claim
    # lower GC -> higher target NC, and accuracy rising with target NC: accuracy still falls
    # with GC, so claim 3 is part contradicted, part supported: conflicting, inconclusive
    assert (parts["3a"], parts["3b"], parts["3c"]) == ("contradicted", "contradicted", "supported")
    assert parts["3"] == "inconclusive"
    bound = results.tables["bound"]
    assert (bound["significant_violations"] > 0).all()


def test_rank_correlation_bootstrap_over_seeds(planted):
    results = stats.analyse(planted, n_boot=300)
    ranks = results.tables["rank_correlations"]
    lr = ranks[(ranks["study"] == "sweeps") & (ranks["pair"] == "lr vs final GC")].iloc[0]
    assert lr["spearman"] < 0 and lr["ci_high"] < 0
    assert lr["ci_low"] - 1e-9 <= lr["spearman"] <= lr["ci_high"] + 1e-9


def test_bootstrap_needs_replicates():
    rng = np.random.default_rng(0)
    x, y = np.arange(5.0), np.arange(5.0) ** 2
    one_seed = stats.bootstrap_rank(x, y, np.arange(5).astype(str), 100, rng, 0.05)
    assert one_seed["spearman"] == pytest.approx(1.0)
    assert np.isnan(one_seed["ci_low"])


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(stats.holm([np.nan, 0.01])[0])


def test_log_axis_places_zero_a_decade_below():
    logs, zero_at = stats.log10_axis(np.array([0.0, 1e-4, 1e-3]))
    assert zero_at == pytest.approx(-5.0)
    assert logs.tolist() == pytest.approx([-5.0, -4.0, -3.0])


def test_too_few_runs_is_inconclusive(tmp_path):
    config = synthetic.small_config(steps=20, seeds=(0,), studies=("penalty",))
    config["studies"]["penalty"]["sweeps"]["gc_penalty"] = [0.01]
    synthetic.make_study(tmp_path, config)
    dataset = aggregate.aggregate(tmp_path / "run_table.json", tmp_path / "runs")
    results = stats.analyse(dataset, n_boot=50)
    assert verdicts(results)["1"] == "inconclusive"
    assert "too few" in results.tests[0].reason


def test_cli_writes_every_table(planted, tmp_path):
    study = tmp_path / "study.nc"
    aggregate.write(planted, study)
    out = tmp_path / "stats"
    assert cli.main(["stats", str(study), "--out", str(out), "--bootstrap", "100"]) == 0
    for name in (
        "claims",
        "sweep_slopes",
        "collapse_vs_gc",
        "transfer",
        "bound",
        "rank_correlations",
        "estimators",
        "tests",
        "inventory",
    ):
        for suffix in ("csv", "md", "tex"):
            assert (out / f"{name}.{suffix}").stat().st_size > 0, (name, suffix)
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims["verdict"]) <= set(stats.VERDICTS)
    assert len(claims) == len(stats.CLAIMS) + len(stats.PARTS)
    summary = json.loads((out / "claims.json").read_text())
    assert summary["alpha"] == 0.05 and "Holm" in summary["decision_rule"]
    assert "\\begin{tabular}" in (out / "claims.tex").read_text()
    assert (out / "claims.md").read_text().count("\n|") >= 5
