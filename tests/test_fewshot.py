"""Tests for gcstudy.metrics.fewshot: oracles, chance level, determinism, sampling."""

import math

import numpy as np
import pytest
import torch

from gcstudy.metrics import fewshot
from gcstudy.metrics.fewshot import fewshot_eval, sample_episodes


def _clusters(ids, n_per_class, d, sep, seed, noise=1.0):
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((len(ids), d))
    counts = [n_per_class] * len(ids) if isinstance(n_per_class, int) else n_per_class
    x = np.concatenate(
        [means[k] + noise * rng.standard_normal((n, d)) for k, n in enumerate(counts)]
    )
    y = np.repeat(ids, counts)
    perm = rng.permutation(len(y))
    return torch.tensor(x[perm], dtype=torch.float32), torch.tensor(y[perm])


IDS = [3, 7, 11, 20, 21, 40, 41, 99]


@pytest.mark.parametrize("classifier", ["ncc", "logreg"])
@pytest.mark.parametrize("normalize", [False, True])
def test_separated_clusters_are_solved(classifier, normalize):
    x, y = _clusters(IDS, 30, d=16, sep=10.0, seed=0, noise=0.3)
    res = fewshot_eval(
        x,
        y,
        ways=5,
        shots=1,
        queries=10,
        episodes=200,
        classifier=classifier,
        normalize=normalize,
    )
    assert res.accuracy == 1.0
    assert res.per_episode.shape == (200,)
    assert (res.episodes, res.ways, res.shots, res.queries) == (200, 5, 1, 10)
    assert res.classifier == classifier and res.normalize == normalize


def test_chance_level_within_reported_ci():
    # Features independent of the labels: averaged over pools, E[accuracy] = 1 / ways
    # exactly (support and query are distinct i.i.d. examples). The reported CI covers the
    # episode sampling only, not the finite pool's own deviation from chance (sd ~0.003
    # for 40 examples per class), so the pool is large enough to make that negligible.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10 * 1000, 8, generator=g)
    y = torch.arange(10).repeat(1000) * 3 + 1
    for ways, classifier, episodes in [(5, "ncc", 3000), (4, "ncc", 3000), (5, "logreg", 500)]:
        res = fewshot_eval(
            x, y, ways=ways, shots=2, queries=5, episodes=episodes, seed=3, classifier=classifier
        )
        stderr = res.ci95 / 1.96
        assert abs(res.accuracy - 1.0 / ways) < 3 * stderr
        expected_ci = 1.96 * np.std(res.per_episode.numpy(), ddof=1) / math.sqrt(episodes)
        assert res.ci95 == pytest.approx(expected_ci)
        assert res.accuracy == pytest.approx(res.per_episode.mean().item())


def test_deterministic_regardless_of_global_rng_and_seed_matters():
    x, y = _clusters(IDS, 25, d=6, sep=1.0, seed=2)
    torch.manual_seed(123)
    a = fewshot_eval(x, y, shots=1, queries=5, episodes=300, seed=7)
    torch.manual_seed(999)
    torch.rand(1000)
    b = fewshot_eval(x, y, shots=1, queries=5, episodes=300, seed=7)
    c = fewshot_eval(x, y, shots=1, queries=5, episodes=300, seed=8)
    assert torch.equal(a.per_episode, b.per_episode)
    assert not torch.equal(a.per_episode, c.per_episode)
    e1 = sample_episodes(y, shots=1, queries=5, episodes=50, seed=7)
    torch.manual_seed(5)
    e2 = sample_episodes(y, shots=1, queries=5, episodes=50, seed=7)
    assert torch.equal(e1.support, e2.support) and torch.equal(e1.query, e2.query)


def test_episodes_are_valid_and_disjoint():
    counts = [12, 30, 9, 15, 40, 10]
    ids = [2, 5, 8, 21, 34, 42]
    _, y = _clusters(ids, counts, d=2, sep=1.0, seed=3)
    ways, shots, queries, episodes = 3, 3, 6, 2000
    eps = sample_episodes(y, ways=ways, shots=shots, queries=queries, episodes=episodes, seed=4)
    assert eps.classes.tolist() == ids
    assert eps.support.shape == (episodes, ways, shots)
    assert eps.query.shape == (episodes, ways, queries)
    assert eps.episode_classes.shape == (episodes, ways)
    rows = torch.cat([eps.support, eps.query], dim=2)
    assert int(rows.min()) >= 0 and int(rows.max()) < len(y)
    # every row belongs to the episode's class; classes distinct; rows distinct per episode
    expect = eps.classes[eps.episode_classes].unsqueeze(-1).expand_as(rows)
    assert torch.equal(y[rows], expect)
    sorted_classes = eps.episode_classes.sort(dim=1).values
    assert (sorted_classes[:, 1:] != sorted_classes[:, :-1]).all()
    flat = rows.reshape(episodes, -1).sort(dim=1).values
    assert (flat[:, 1:] != flat[:, :-1]).all()  # support and query never share an example
    # uniformity: each class is chosen with probability ways / C = 1/2
    freq = torch.bincount(eps.episode_classes.reshape(-1), minlength=len(ids)).double()
    sd = math.sqrt(episodes * 0.25)
    assert ((freq - episodes / 2).abs() < 5 * sd).all()
    # within a class every example is used with the same probability (n_use / count)
    usage = torch.bincount(rows.reshape(-1), minlength=len(y)).double()
    for k, c in enumerate(ids):
        members = usage[y == c]
        p = (shots + queries) / counts[k]
        mean = freq[k].item() * p
        sd_k = math.sqrt(freq[k].item() * p * (1 - p)) + 1e-9
        assert ((members - mean).abs() < 5 * sd_k + 1e-9).all(), c


@pytest.mark.parametrize("small_chunks", [False, True])
def test_ncc_matches_brute_force_on_sampled_episodes(small_chunks, monkeypatch):
    if small_chunks:  # several sampling chunks and evaluation sub-chunks
        monkeypatch.setattr(fewshot, "_MAX_CHUNK", 7)
        monkeypatch.setattr(fewshot, "_FEATURE_BUDGET", 3 * 4 * 7 * 5)
    x, y = _clusters([0, 4, 6, 13, 17, 18], 20, d=5, sep=0.8, seed=5)
    eps = sample_episodes(y, ways=4, shots=3, queries=4, episodes=60, seed=9)
    xn = x.numpy().astype(np.float64)
    for normalize in (False, True):
        feats = xn / np.linalg.norm(xn, axis=1, keepdims=True) if normalize else xn
        expected = []
        for e in range(60):
            protos = [feats[eps.support[e, w].numpy()].mean(0) for w in range(4)]
            correct = 0
            for w in range(4):
                for q in eps.query[e, w].numpy():
                    dists = [float(np.sum((feats[q] - p) ** 2)) for p in protos]
                    correct += int(np.argmin(dists)) == w
            expected.append(correct / 16)
        res = fewshot_eval(
            x, y, ways=4, shots=3, queries=4, episodes=60, seed=9, normalize=normalize
        )
        np.testing.assert_allclose(res.per_episode.numpy(), expected, atol=1e-12)
    assert 0.3 < res.accuracy < 1.0


def test_large_offset_does_not_change_ncc_decisions():
    x, y = _clusters(IDS, 20, d=4, sep=1.0, seed=6)
    x = x.double()
    a = fewshot_eval(x, y, shots=2, queries=5, episodes=200)
    b = fewshot_eval(x + 1e7, y, shots=2, queries=5, episodes=200)
    assert torch.equal(a.per_episode, b.per_episode)


def test_logreg_matches_sklearn_probe_at_its_default_iterations(monkeypatch):
    """The probe at its defaults (l2 1e-2, 100 accelerated steps) against sklearn run to
    convergence, per episode. Classes of very different spreads make the intercept matter:
    here a probe that never fits it differs by up to 19 of an episode's 80 queries and by
    0.025 on average (measured); the fitted one by none."""
    from sklearn.linear_model import LogisticRegression

    # several sampling chunks and evaluation sub-chunks
    monkeypatch.setattr(fewshot, "_MAX_CHUNK", 5)
    monkeypatch.setattr(fewshot, "_FEATURE_BUDGET", 2 * 4 * 25 * 6)

    rng = np.random.default_rng(0)
    spreads = [0.1, 3.0, 0.1, 3.0, 0.2, 2.5, 0.15, 2.0]
    means = rng.standard_normal((len(spreads), 6))
    x = np.concatenate(
        [m + s * rng.standard_normal((60, 6)) for m, s in zip(means, spreads, strict=True)]
    )
    y = torch.tensor(np.repeat(IDS, 60))
    ways, shots, queries, episodes, l2 = 4, 5, 20, 30, 1e-2
    protocol = dict(ways=ways, shots=shots, queries=queries, episodes=episodes, seed=2)
    res = fewshot_eval(torch.tensor(x, dtype=torch.float32), y, classifier="logreg", **protocol)
    eps = sample_episodes(y, **protocol)
    x = x.astype(np.float32).astype(np.float64)
    expected = []
    for e in range(episodes):
        sup = x[eps.support[e].reshape(-1).numpy()]
        mean = sup.mean(0)
        rms = np.sqrt(np.mean(np.sum((sup - mean) ** 2, axis=1)))
        clf = LogisticRegression(C=1.0 / (l2 * ways * shots), tol=1e-10, max_iter=10000)
        clf.fit((sup - mean) / rms, np.repeat(np.arange(ways), shots))
        pred = clf.predict((x[eps.query[e].reshape(-1).numpy()] - mean) / rms)
        expected.append(float(np.mean(pred == np.repeat(np.arange(ways), queries))))
    difference = np.abs(res.per_episode.numpy() - expected)
    assert difference.max() <= 0.025  # at most 2 of an episode's 80 queries
    assert difference.mean() <= 0.005


def test_errors_name_classes_and_counts():
    x, y = _clusters([1, 2, 7, 9], [20, 20, 3, 5], d=3, sep=1.0, seed=8)
    with pytest.raises(ValueError, match=r"class 7 has 3, class 9 has 5"):
        fewshot_eval(x, y, ways=2, shots=1, queries=5, episodes=10)
    with pytest.raises(ValueError, match=r"at least 5 classes, got 4"):
        fewshot_eval(x, y, ways=5, shots=1, queries=2, episodes=10)
    with pytest.raises(ValueError, match="classifier"):
        fewshot_eval(x, y, ways=2, shots=1, queries=2, classifier="svm")
    with pytest.raises(ValueError, match="ways"):
        fewshot_eval(x, y, ways=1, shots=1, queries=2)
    with pytest.raises(ValueError, match="shots"):
        sample_episodes(y, ways=2, shots=0, queries=2)
    with pytest.raises(ValueError, match="episodes"):
        fewshot_eval(x, y, ways=2, shots=1, queries=2, episodes=0)
    with pytest.raises(ValueError, match="one entry per example"):
        fewshot_eval(x, y[:-1], ways=2, shots=1, queries=2)
    with pytest.raises(TypeError, match="integer"):
        sample_episodes(y.float(), ways=2, shots=1, queries=2)
    with pytest.raises(ValueError, match="logreg_l2"):
        fewshot_eval(x, y, ways=2, shots=1, queries=2, classifier="logreg", logreg_l2=0.0)
