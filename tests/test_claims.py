"""The claims' statistical engine and decision rule against independent computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from gcstudy.analysis.claims import blocked, inputs, rule
from gcstudy.analysis.claims.rule import Reason, Test, Verdict


def perms(count=2000, seed=0):
    return blocked.Permutations(count, np.random.default_rng(seed))


def design_data(seed=0, n_seeds=3, values=5):
    rng = np.random.default_rng(seed)
    seed_ids = np.repeat(np.arange(n_seeds), values)
    x = np.tile(np.log([0.01, 0.02, 0.05, 0.1, 0.2][:values]), n_seeds)
    loss = rng.standard_normal(len(x))
    y = -0.3 * x + 0.5 * seed_ids + 0.2 * loss + 0.1 * rng.standard_normal(len(x))
    return x, y, seed_ids, loss


def test_blocked_fit_matches_statsmodels_ols():
    x, y, seed, loss = design_data()
    fit = blocked.blocked_fit(y, x, seed, -1, 0.05, perms(), loss[:, None])
    frame = pd.DataFrame({"y": y, "x": x, "seed": seed, "loss": loss})
    oracle = smf.ols("y ~ x + C(seed) + loss", frame).fit()
    assert fit.slope == pytest.approx(oracle.params["x"], rel=1e-10)
    assert fit.se == pytest.approx(oracle.bse["x"], rel=1e-10)
    low, high = oracle.conf_int(0.05).loc["x"]
    assert (fit.ci_low, fit.ci_high) == pytest.approx((low, high), rel=1e-10)
    # one-sided in the predicted (negative) direction: half the two-sided p
    assert fit.p == pytest.approx(oracle.pvalues["x"] / 2, rel=1e-8)
    assert fit.p + fit.p_against == pytest.approx(1.0)
    assert fit.df == oracle.df_resid


def test_permutations_stay_within_seeds_and_are_exact_when_few():
    seeds = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    index = blocked.within_block_permutations(seeds, 1000, np.random.default_rng(0))
    assert len(index) == 6 * 6 * 2  # every within-seed permutation, once
    assert len({tuple(r) for r in index}) == len(index)
    assert (seeds[index] == seeds[None, :]).all()
    many = blocked.within_block_permutations(np.repeat([0, 1, 2], 5), 300, np.random.default_rng(0))
    assert many.shape == (301, 15) and (many[0] == np.arange(15)).all()
    assert (np.repeat([0, 1, 2], 5)[many] == np.repeat([0, 1, 2], 5)[None]).all()


def test_permutation_p_without_covariates_is_permuting_y_within_seed():
    # Freedman-Lane with only seed blocks = permuting y within seed; compare with a brute
    # force enumeration of every within-seed permutation of the seed-centred t statistic
    x, y, seed, _ = design_data(values=4)
    fit = blocked.blocked_fit(y, x, seed, -1, 0.05, perms(10**6))  # (4!)^3 = 13824: exact
    groups = [np.flatnonzero(seed == s) for s in np.unique(seed)]

    def t_of(response):
        frame = pd.DataFrame({"y": response, "x": x, "seed": seed})
        model = smf.ols("y ~ x + C(seed)", frame).fit()
        return model.tvalues["x"]

    observed = t_of(y)
    rng = np.random.default_rng(1)
    draws = []
    for _ in range(300):  # a random subset of the exact enumeration, by brute force
        permuted = y.copy()
        for g in groups:
            permuted[g] = y[rng.permutation(g)]
        draws.append(t_of(permuted))
    brute = np.mean(np.array(draws) <= observed)
    assert fit.p_perm == pytest.approx(brute, abs=0.03)


def test_rank_trend_exact_p_for_a_perfect_trend():
    x = np.tile([0.0, 1e-4, 1e-3, 1e-2], 3)
    y = np.tile([4.0, 3.0, 2.0, 1.0], 3) + np.repeat([0.0, 10.0, -5.0], 4)
    trend = blocked.rank_trend(y, x, np.repeat([0, 1, 2], 4), -1, perms(10**5))
    assert trend.rho == pytest.approx(-1.0)
    assert trend.p_perm == pytest.approx(1 / math.factorial(4) ** 3)
    assert trend.p_perm_against == pytest.approx(1.0)


def test_partial_residuals_give_the_blocked_slope():
    x, y, seed, loss = design_data(3)
    fit = blocked.blocked_fit(y, x, seed, -1, 0.05, perms(99), loss[:, None])
    rx, ry = blocked.partial_residuals(y, x, seed, loss[:, None])
    assert (rx @ ry) / (rx @ rx) == pytest.approx(fit.slope, rel=1e-10)


def test_not_estimable_fits_say_so():
    seed = np.repeat([0, 1, 2], 2)
    x = np.repeat([1.0, 2.0, 3.0], 2)  # constant within seed: collinear with the blocks
    assert blocked.blocked_fit(np.arange(6.0), x, seed, 1, 0.05, perms(99)) is None


def test_window_mean_of_the_log_over_the_last_evaluations():
    values = np.array([[1.0, 2.0, 4.0, 8.0], [1.0, np.nan, 4.0, np.nan], [np.nan] * 4])
    means, counts = inputs.window_mean_log(values, 2)
    assert means[0] == pytest.approx(np.log(32) / 2)
    assert means[1] == pytest.approx(np.log(4) / 2)
    assert np.isnan(means[2]) and counts.tolist() == [2, 2, 0]


def make_test(part, p=math.nan, p_against=math.nan, **kw):
    return Test(
        claim=1,
        part=part,
        study=kw.pop("study", "s"),
        name="t",
        expected="",
        method="",
        p=p,
        p_against=p_against,
        **kw,
    )


def test_contradiction_is_holm_adjusted_over_the_claim():
    # four sweeps; one looks reversed at p = 0.03: Holm (x4 = 0.12) keeps it inconclusive
    tests = [
        make_test("1a", 0.4, 0.03),
        make_test("1b", 0.5, 0.2),
        make_test("1c", 0.5, 0.5),
        make_test("1d", 0.6, 0.6),
    ]
    rule.decide_tests(tests, 0.05)
    assert [t.verdict for t in tests] == ["inconclusive"] * 4
    assert tests[0].p_against_holm == pytest.approx(0.12)
    strong = [make_test("1a", 0.9, 0.001), make_test("1b", 0.01, 0.99)]
    rule.decide_tests(strong, 0.05)
    assert [t.verdict for t in strong] == ["contradicted", "supported"]


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for size in (1, 2, 5, 40):
        p = rng.uniform(0, 0.2, size) ** 2
        p[: size // 3] = p[0]  # ties
        np.testing.assert_allclose(rule.holm(p), multipletests(p, method="holm")[1])


def test_all_parts_rule_in_words():
    supported = Verdict("supported", "supported in every study")
    parts = {"1a": supported, "1b": supported, "1c": supported, "1d": rule.part_verdict([])}
    verdict = rule.claim_verdict(parts)
    assert verdict.verdict == "inconclusive" and "1d not tested" in verdict.detail
    parts["1d"] = supported
    assert rule.claim_verdict(parts).verdict == "supported"
    parts["1b"] = Verdict("contradicted", "x")
    assert rule.claim_verdict(parts).verdict == "contradicted"
    # a part holds only where every study that tests it supports it
    mixed = [make_test("1a", 0.01, study="a"), make_test("1a", 0.3, study="b")]
    rule.decide_tests(mixed, 0.05)
    assert rule.part_verdict(mixed).verdict == "inconclusive"


def test_a_design_problem_blocks_a_verdict():
    lost = make_test("1a", 1e-6, 0.9, blocked=Reason.LOST_RUNS, problem="lr 0.2 seed 1 (diverged)")
    rule.decide_tests([lost], 0.05)
    assert lost.verdict == "inconclusive" and "diverged" in lost.reason
    # the part is undecidable because of the field, whatever the words say
    assert rule.part_verdict([lost]).reason is Reason.NOT_DECIDABLE
    significant = make_test("1a", 1e-6, 0.9)
    rule.decide_tests([significant], 0.05)
    assert significant.verdict == "supported"
    unlucky = make_test("1a", 0.3)
    rule.decide_tests([unlucky], 0.05)
    assert rule.part_verdict([unlucky]).reason is Reason.NOT_SIGNIFICANT


def test_a_test_is_blocked_by_a_reason_with_its_words_or_not_at_all():
    with pytest.raises(ValueError, match="blocked"):
        make_test("1a", problem="lost grid points: lr 0.2 seed 1")  # words without a reason
    with pytest.raises(ValueError, match="blocked"):
        make_test("1a", blocked=Reason.LOST_RUNS)  # a reason without words
    with pytest.raises(ValueError, match="blocked"):
        make_test("1a", blocked=Reason.NOT_SIGNIFICANT, problem="x")  # not a blocker
    test = make_test("1a", 1e-6)
    test.block(Reason.LOST_RUNS, "base point seed 0 (diverged)")
    test.block(Reason.TOO_FEW_RUNS, "too few")  # the first reason stays
    assert (test.blocked, test.problem) == (Reason.LOST_RUNS, "base point seed 0 (diverged)")
    assert "blocked" not in test.row() and test.row()["problem"] == test.problem


def test_settings_refuse_bad_values():
    for bad in ({"alpha": 0.7}, {"summary_window": 0}, {"permutations": 10}):
        with pytest.raises(ValueError, match="stats"):
            rule.Settings(**bad)


def test_exhaustive_permutations_cover_each_block_order():
    seeds = np.array([0, 1, 0, 1])
    index = blocked.within_block_permutations(seeds, 100, np.random.default_rng(0))
    expected = {
        (a, b, c, d)
        for a, c in itertools.permutations([0, 2])
        for b, d in itertools.permutations([1, 3])
    }
    assert {tuple(r) for r in index} == expected
