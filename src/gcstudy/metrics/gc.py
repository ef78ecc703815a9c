"""Geometric complexity (GC) and its unbiased estimators (docs/science.md#gc-estimators).

For an embedding ``f: R^d -> R^p`` and a sample ``D`` of inputs,

    GC(f, D) = (1/|D|) * sum_{x in D} ||J_f(x)||_F^2,   J_f(x) = df(x)/dx  (p x d).

Every method first produces one unbiased estimate ``e_i`` of ``||J_f(x_i)||_F^2`` per example
(float64) and then averages over the examples:

* ``exact``: ``e_i = ||J_f(x_i)||_F^2`` from all p vector-Jacobian products (VJPs), batched
  with ``torch.func.vmap`` over chunks of output rows so that memory stays bounded.
* ``hutchinson``: ``e_i = (1/P) sum_k ||v_k^T J_f(x_i)||^2`` with P Rademacher or Gaussian
  probes ``v_k`` in output space (``E[v v^T] = I``); one batched VJP per probe.
* ``outputs``: ``e_i = (p/s) sum_{k in S_i} ||grad f_k(x_i)||^2`` over ``s`` output rows drawn
  uniformly without replacement; s VJPs.
* ``mask``: Jacobian masking. ``mask_unit="input"`` (default) keeps each input coordinate
  (a column of J) with probability ``q``: ``e_i = (1/q) sum_l m_l ||J_f(x_i)[:, l]||^2``,
  computed with one forward-mode JVP per kept coordinate, so it costs about ``q * d`` JVPs.
  ``mask_unit="entry"`` keeps each entry ``J_kl`` with probability ``q`` and rescales by
  ``1/q``; it needs the full Jacobian (the cost of ``exact``) and is offered to study the
  variance of the entry-wise estimator.

The reported ``stderr`` is ``std(e_i) / sqrt(N)``: the standard error of the mean over the N
examples. When ``x`` is an i.i.d. sample of the data, it covers both the sampling of
examples (example subsampling) and each method's own randomness, i.e. it is the
uncertainty of the estimate of the population GC. The per-example estimates use independent
randomness, so the formula is exact for every method.

Example subsampling against a fixed sample (the E2 study, docs/science.md#gc-estimators) is
``subsample``: the mean of b of the N exact per-example values drawn without replacement,
whose standard error about the GC of those N examples carries the finite-population
correction, ``s / sqrt(b) * sqrt(1 - b/N)``.

``f`` must be a per-example function: a module (or a bound method such as ``model.embed``)
in eval mode, so BatchNorm uses running statistics. No parameter gradients are built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.func import jvp, vjp, vmap

from gcstudy.study.factors import GC_METHODS

METHODS = GC_METHODS
PROBES = ("rademacher", "gaussian")
MASK_UNITS = ("input", "entry")

Embedding = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GCEstimate:
    """A GC estimate: ``value`` +/- ``stderr`` (squared output units per squared input unit)
    from ``n`` examples; ``per_example`` holds the N unbiased per-example estimates."""

    value: float
    stderr: float
    n: int
    method: str
    per_example: torch.Tensor = field(repr=False)


@dataclass(frozen=True)
class PerClassGC:
    """GC per class: ``classes`` (C sorted labels), ``value``, ``stderr`` and ``n`` (C each)."""

    classes: torch.Tensor
    value: torch.Tensor
    stderr: torch.Tensor
    n: torch.Tensor


def geometric_complexity(
    f: Embedding, x: torch.Tensor, method: str = "exact", *args, **kwargs
) -> GCEstimate:
    """Estimate ``GC(f, x) = mean_i ||J_f(x_i)||_F^2`` with the chosen method (module doc):
    the mean and standard error of :func:`per_example_gc`'s estimates, whose arguments
    these are."""
    return summarise(per_example_gc(f, x, method, *args, **kwargs), method)


def per_class_gc(
    f: Embedding, x: torch.Tensor, labels: torch.Tensor, method: str = "exact", **kwargs
) -> PerClassGC:
    """GC of ``f`` on the examples of each class (classes = sorted unique ``labels``).

    Keyword arguments are those of :func:`per_example_gc`.
    """
    per_example = per_example_gc(f, x, method, **kwargs)
    return per_class_summary(per_example, labels)


def per_class_summary(per_example: torch.Tensor, labels: torch.Tensor) -> PerClassGC:
    """Group per-example estimates by class: mean, standard error and count per class."""
    if per_example.shape != labels.shape:
        raise ValueError(
            f"per_example has shape {tuple(per_example.shape)} but labels has shape "
            f"{tuple(labels.shape)}; they must match"
        )
    labels = labels.to(per_example.device)
    classes, index = torch.unique(labels, return_inverse=True)
    estimates = [summarise(per_example[index == c], "") for c in range(len(classes))]
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    return PerClassGC(
        classes=classes.cpu(),
        value=as_tensor([e.value for e in estimates]),
        stderr=as_tensor([e.stderr for e in estimates]),
        n=torch.tensor([e.n for e in estimates]),
    )


def summarise(per_example: torch.Tensor, method: str) -> GCEstimate:
    """Mean and standard error ``std / sqrt(N)`` (ddof 1; 0 when N = 1) of estimates."""
    n = per_example.numel()
    if n == 0:
        raise ValueError("cannot estimate GC from zero examples")
    per_example = per_example.detach().to(torch.float64).cpu()
    stderr = per_example.std().item() / math.sqrt(n) if n > 1 else 0.0
    return GCEstimate(per_example.mean().item(), stderr, n, method, per_example)


def subsample(
    per_example: torch.Tensor, size: int, generator: torch.Generator | int | None = None
) -> GCEstimate:
    """GC from ``size`` of the N per-example values, drawn uniformly without replacement.

    The target is the mean of all N values (e.g. the exact GC of a fixed sample), so the
    standard error has the finite-population correction: ``Var(mean of b) = (S^2 / b) *
    (1 - b / N)`` with ``S^2`` the variance of the N values (divisor N - 1), estimated by
    the subsample's variance (ddof 1); it is 0 when ``size = N``.
    """
    n = per_example.numel()
    if not 1 <= size <= n:
        raise ValueError(f"size must be in [1, {n}] (the examples there are), got {size}")
    chosen = torch.randperm(n, generator=_as_generator(generator))[:size]
    estimate = summarise(per_example.flatten()[chosen.to(per_example.device)], "examples")
    correction = math.sqrt(1 - size / n)
    return GCEstimate(
        estimate.value, estimate.stderr * correction, size, "examples", estimate.per_example
    )


def per_example_gc(
    f: Embedding,
    x: torch.Tensor,
    method: str = "exact",
    probes: int = 1,
    outputs: int | None = None,
    rate: float | None = None,
    generator: torch.Generator | int | None = None,
    *,
    probe: str = "rademacher",
    mask_unit: str = "input",
    batch_size: int = 64,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Unbiased estimates of ``||J_f(x_i)||_F^2``, one per example (float64, shape N).

    Args:
        f: per-example embedding, batch N x ... -> N x p (model in eval mode).
        x: input batch N x ... (the tensor the network receives, after normalisation).
        method: "exact", "hutchinson", "outputs" or "mask".
        probes: Hutchinson probes per example (>= 1).
        outputs: output rows sampled per example for "outputs" (1 <= outputs <= p).
        rate: keep probability q in (0, 1] for "mask".
        generator: a ``torch.Generator`` or an int seed; the same seed gives the same estimate
            whatever the global random state. None uses the global generator.
        probe: "rademacher" or "gaussian" Hutchinson probes.
        mask_unit: "input" (columns of J, via JVPs) or "entry" (entries of J) for "mask".
        batch_size: examples per forward pass (bounds memory).
        chunk_size: VJPs/JVPs batched together with vmap (bounds memory of "exact").
    """
    _check_arguments(f, x, method, probes, outputs, rate, probe, mask_unit, batch_size, chunk_size)
    rng = _as_generator(generator)
    estimates = []
    with torch.no_grad():  # torch.func transforms still differentiate w.r.t. x; no param graph
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            if method == "mask" and mask_unit == "input":
                estimates.append(_masked_columns(f, xb, rate, rng, chunk_size))
                continue
            y, vjp_fn = vjp(f, xb)
            if y.dim() != 2:
                raise ValueError(f"f must map a batch to N x p vectors, got {tuple(y.shape)}")
            if method == "hutchinson":
                estimates.append(_hutchinson(vjp_fn, y, probes, probe, rng))
            else:
                estimates.append(_rows(vjp_fn, y, method, outputs, rate, rng, chunk_size))
    return torch.cat(estimates)


def _hutchinson(vjp_fn, y: torch.Tensor, probes: int, probe: str, rng) -> torch.Tensor:
    """Mean over probes of ``||v^T J_i||^2``: one batched VJP per probe."""
    total = torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
    for _ in range(probes):
        if probe == "rademacher":
            v = torch.randint(0, 2, y.shape, generator=rng, dtype=y.dtype) * 2 - 1
        else:
            v = torch.randn(y.shape, generator=rng, dtype=y.dtype)
        (grad,) = vjp_fn(v.to(y.device))
        total += _squared_norms(grad)
    return total / probes


def _rows(vjp_fn, y, method, outputs, rate, rng, chunk_size) -> torch.Tensor:
    """Row-wise VJP estimators: ``exact`` (all rows), ``outputs`` (s random rows, rescaled by
    p/s) and entry masking (all rows, entries kept with probability q, rescaled by 1/q)."""
    n, p = y.shape
    if method == "outputs":
        if outputs > p:
            raise ValueError(f"outputs = {outputs} rows per example, but f has only {p} outputs")
        rows = torch.rand(n, p, generator=rng).argsort(dim=1)[:, :outputs]
        scale = p / outputs
    else:
        rows = torch.arange(p).expand(n, p)
        scale = 1.0
    rows = rows.to(y.device)
    batch_rows = vmap(vjp_fn)
    total = torch.zeros(n, dtype=torch.float64, device=y.device)
    examples = torch.arange(n, device=y.device)
    for start in range(0, rows.shape[1], chunk_size):
        chunk = rows[:, start : start + chunk_size]  # n x k output rows
        cotangents = torch.zeros(chunk.shape[1], n, p, dtype=y.dtype, device=y.device)
        slot = torch.arange(chunk.shape[1], device=y.device).unsqueeze(1)
        cotangents[slot, examples, chunk.T] = 1
        (grads,) = batch_rows(cotangents)  # k x n x ...: row chunk[i, j] of J_i at [j, i]
        squares = grads.to(torch.float64).square().flatten(2)
        if method == "mask":
            keep = torch.rand(squares.shape, generator=rng, dtype=torch.float64) < rate
            squares = squares * keep.to(squares.device) / rate
        total += squares.sum(dim=(0, 2))
    return total * scale


def _masked_columns(f, xb, rate, rng, chunk_size) -> torch.Tensor:
    """Input-coordinate masking: ``(1/q) sum_l m_l ||J[:, l]||^2`` with ``m_l ~ Bernoulli(q)``;
    each kept column is one JVP with a basis tangent (zero tangents pad ragged examples)."""
    n = xb.shape[0]
    d = xb[0].numel()
    keep = torch.rand(n, d, generator=rng) < rate
    counts = keep.sum(dim=1)
    # Kept coordinates first in each row, in order; slot j of example i is its j-th kept one.
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    slots = int(counts.max())
    total = torch.zeros(n, dtype=torch.float64, device=xb.device)
    push = vmap(lambda tangent: jvp(f, (xb,), (tangent,))[1])
    for start in range(0, slots, chunk_size):
        stop = min(start + chunk_size, slots)
        slot = torch.arange(start, stop)
        used = slot.unsqueeze(1) < counts.unsqueeze(0)  # k x n: slot j exists for example i
        tangents = torch.zeros(stop - start, n, d, dtype=xb.dtype)
        coordinate = order[:, start:stop].T  # k x n
        tangents[(*used.nonzero(as_tuple=True), coordinate[used])] = 1
        columns = push(tangents.reshape(stop - start, *xb.shape).to(xb.device))
        total += columns.to(torch.float64).square().flatten(2).sum(dim=(0, 2))
    return total / rate


def _squared_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-example squared Euclidean norm, accumulated in float64: N x ... -> N."""
    return grad.to(torch.float64).square().flatten(1).sum(dim=1)


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A CPU generator: ``int`` seeds a new one, None means the global generator."""
    if generator is None:
        return torch.default_generator
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    return generator


def _check_arguments(f, x, method, probes, outputs, rate, probe, mask_unit, batch_size, chunk):
    """Refuse bad arguments with a message naming the argument and what is allowed."""
    if method not in METHODS:
        raise ValueError(f"unknown GC method {method!r}; expected one of {', '.join(METHODS)}")
    module = getattr(f, "__self__", f)
    if isinstance(module, torch.nn.Module) and module.training:
        raise ValueError(
            "GC needs a per-example function: call model.eval() before measuring "
            "(BatchNorm in training mode mixes the examples of a batch)"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch N x ..., got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got {x.dtype}")
    if method == "hutchinson":
        if not (isinstance(probes, int) and probes >= 1):
            raise ValueError(f"probes must be an integer >= 1, got {probes!r}")
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; expected one of {', '.join(PROBES)}")
    if method == "outputs" and not (isinstance(outputs, int) and outputs >= 1):
        raise ValueError(f"method 'outputs' needs outputs = rows per example >= 1, got {outputs!r}")
    if method == "mask":
        if rate is None or not 0 < rate <= 1:
            raise ValueError(f"method 'mask' needs rate in (0, 1], got {rate!r}")
        if mask_unit not in MASK_UNITS:
            raise ValueError(f"unknown mask_unit {mask_unit!r}; expected one of {MASK_UNITS}")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
