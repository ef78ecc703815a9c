"""Seed-blocked tests on run-level summaries: the one statistical engine of the claims.

``blocked_fit``: OLS ``y ~ x + C(seed) [+ covariates]`` with one observation per run, a
one-sided t-test of the slope of ``x`` in the predicted direction, and a permutation test
of the same t statistic that permutes within seeds (Freedman & Lane 1983: residuals of the
reduced model ``y ~ C(seed) [+ covariates]`` are permuted within each seed and added back
to its fitted values; with no covariate this is permuting ``y`` within seed, i.e. the
factor labels within seed). ``rank_trend``: the rank test for sweeps that contain 0: the
sum over seeds of the within-seed rank covariance of ``x`` and ``y`` (Page's L up to a
constant, a blocked Spearman), against its within-seed permutation distribution.

Permutation p-values are exact (every within-seed permutation) when there are at most
``permutations`` of them, else Monte-Carlo with ``(1 + #{T* >= T}) / (1 + B)``. All
permutations are drawn at once and evaluated as one matrix product.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Fit:
    """A seed-blocked slope: estimate, classical SE, two-sided (1 - alpha) CI, one-sided
    p-values for the predicted direction (``p``) and against it (``p_against``), from the
    t distribution and from the within-seed permutation test (``p_perm*``)."""

    slope: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    p_against: float
    p_perm: float
    p_perm_against: float
    n: int
    df: int
    x_mean: float
    y_mean: float
    sigma: float

    @property
    def p_decide(self) -> float:
        """Supported only when both the t-test and the permutation test reject."""
        return max(self.p, self.p_perm)

    @property
    def p_decide_against(self) -> float:
        return max(self.p_against, self.p_perm_against)

    def mean_line(self, x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted mean at ``x`` for the average seed (and covariates), with its CI."""
        fitted = self.y_mean + self.slope * (x - self.x_mean)
        half = sps.t.ppf(1 - alpha / 2, self.df) * np.sqrt(
            self.sigma**2 / self.n + self.se**2 * (x - self.x_mean) ** 2
        )
        return fitted, fitted - half, fitted + half


@dataclass(frozen=True)
class RankTrend:
    """Mean within-seed Spearman correlation and its within-seed permutation p-values."""

    rho: float
    p_perm: float
    p_perm_against: float
    n: int


class Permutations:
    """Within-seed permutations (``within_block_permutations``), cached per seed layout."""

    def __init__(self, count: int, rng: np.random.Generator):
        self.count, self.rng, self._cache = count, rng, {}

    def of(self, blocks: np.ndarray) -> np.ndarray:
        key = np.asarray(blocks).tobytes()
        if key not in self._cache:
            self._cache[key] = within_block_permutations(np.asarray(blocks), self.count, self.rng)
        return self._cache[key]


def within_block_permutations(
    blocks: np.ndarray, permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Index arrays (rows) that permute positions only within each block: all of them
    (identity first) when there are at most ``permutations``, else ``permutations`` random
    ones plus the identity in row 0."""
    groups = [np.flatnonzero(blocks == b) for b in np.unique(blocks)]
    total = math.prod(math.factorial(len(g)) for g in groups)
    n = len(blocks)
    if total <= permutations:
        rows = []
        for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
            index = np.arange(n)
            for group, order in zip(groups, choice, strict=True):
                index[group] = order
            rows.append(index)
        return np.array(rows)
    index = np.tile(np.arange(n), (permutations + 1, 1))
    for group in groups:
        index[1:, group] = rng.permuted(np.tile(group, (permutations, 1)), axis=1)
    return index


def permutation_p(statistic: np.ndarray, sign: int) -> tuple[float, float]:
    """One-sided p-values of row 0 (the observed) for ``sign`` and against it."""
    observed = statistic[0]
    tolerance = 1e-10 * max(1.0, abs(observed))
    towards = np.mean(sign * statistic >= sign * observed - tolerance)
    against = np.mean(-sign * statistic >= -sign * observed - tolerance)
    return float(towards), float(against)


def design(blocks: np.ndarray, covariates: np.ndarray | None) -> np.ndarray:
    """The reduced design: intercept, seed dummies (first seed dropped), covariates."""
    levels = np.unique(blocks)
    columns = [np.ones(len(blocks))] + [(blocks == b).astype(float) for b in levels[1:]]
    if covariates is not None:
        columns += list(np.atleast_2d(np.asarray(covariates, dtype=float).T))
    return np.column_stack(columns)


def blocked_fit(
    y: np.ndarray,
    x: np.ndarray,
    blocks: np.ndarray,
    sign: int,
    alpha: float,
    permutations: Permutations,
    covariates: np.ndarray | None = None,
) -> Fit | None:
    """The seed-blocked slope of ``y`` on ``x`` (module docstring); None when it is not
    estimable (fewer than 2 residual degrees of freedom, or ``x`` collinear with the seeds
    and covariates)."""
    y, x, blocks = np.asarray(y, float), np.asarray(x, float), np.asarray(blocks)
    reduced = design(blocks, covariates)
    full = np.column_stack([x, reduced])
    n, k = full.shape
    df = n - k
    if df < 2 or np.linalg.matrix_rank(full) < k:
        return None
    q, r = np.linalg.qr(full)
    r_inverse = np.linalg.inv(r)
    pick = r_inverse[0] @ q.T  # row of the pseudo-inverse giving the slope of x
    variance_factor = float(r_inverse[0] @ r_inverse[0])
    q_reduced = np.linalg.qr(reduced)[0]
    fitted = q_reduced @ (q_reduced.T @ y)
    residual = y - fitted
    index = permutations.of(blocks)
    responses = fitted[None, :] + residual[index]  # row 0: the observed y
    slopes = responses @ pick
    rss = (responses**2).sum(axis=1) - ((responses @ q) ** 2).sum(axis=1)
    se = np.sqrt(np.maximum(rss, 0) / df * variance_factor)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, slopes / se, np.sign(slopes) * np.inf)
    p_perm, p_perm_against = permutation_p(t, sign)
    slope, slope_se = float(slopes[0]), float(se[0])
    half = float(sps.t.ppf(1 - alpha / 2, df)) * slope_se
    return Fit(
        slope=slope,
        se=slope_se,
        ci_low=slope - half,
        ci_high=slope + half,
        p=float(sps.t.sf(sign * t[0], df)),
        p_against=float(sps.t.sf(-sign * t[0], df)),
        p_perm=p_perm,
        p_perm_against=p_perm_against,
        n=n,
        df=df,
        x_mean=float(x.mean()),
        y_mean=float(y.mean()),
        sigma=float(np.sqrt(max(rss[0], 0) / df)),
    )


def rank_trend(
    y: np.ndarray,
    x: np.ndarray,
    blocks: np.ndarray,
    sign: int,
    permutations: Permutations,
) -> RankTrend | None:
    """Blocked rank trend test of ``y`` along ``x`` (module docstring); None when no seed
    has two runs with different ``x``."""
    y, x, blocks = np.asarray(y, float), np.asarray(x, float), np.asarray(blocks)
    rank_x, rank_y = np.empty(len(x)), np.empty(len(y))
    for b in np.unique(blocks):
        member = blocks == b
        rank_x[member] = sps.rankdata(x[member]) - (member.sum() + 1) / 2
        rank_y[member] = sps.rankdata(y[member]) - (member.sum() + 1) / 2
    scale = np.sqrt((rank_x**2).sum() * (rank_y**2).sum())
    if scale == 0:
        return None
    index = permutations.of(blocks)
    statistic = rank_y[index] @ rank_x
    p_perm, p_perm_against = permutation_p(statistic, sign)
    return RankTrend(float(statistic[0] / scale), p_perm, p_perm_against, len(y))


def partial_residuals(
    y: np.ndarray, x: np.ndarray, blocks: np.ndarray, covariates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` with the seeds (and covariates) projected out: their least-squares
    slope is the blocked slope of ``blocked_fit`` (Frisch-Waugh-Lovell), so the pairs are
    what an added-variable plot of that fit shows."""
    q = np.linalg.qr(design(np.asarray(blocks), covariates))[0]
    x, y = np.asarray(x, float), np.asarray(y, float)
    return x - q @ (q.T @ x), y - q @ (q.T @ y)
