"""Oracle tests for gcstudy.metrics.collapse (independent numpy loops, not re-derivations)."""

import math

import numpy as np
import pytest
import torch

from gcstudy.metrics import collapse
from gcstudy.metrics.collapse import (
    cdnv,
    class_stats,
    geometric_collapse,
    nc1,
    ncc_error,
    neural_collapse,
)


def _clusters(sizes, labels_ids, d, sep, seed, dtype=torch.float32, offset=0.0):
    """Gaussian clusters with class-dependent anisotropic spread, shuffled order."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, (n, c) in enumerate(zip(sizes, labels_ids, strict=True)):
        mean = sep * rng.standard_normal(d)
        scale = (0.5 + k) * rng.uniform(0.5, 1.5, size=d)
        xs.append(mean + scale * rng.standard_normal((n, d)))
        ys.append(np.full(n, c))
    x = np.concatenate(xs) + offset
    y = np.concatenate(ys)
    perm = rng.permutation(len(y))
    return torch.tensor(x[perm], dtype=dtype), torch.tensor(y[perm], dtype=torch.int64)


def _oracle_stats(x, y):
    """Per-class (id, count, mean, population variance) with explicit numpy loops."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    out = []
    for c in sorted(set(y.tolist())):
        rows = x[y == c]
        mean = np.zeros(x.shape[1])
        for r in rows:
            mean += r
        mean /= len(rows)
        var = 0.0
        for r in rows:
            var += float(np.sum((r - mean) ** 2))
        out.append((c, len(rows), mean, var / len(rows)))
    return out


def _oracle_pairs(spreads, means):
    num = len(spreads)
    pairs = np.full((num, num), np.nan)
    vals = []
    for i in range(num):
        for j in range(num):
            if i != j:
                dist2 = float(np.sum((means[i] - means[j]) ** 2))
                pairs[i, j] = (spreads[i] + spreads[j]) / (2 * dist2)
                if i < j:
                    vals.append(pairs[i, j])
    return pairs, float(np.mean(vals))


@pytest.mark.parametrize("chunk", [None, 7])
def test_class_stats_matches_loop_oracle_noncontiguous_labels(chunk, monkeypatch):
    if chunk is not None:  # exercise the chunked two-pass path (classes > chunk rows)
        monkeypatch.setattr(collapse, "_CHUNK", chunk)
    x, y = _clusters([50, 80, 120], [3, 7, 11], d=6, sep=4.0, seed=0)
    stats = class_stats(x, y)
    oracle = _oracle_stats(x.numpy(), y.numpy())
    assert stats.classes.tolist() == [3, 7, 11]
    assert stats.classes.dtype == torch.int64
    assert stats.counts.tolist() == [50, 80, 120]
    assert stats.means.dtype == torch.float64 and stats.variances.dtype == torch.float64
    assert stats.means.shape == (3, 6)
    for k, (_, _, mean, var) in enumerate(oracle):
        np.testing.assert_allclose(stats.means[k].numpy(), mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats.variances[k].item(), var, rtol=1e-12)


def test_class_stats_invariant_to_example_order():
    x, y = _clusters([30, 40], [5, 9], d=4, sep=3.0, seed=1, dtype=torch.float64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    a, b = class_stats(x, y), class_stats(x[perm], y[perm])
    torch.testing.assert_close(a.means, b.means, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(a.variances, b.variances, rtol=1e-13, atol=0)


def test_neural_collapse_matches_pairwise_oracle():
    x, y = _clusters([40, 60, 25, 90], [2, 5, 8, 21], d=5, sep=3.0, seed=2)
    res = neural_collapse(x, y)
    oracle = _oracle_stats(x.numpy(), y.numpy())
    spreads = [o[3] for o in oracle]
    means = [o[2] for o in oracle]
    pairs, value = _oracle_pairs(spreads, means)
    assert res.classes.tolist() == [2, 5, 8, 21]
    assert res.pairs.shape == (4, 4)
    assert torch.isnan(res.pairs.diagonal()).all()
    np.testing.assert_allclose(res.pairs.numpy(), pairs, rtol=1e-10)
    assert math.isclose(res.value, value, rel_tol=1e-10)


def test_geometric_collapse_is_cdnv_with_gc_and_matches_oracle():
    x, y = _clusters([30, 30, 50], [4, 0, 9], d=3, sep=5.0, seed=3, dtype=torch.float64)
    stats = class_stats(x, y)
    gc = torch.tensor([0.7, 2.5, 1.1], dtype=torch.float64)
    res = geometric_collapse(gc, stats.means, classes=stats.classes)
    pairs, value = _oracle_pairs(gc.numpy(), stats.means.numpy())
    np.testing.assert_allclose(res.pairs.numpy(), pairs, rtol=1e-12)
    assert math.isclose(res.value, value, rel_tol=1e-12)
    assert res.classes.tolist() == [0, 4, 9]
    # with GC replaced by the variances it is exactly NC
    nc = neural_collapse(x, y)
    assert geometric_collapse(stats.variances, stats.means).value == pytest.approx(nc.value)


def test_cdnv_validation():
    means = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="non-negative"):
        cdnv(torch.tensor([1.0, -0.1, 2.0]), means)
    with pytest.raises(ValueError, match="shape"):
        cdnv(torch.tensor([1.0, 2.0]), means)
    with pytest.raises(ValueError, match="at least 2 classes"):
        cdnv(torch.tensor([1.0]), means[:1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        neural_collapse(torch.randn(5, 3), torch.full((5,), 7))


@pytest.mark.parametrize(
    ("dtype", "offset", "spread"),
    [(torch.float64, 1e8, 1e-2), (torch.float32, 1e4, 1e-1)],
)
def test_two_pass_variance_survives_large_common_offset(dtype, offset, spread):
    rng = np.random.default_rng(4)
    d = 16
    y = np.repeat([3, 8], [200, 300])
    small = spread * rng.standard_normal((len(y), d))
    small[y == 8] += 5 * spread
    h = torch.tensor(small + offset, dtype=dtype)  # the data as stored
    # direct computation on the exactly centred stored values (h - offset is exact here)
    centred = h.to(torch.float64).numpy() - offset
    oracle = _oracle_stats(centred, y)
    stats = class_stats(h, torch.tensor(y))
    for k, (_, _, _, var) in enumerate(oracle):
        assert math.isclose(stats.variances[k].item(), var, rel_tol=1e-6)
    # the naive E||h||^2 - ||E h||^2 formula in the input dtype is badly wrong here
    rows = h[torch.tensor(y) == 3]
    naive = (rows.square().sum(1).mean() - rows.mean(0).square().sum()).item()
    assert abs(naive - oracle[0][3]) > 0.5 * oracle[0][3]
    nc = neural_collapse(h, torch.tensor(y))
    _, value = _oracle_pairs([o[3] for o in oracle], [o[2] for o in oracle])
    assert math.isclose(nc.value, value, rel_tol=1e-6)


def _nc1_oracle(x, y):
    x = np.asarray(x, dtype=np.float64)
    classes = sorted(set(y.tolist()))
    num = len(classes)
    means = np.stack([x[y == c].mean(0) for c in classes])
    mu_bar = means.mean(0)
    d = x.shape[1]
    sw = np.zeros((d, d))
    for i in range(len(y)):
        dev = x[i] - means[classes.index(y[i])]
        sw += np.outer(dev, dev)
    sw /= len(y)
    sb = np.zeros((d, d))
    for c in range(num):
        dev = means[c] - mu_bar
        sb += np.outer(dev, dev)
    sb /= num
    return float(np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10))) / num


@pytest.mark.parametrize(
    ("sizes", "ids", "chunk"),
    [([60, 80, 40, 100], [1, 6, 9, 30], None), ([50, 90], [4, 2], None), ([30, 45], [1, 0], 8)],
)
def test_nc1_matches_pinv_oracle_unbalanced(sizes, ids, chunk, monkeypatch):
    if chunk is not None:
        monkeypatch.setattr(collapse, "_CHUNK", chunk)
    x, y = _clusters(sizes, ids, d=10, sep=4.0, seed=5, dtype=torch.float64)
    value = nc1(x, y)
    assert math.isclose(value, _nc1_oracle(x.numpy(), y.numpy()), rel_tol=1e-8)


def test_nc1_is_stable_under_tiny_perturbation_and_offset():
    x, y = _clusters([50, 70, 60], [0, 3, 5], d=20, sep=4.0, seed=6, dtype=torch.float64)
    base = nc1(x, y)
    noise = 1e-9 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    assert math.isclose(nc1(x + noise, y), base, rel_tol=1e-6)
    # translation invariant (mu_bar = mean of class means), also in float32 storage
    assert math.isclose(nc1(x + 1e3, y), base, rel_tol=1e-6)
    assert math.isclose(nc1(x.float(), y), base, rel_tol=1e-4)
    # perfectly collapsed classes: NC1 = 0 exactly within rounding
    means = torch.randn(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    collapsed = means[torch.tensor([0, 1, 2]).repeat_interleave(10)]
    assert nc1(collapsed, torch.tensor([0, 1, 2]).repeat_interleave(10)) < 1e-20


def _ncc_oracle(xtr, ytr, xte, yte):
    classes = sorted(set(ytr.tolist()))
    means = [xtr[ytr == c].astype(np.float64).mean(0) for c in classes]
    wrong = 0
    for h, label in zip(xte.astype(np.float64), yte, strict=True):
        dists = [float(np.sum((h - m) ** 2)) for m in means]
        wrong += classes[int(np.argmin(dists))] != label
    return wrong / len(yte)


def test_ncc_error_matches_brute_force_and_chunking():
    xtr, ytr = _clusters([40, 50, 60], [10, 20, 15], d=5, sep=1.5, seed=7)
    xte, yte = _clusters([70, 30, 50], [10, 20, 15], d=5, sep=1.5, seed=7)
    xte = xte + 0.7 * torch.randn(xte.shape, generator=torch.Generator().manual_seed(3))
    expected = _ncc_oracle(xtr.numpy(), ytr.numpy(), xte.numpy(), yte.numpy())
    assert 0.0 < expected < 1.0
    assert ncc_error(xtr, ytr, xte, yte) == pytest.approx(expected, abs=1e-12)
    assert ncc_error(xtr, ytr, xte, yte, chunk_size=7) == pytest.approx(expected, abs=1e-12)
    # a huge common offset does not change the decisions (float64 features)
    off = 1e7
    assert ncc_error(xtr.double() + off, ytr, xte.double() + off, yte) == pytest.approx(
        expected, abs=1e-12
    )


def test_ncc_error_subset_of_training_classes_and_unknown_labels():
    xtr, ytr = _clusters([20, 20, 20], [1, 2, 3], d=3, sep=6.0, seed=8)
    keep = ytr != 2
    assert ncc_error(xtr, ytr, xtr[keep], ytr[keep]) == pytest.approx(
        _ncc_oracle(xtr.numpy(), ytr.numpy(), xtr[keep].numpy(), ytr[keep].numpy())
    )
    bad = ytr.clone()
    bad[0], bad[1] = 42, 0
    with pytest.raises(ValueError, match=r"\[0, 42\]"):
        ncc_error(xtr, ytr, xtr, bad)
    with pytest.raises(ValueError, match="d = "):
        ncc_error(xtr, ytr, xtr[:, :2], ytr)


def test_input_validation():
    x = torch.randn(6, 3)
    with pytest.raises(TypeError, match="integer"):
        class_stats(x, torch.zeros(6))
    with pytest.raises(ValueError, match="one entry per example"):
        class_stats(x, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="2-D"):
        class_stats(torch.randn(6), torch.zeros(6, dtype=torch.int64))
