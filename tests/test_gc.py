"""Geometric complexity: exact values against oracles, unbiasedness and reported errors."""

import math

import pytest
import torch

from gcstudy.metrics.gc import geometric_complexity, per_class_gc, per_example_gc
from gcstudy.models import build

# Each estimator with a setting that samples heavily (so its noise is clearly visible).
ESTIMATORS = {
    "hutchinson-rademacher": dict(method="hutchinson", probes=1),
    "hutchinson-gaussian": dict(method="hutchinson", probes=2, probe="gaussian"),
    "outputs": dict(method="outputs", outputs=2),
    "mask-input": dict(method="mask", rate=0.25),
    "mask-entry": dict(method="mask", rate=0.25, mask_unit="entry"),
}


def mlp(seed: int = 0, d: int = 6, hidden: int = 16, p: int = 5) -> torch.nn.Module:
    """A small tanh MLP in float64: its Jacobian varies strongly from example to example."""
    torch.manual_seed(seed)
    return (
        torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, p))
        .double()
        .eval()
    )


def jacobian_oracle(f, x: torch.Tensor) -> torch.Tensor:
    """||J_f(x_i)||_F^2 per example, one torch.autograd.functional.jacobian call each."""
    single = lambda xi: f(xi.unsqueeze(0)).squeeze(0)  # noqa: E731
    return torch.stack(
        [torch.autograd.functional.jacobian(single, xi).double().square().sum() for xi in x]
    )


def test_linear_map_gc_is_squared_frobenius_norm():
    torch.manual_seed(0)
    a = torch.randn(9, 14, dtype=torch.float64)
    x = torch.randn(11, 14, dtype=torch.float64)
    estimate = geometric_complexity(lambda z: z @ a.T, x, "exact", chunk_size=4)
    assert estimate.value == pytest.approx(a.square().sum().item(), rel=1e-6)
    assert estimate.n == 11 and estimate.stderr == pytest.approx(0, abs=1e-9)


def test_exact_gc_of_mlp_matches_per_example_jacobian():
    model = mlp()
    x = torch.randn(13, 6, dtype=torch.float64)
    per_example = per_example_gc(model, x, "exact", batch_size=5, chunk_size=2)
    torch.testing.assert_close(per_example, jacobian_oracle(model, x), rtol=1e-10, atol=0)


def test_exact_gc_of_narrow_vgg11_matches_per_example_jacobian():
    torch.manual_seed(1)
    model = build("vgg11", num_classes=10, width=0.125)
    model.train()
    model(torch.randn(16, 3, 32, 32))  # move BatchNorm running statistics off their init
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    per_example = per_example_gc(model.embed, x, "exact", chunk_size=16)
    torch.testing.assert_close(per_example, jacobian_oracle(model.embed, x), rtol=1e-5, atol=0)


def test_measurement_builds_no_parameter_gradients():
    model = build("vgg11", num_classes=10, width=0.125).eval()
    for settings in ESTIMATORS.values():
        estimate = geometric_complexity(model.embed, torch.randn(2, 3, 32, 32), **settings)
        assert not estimate.per_example.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_chunking_does_not_change_exact_values():
    model = mlp(seed=3)
    x = torch.randn(10, 6, dtype=torch.float64)
    whole = per_example_gc(model, x, "exact", batch_size=64, chunk_size=64)
    chunked = per_example_gc(model, x, "exact", batch_size=3, chunk_size=1)
    torch.testing.assert_close(whole, chunked, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimator_is_unbiased_on_a_fixed_sample(name):
    """200 independent estimates on one batch: their mean is within 3 standard errors (of the
    mean of 200) of the exact GC of that batch."""
    model = mlp(seed=2)
    x = torch.randn(16, 6, dtype=torch.float64)
    exact = geometric_complexity(model, x, "exact").value
    values = torch.tensor(
        [
            geometric_complexity(model, x, generator=seed, **ESTIMATORS[name]).value
            for seed in range(200)
        ]
    )
    assert values.std() > 0.01 * exact  # the estimator really is random here
    assert abs(values.mean().item() - exact) < 3 * values.std().item() / math.sqrt(200)


@pytest.mark.parametrize("name", [*ESTIMATORS, "exact"])
def test_reported_stderr_matches_spread_over_samples(name):
    """x is an i.i.d. sample (with replacement) of a pool of 256 examples: the estimates of
    the pool's GC are unbiased and their spread equals the reported standard error."""
    model = mlp(seed=4)
    pool = torch.randn(256, 6, dtype=torch.float64) * 1.5
    truth = geometric_complexity(model, pool, "exact").value
    sampler = torch.Generator().manual_seed(0)
    settings = ESTIMATORS.get(name, dict(method="exact"))
    estimates = [
        geometric_complexity(
            model, pool[torch.randint(256, (32,), generator=sampler)], generator=seed, **settings
        )
        for seed in range(200)
    ]
    values = torch.tensor([e.value for e in estimates])
    reported = torch.tensor([e.stderr for e in estimates]).mean().item()
    observed = values.std().item()
    assert abs(values.mean().item() - truth) < 3 * observed / math.sqrt(200)
    assert 0.8 < reported / observed < 1.25


def test_same_seed_same_estimate_whatever_the_global_state():
    model = mlp()
    x = torch.randn(8, 6, dtype=torch.float64)
    for settings in ESTIMATORS.values():
        torch.manual_seed(123)
        first = geometric_complexity(model, x, generator=7, **settings).value
        torch.manual_seed(456)
        torch.rand(1000)
        again = geometric_complexity(
            model, x, generator=torch.Generator().manual_seed(7), **settings
        ).value
        other = geometric_complexity(model, x, generator=8, **settings).value
        assert first == again
        assert first != other


def test_per_class_gc_with_non_contiguous_labels():
    model = mlp()
    x = torch.randn(12, 6, dtype=torch.float64)
    labels = torch.tensor([7, 3, 7, 3, 11, 7, 3, 11, 11, 7, 3, 7])
    result = per_class_gc(model, x, labels, "exact")
    oracle = jacobian_oracle(model, x)
    assert result.classes.tolist() == [3, 7, 11]
    assert result.n.tolist() == [4, 5, 3]
    for k, label in enumerate([3, 7, 11]):
        assert result.value[k].item() == pytest.approx(oracle[labels == label].mean().item())
        members = oracle[labels == label]
        assert result.stderr[k].item() == pytest.approx(members.std().item() / len(members) ** 0.5)


def test_bad_arguments_are_refused_with_names():
    model = mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown GC method 'jvp'"):
        geometric_complexity(model, x, "jvp")
    with pytest.raises(ValueError, match="probes must be an integer >= 1"):
        geometric_complexity(model, x, "hutchinson", probes=0)
    with pytest.raises(ValueError, match="outputs = rows per example"):
        geometric_complexity(model, x, "outputs")
    with pytest.raises(ValueError, match="outputs = 9 rows per example, but f has only 5"):
        geometric_complexity(model, x, "outputs", outputs=9)
    with pytest.raises(ValueError, match=r"rate in \(0, 1\]"):
        geometric_complexity(model, x, "mask", rate=1.5)
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        geometric_complexity(model.train(), x, "exact")
