"""Tests for gcstudy.metrics.bound: arithmetic, validity on Gaussian classes, Poincare step."""

import math

import numpy as np
import pytest
import torch

from gcstudy.metrics.bound import _top_eigenvalue_gram, ncc_bound, poincare_constants
from gcstudy.metrics.collapse import class_stats, geometric_collapse, ncc_error, neural_collapse
from gcstudy.metrics.fewshot import fewshot_eval


def test_ncc_bound_arithmetic():
    b = ncc_bound(5, nc=0.01)
    assert b.cdnv == pytest.approx(4 * 4 * 0.01) and b.gc is None
    b = ncc_bound(3, nc=0.02, geometric_collapse=0.5, poincare_constant=0.1)
    assert b.cdnv == pytest.approx(4 * 2 * 0.02)
    assert b.gc == pytest.approx(4 * 2 * 0.1 * 0.5)
    assert b.poincare_constant == pytest.approx(0.1)
    b = ncc_bound(3, nc=0.02, geometric_collapse=0.5, poincare_constant=0.1, shots=5)
    assert b.cdnv == pytest.approx(8 * 0.02 * 1.2) and b.gc == pytest.approx(8 * 0.05 * 1.2)
    assert b.shots == 5
    # per-class constants: the maximum is used
    b = ncc_bound(2, geometric_collapse=1.0, poincare_constant=torch.tensor([0.2, 0.7, 0.1]))
    assert b.gc == pytest.approx(4 * 0.7) and b.cdnv is None
    assert ncc_bound(2, geometric_collapse=1.0, poincare_constant=[0.3, 0.2]).gc == pytest.approx(
        1.2
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1, "nc": 0.1}, "num_classes"),
        ({"num_classes": 2.5, "nc": 0.1}, "num_classes"),
        ({"num_classes": 3, "nc": -0.1}, "nc"),
        ({"num_classes": 3, "geometric_collapse": 0.1}, "poincare_constant"),
        ({"num_classes": 3, "geometric_collapse": -1.0, "poincare_constant": 1.0}, "geometric"),
        ({"num_classes": 3, "geometric_collapse": 1.0, "poincare_constant": -1.0}, "poincare"),
        ({"num_classes": 3, "geometric_collapse": 1.0, "poincare_constant": [1.0, -2]}, "poinc"),
        ({"num_classes": 3, "nc": 0.1, "shots": 0}, "shots"),
    ],
)
def test_ncc_bound_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ncc_bound(**kwargs)


def test_ncc_bound_propagates_nan_measurements():
    """A diverged network measures NaN collapse: its bound is NaN, not an error."""
    bound = ncc_bound(3, nc=float("nan"), geometric_collapse=float("nan"), poincare_constant=2.0)
    assert math.isnan(bound.cdnv) and math.isnan(bound.gc)
    assert ncc_bound(3, nc=0.5).cdnv == pytest.approx(4 * 2 * 0.5)


def _gaussian_classes(num, d, sep, n_per_class, seed, ids=None):
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((num, d))
    scales = rng.uniform(0.5, 1.5, size=(num, d))
    ids = list(range(num)) if ids is None else ids

    def sample(n, r):
        x = np.concatenate([means[c] + scales[c] * r.standard_normal((n, d)) for c in range(num)])
        y = np.repeat(ids, n)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    return sample(n_per_class, rng), sample(4 * n_per_class, np.random.default_rng(seed + 100))


@pytest.mark.parametrize(
    ("num", "d", "sep"),
    [(2, 2, 2.0), (2, 2, 4.0), (3, 4, 3.0), (5, 8, 3.0), (5, 8, 6.0), (10, 16, 4.0), (10, 16, 8.0)],
)
def test_cdnv_bound_is_above_ncc_test_error(num, d, sep):
    (xtr, ytr), (xte, yte) = _gaussian_classes(num, d, sep, 400, seed=num * 10 + int(sep))
    nc = neural_collapse(xtr, ytr).value
    bound = ncc_bound(num, nc=nc).cdnv
    err = ncc_error(xtr, ytr, xte, yte)
    assert err <= bound


@pytest.mark.parametrize(
    ("means", "ids"),
    [
        ([[0.0, 0.0], [5.0, 0.0]], [4, 9]),  # bound ~0.32, error ~Phi(-2.5) = 0.6 %
        ([[0.0, 0.0], [6.0, 0.0], [3.0, 5.2]], [1, 5, 6]),  # bound ~0.44, error ~0.3 %
    ],
)
def test_cdnv_bound_nonvacuous_with_nonzero_error(means, ids):
    rng = np.random.default_rng(14)
    means = np.asarray(means)

    def sample(n):
        x = np.concatenate([m + rng.standard_normal((n, 2)) for m in means])
        return torch.tensor(x), torch.tensor(np.repeat(ids, n))

    (xtr, ytr), (xte, yte) = sample(2000), sample(4000)
    bound = ncc_bound(len(ids), nc=neural_collapse(xtr, ytr).value).cdnv
    err = ncc_error(xtr, ytr, xte, yte)
    assert 0.0 < err <= bound < 1.0


def _chebyshev_extremal_classes(pairs, p, n, seed, gap=1.05, noise=0.01):
    """``2 * pairs`` classes in 2-D on which Chebyshev and the union bound are nearly
    tight: the classes of a pair have centres 1 apart along e1 (pairs 100 apart); each
    example sits, up to a little noise, either at a bulk point away from the partner class
    (probability 1 - p) or just past the midpoint towards it (probability p, offset
    ``gap / 2``), the bulk offset chosen so that the class mean stays at the centre."""
    rng = np.random.default_rng(seed)
    out, bulk = gap / 2, p * gap / 2 / (1 - p)
    xs, ys = [], []
    for k in range(pairs):
        for side, centre in ((1.0, 100.0 * k), (-1.0, 100.0 * k + 1.0)):
            along = centre + side * np.where(rng.random(n) < p, out, -bulk)
            xs.append(np.stack([along, np.zeros(n)], axis=1) + noise * rng.standard_normal((n, 2)))
            ys.append(np.full(n, len(ys)))
    return torch.tensor(np.concatenate(xs)), torch.tensor(np.concatenate(ys))


@pytest.mark.parametrize(("pairs", "p"), [(1, 0.1), (1, 0.25), (2, 0.2), (3, 0.15)])
def test_bounds_hold_where_they_are_nearly_tight(pairs, p):
    """NCC error about p (the outliers) against bounds of about p / (1 - p) * gap^2: both
    bounds hold, and each is less than twice the error, so a constant 2x too small fails.
    The GC form uses f(x) = x_1 (GC = 1 exactly for every class) and the Gaussian-proxy
    Poincare constant of the inputs, which the variance along e1 attains."""
    num = 2 * pairs
    xtr, ytr = _chebyshev_extremal_classes(pairs, p, 2000, seed=pairs)
    xte, yte = _chebyshev_extremal_classes(pairs, p, 4000, seed=pairs + 50)
    h, h_test = xtr[:, :1], xte[:, :1]
    err = ncc_error(h, ytr, h_test, yte)
    gcol = geometric_collapse(torch.ones(num, dtype=torch.float64), class_stats(h, ytr).means)
    _, constants = poincare_constants(xtr, ytr)
    bound = ncc_bound(
        num, nc=neural_collapse(h, ytr).value, geometric_collapse=gcol.value,
        poincare_constant=constants,
    )  # fmt: skip
    assert err > 0.09
    assert err <= bound.cdnv < 2 * err
    assert err <= bound.gc < 2 * err
    assert ncc_error(xtr, ytr, xte, yte) <= ncc_bound(num, nc=neural_collapse(xtr, ytr).value).cdnv


def test_fewshot_bound_is_above_fewshot_error():
    (x, y), _ = _gaussian_classes(5, 8, 5.0, 60, seed=11, ids=[3, 9, 12, 20, 41])
    nc = neural_collapse(x, y).value
    for shots in (1, 5):
        res = fewshot_eval(x, y, ways=5, shots=shots, queries=15, episodes=500, seed=1)
        bound = ncc_bound(5, nc=nc, shots=shots).cdnv
        assert 1.0 - res.accuracy <= bound
        assert bound == pytest.approx(ncc_bound(5, nc=nc).cdnv * (1 + 1 / shots))


def test_poincare_step_for_linear_map_and_gc_bound_dominates():
    rng = np.random.default_rng(12)
    dim_in, dim_out, n = 12, 5, 300
    ids = [2, 7, 19]
    xs, ys = [], []
    for k, c in enumerate(ids):
        mix = rng.standard_normal((dim_in, dim_in)) * (0.3 + 0.4 * k)
        xs.append(3.0 * rng.standard_normal(dim_in) + rng.standard_normal((n, dim_in)) @ mix.T)
        ys.append(np.full(n, c))
    x = torch.tensor(np.concatenate(xs))
    y = torch.tensor(np.concatenate(ys))
    a = torch.tensor(rng.standard_normal((dim_out, dim_in)))
    h = x @ a.T  # f(x) = A x, so GC_c = ||A||_F^2 exactly for every class
    gc_value = float(a.square().sum())
    stats = class_stats(h, y)
    classes, consts = poincare_constants(x, y)
    assert classes.tolist() == ids
    # Var_c = tr(A S_c A^T) <= lambda_max(S_c) ||A||_F^2 holds exactly for sample quantities
    for k in range(len(ids)):
        assert stats.variances[k].item() <= consts[k].item() * gc_value * (1 + 1e-12)
    gcol = geometric_collapse(torch.full((3,), gc_value), stats.means).value
    nc = neural_collapse(h, y).value
    assert nc <= consts.max().item() * gcol * (1 + 1e-12)
    b = ncc_bound(3, nc=nc, geometric_collapse=gcol, poincare_constant=consts)
    assert b.gc >= b.cdnv


def _oracle_constants(x, y):
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    out = []
    for c in sorted(set(y.tolist())):
        rows = flat[y == c]
        cov = np.cov(rows, rowvar=False, bias=True) if len(rows) > 1 else np.zeros((1, 1))
        out.append(float(np.linalg.eigvalsh(np.atleast_2d(cov))[-1]))
    return out


def test_poincare_constants_match_eigvalsh():
    rng = np.random.default_rng(13)
    sizes = {5: 10, 8: 200, 13: 1}  # n < D, n > D, a single example
    xs, ys = [], []
    for c, n in sizes.items():
        scale = rng.uniform(0.1, 2.0, size=48)
        xs.append(rng.standard_normal((n, 3, 4, 4)) * scale.reshape(3, 4, 4) + c)
        ys.append(np.full(n, c))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys)
    classes, consts = poincare_constants(torch.tensor(x), torch.tensor(y))
    assert classes.tolist() == [5, 8, 13]
    assert consts.dtype == torch.float64
    expected = _oracle_constants(x, y)
    np.testing.assert_allclose(consts.numpy(), expected, rtol=1e-9, atol=1e-12)
    assert consts[2].item() == 0.0


def test_top_eigenvalue_flat_spectrum_and_large_offset():
    g = torch.Generator().manual_seed(0)
    # slowly decaying spectrum with near-degenerate top: the Krylov iteration must still
    # converge to the exact top eigenvalue
    scales = torch.linspace(1.0, 0.95, 150, dtype=torch.float64)
    x = torch.randn(400, 150, generator=g, dtype=torch.float64) * scales
    x = x - x.mean(0)
    exact = torch.linalg.eigvalsh(x.T @ x)[-1].item()
    assert math.isclose(_top_eigenvalue_gram(x), exact, rel_tol=1e-9)
    # class inputs with a large offset: centring is done in float64
    y = torch.zeros(400, dtype=torch.int64)
    _, consts = poincare_constants(x + 1e6, y)
    assert math.isclose(consts.item(), exact / 400, rel_tol=1e-8)
    assert _top_eigenvalue_gram(torch.zeros(5, 4, dtype=torch.float64)) == 0.0
