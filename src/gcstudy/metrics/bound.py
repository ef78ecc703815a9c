r"""Upper bounds on the nearest-class-mean (NCC) error (docs/science.md#the-ncc-error-bound).

Derivation
----------
Let ``h = f(x)`` be the embedding of an example of class ``i``, ``mu_c`` the class means,
``D_ij = ||mu_i - mu_j||`` and ``Var_i = E_i ||h - mu_i||^2``.

1. *Geometry.* The NCC assigns ``h`` to ``j`` instead of ``i`` only if
   ``||h - mu_j|| <= ||h - mu_i||``. Then, by the triangle inequality,
   ``D_ij <= ||h - mu_i|| + ||h - mu_j|| <= 2 ||h - mu_i||``, i.e. the event requires
   ``||h - mu_i|| >= D_ij / 2``.
2. *Chebyshev (Markov on the squared norm).*
   ``P_i(||h - mu_i|| >= D_ij / 2) <= 4 Var_i / D_ij^2``.
3. *Union bound over the wrong classes.*
   ``P(err | y = i) <= sum_{j != i} 4 Var_i / D_ij^2``.
4. *Balanced classes* (each class has probability ``1/C``)::

       err <= (1/C) sum_i sum_{j != i} 4 Var_i / D_ij^2
            = (4/C) sum_{i<j} (Var_i + Var_j) / D_ij^2
            = (8/C) sum_{i<j} V(i, j)            V(i,j) = (Var_i+Var_j) / (2 D_ij^2)
            = (8/C) * (C (C-1) / 2) * NC
            = 4 (C - 1) NC.

5. *Poincare step.* If the input distribution of class ``i`` satisfies a Poincare
   inequality ``Var(g(x)) <= c_i E ||grad g(x)||^2`` for every smooth scalar ``g``,
   applying it to each output coordinate ``f_k`` and summing over ``k`` gives
   ``Var_i = sum_k Var(f_k) <= c_i E ||J_f(x)||_F^2 = c_i GC_i``. Hence
   ``V(i, j) <= c G(i, j)`` with ``c = max_i c_i`` and ``G`` the geometric-collapse pair
   term, so ``NC <= c * geometric_collapse`` and::

       err <= 4 (C - 1) * c * geometric_collapse.

   For a Gaussian class ``N(m, Sigma)`` the optimal constant is ``lambda_max(Sigma)``;
   :func:`poincare_constants` uses this *Gaussian proxy* on the (flattened) inputs.

6. *Few-shot version.* When the class means are estimated from ``n`` support examples
   per class (``mu_hat_i``), a query independent of the support has
   ``E ||h - mu_hat_i||^2 = Var_i + Var_i / n = (1 + 1/n) Var_i``; repeating steps 1-4
   with this deviation (and the population separation ``D_ij``) multiplies both bounds
   by ``(1 + 1/n)``.

The bounds are only informative when they are below 1; they hold for the *population*
error under the stated assumptions (balanced classes, population means), and are
evaluated with training statistics in Fig. 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gcstudy.metrics.collapse import _check_labels, _unique_classes

__all__ = ["NCCBound", "ncc_bound", "poincare_constants"]


@dataclass(frozen=True)
class NCCBound:
    """Upper bounds on the NCC error rate (dimensionless, may exceed 1 = vacuous).

    Attributes:
        num_classes: ``C``.
        cdnv: ``4 (C - 1) NC`` (times ``1 + 1/shots`` if ``shots``), or ``None``.
        gc: ``4 (C - 1) c * geometric_collapse`` (times ``1 + 1/shots``), or ``None``.
        poincare_constant: the constant ``c`` used in ``gc`` (max over classes), or None.
        shots: support examples per class for the few-shot version, or ``None``.
    """

    num_classes: int
    cdnv: float | None
    gc: float | None
    poincare_constant: float | None = None
    shots: int | None = None


def _non_negative(name: str, value: float) -> float:
    """``value`` as a float; NaN passes through (a degenerate or diverged network measures
    NaN collapse, and its bound is then NaN rather than an error that stops a study)."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}") from exc
    if out < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return out


def _as_constant(poincare_constant: float | Sequence[float] | Tensor) -> float:
    """A scalar Poincare constant; per-class constants are reduced by their maximum."""
    if isinstance(poincare_constant, Tensor | Sequence) and not isinstance(poincare_constant, str):
        values = torch.as_tensor(poincare_constant, dtype=torch.float64).flatten()
        if values.numel() == 0:
            raise ValueError("poincare_constant is empty")
        if torch.isnan(values).any() or (values < 0).any():
            raise ValueError(f"poincare_constant must be non-negative, got {values.tolist()}")
        return float(values.max().item())
    return _non_negative("poincare_constant", poincare_constant)


def ncc_bound(
    num_classes: int,
    nc: float | None = None,
    geometric_collapse: float | None = None,
    poincare_constant: float | Sequence[float] | Tensor | None = None,
    shots: int | None = None,
) -> NCCBound:
    """The CDNV-form and GC-form upper bounds on the NCC error.

    ``cdnv = 4 (C - 1) * nc`` and ``gc = 4 (C - 1) * c * geometric_collapse``, each
    multiplied by ``(1 + 1/shots)`` for the few-shot version (means from ``shots``
    support examples per class). See the module docstring for the derivation.

    Args:
        num_classes: ``C >= 2``.
        nc: the NC value (mean CDNV over pairs), or ``None`` to skip the CDNV form.
        geometric_collapse: the geometric-collapse value, or ``None`` to skip the GC form.
        poincare_constant: ``c``, required with ``geometric_collapse``: a number, or the
            per-class constants (e.g. from :func:`poincare_constants`), whose maximum is
            used (``NC <= max_i c_i * geometric_collapse``).
        shots: support examples per class (``>= 1``) for the few-shot factor.

    Raises:
        ValueError: ``num_classes < 2``, negative/NaN values, ``shots < 1``, or
            ``geometric_collapse`` without ``poincare_constant``.
    """
    num_classes, shots, factor = _bound_factor(num_classes, shots)
    cdnv_bound = None if nc is None else factor * _non_negative("nc", nc)
    gc_bound, constant = None, None
    if geometric_collapse is not None:
        if poincare_constant is None:
            raise ValueError(
                "the GC-form bound needs poincare_constant (e.g. the max of "
                "poincare_constants(inputs, labels)[1])"
            )
        constant = _as_constant(poincare_constant)
        gc_bound = factor * constant * _non_negative("geometric_collapse", geometric_collapse)
    elif poincare_constant is not None:
        constant = _as_constant(poincare_constant)
    return NCCBound(
        num_classes=num_classes,
        cdnv=cdnv_bound,
        gc=gc_bound,
        poincare_constant=constant,
        shots=shots,
    )


def _bound_factor(num_classes: int, shots: int | None) -> tuple[int, int | None, float]:
    """``(C, shots, factor)``: the checked class count and shots, and the factor both bounds
    share, ``4 (C - 1)`` (steps 1-4 of the module docstring), times ``1 + 1/shots`` for
    class means estimated from ``shots`` support examples (step 6)."""
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    factor = 4.0 * (num_classes - 1)
    if shots is not None:
        if isinstance(shots, bool) or int(shots) != shots or shots < 1:
            raise ValueError(f"shots must be an integer >= 1, got {shots!r}")
        shots = int(shots)
        factor *= 1.0 + 1.0 / shots
    return num_classes, shots, factor


def _top_eigenvalue_gram(x: Tensor, rtol: float = 1e-13, check_every: int = 5) -> float:
    """``lambda_max(x^T x) = s_max(x)^2`` of a ``(n, D)`` float64 matrix, matrix-free.

    Krylov (Lanczos-type) iteration on ``x^T x`` with full re-orthogonalisation: the
    basis ``V`` of ``span{v, (x^T x) v, ...}`` grows one vector per step (two passes of
    ``x``), and the top Ritz value is the top eigenvalue of ``(x V)^T (x V)``. Ritz values
    increase monotonically towards ``s_max^2``; the iteration stops when the top Ritz value
    changes by less than ``rtol`` (relative) over ``check_every`` steps, or when the basis
    spans an invariant subspace / reaches ``min(n, D)`` vectors (then it is exact). Only
    ``O((n + D) m)`` memory for ``m`` steps; no ``D x D`` or ``n x n`` matrix is formed.
    The start vector comes from a dedicated generator with a fixed seed (deterministic).
    """
    n, dim = x.shape
    limit = min(n, dim)
    if limit == 0:
        return 0.0
    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(dim, dtype=torch.float64, generator=gen).to(x.device)
    capacity = min(limit, 64)  # grown by doubling: memory O((n + D) m), never D x D
    basis = torch.empty(dim, capacity, dtype=torch.float64, device=x.device)
    images = torch.empty(n, capacity, dtype=torch.float64, device=x.device)
    scale = None
    previous = None
    steps = 0
    for m in range(limit):
        if m > 0:
            for _ in range(2):  # classical Gram-Schmidt, twice
                v = v - basis[:, :m] @ (basis[:, :m].T @ v)
        norm = v.norm()
        if scale is not None and norm <= 1e-12 * scale:
            break  # invariant subspace: Ritz values are exact
        if norm == 0:
            return 0.0
        v = v / norm
        if m == capacity:
            capacity = min(limit, 2 * capacity)
            basis = torch.cat([basis, basis.new_empty(dim, capacity - m)], dim=1)
            images = torch.cat([images, images.new_empty(n, capacity - m)], dim=1)
        z = x @ v
        basis[:, m], images[:, m] = v, z
        steps = m + 1
        v = x.T @ z
        if scale is None:
            scale = v.norm().item()
            if scale == 0.0:
                return 0.0
        if steps % check_every == 0:
            gram = images[:, :steps].T @ images[:, :steps]
            theta = torch.linalg.eigvalsh(gram)[-1].item()
            if previous is not None and theta - previous <= rtol * theta:
                return theta
            previous = theta
    gram = images[:, :steps].T @ images[:, :steps]
    return torch.linalg.eigvalsh(gram)[-1].item()


@torch.no_grad()
def poincare_constants(inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Gaussian-proxy Poincare constants ``c_i = lambda_max(Cov(x | class i))``.

    Each input is flattened to a vector of ``D`` entries. With ``X_i`` the ``(N_i, D)``
    class data centred by its class mean (float64), the population covariance is
    ``X_i^T X_i / N_i``, so ``c_i = s_max(X_i)^2 / N_i``. ``s_max^2`` comes from a
    matrix-free Krylov iteration (see ``_top_eigenvalue_gram``; relative accuracy ~1e-13),
    so no ``D x D`` matrix is formed (``D`` = 3072 for CIFAR). Units: squared input units.

    Args:
        inputs: ``(N, ...)`` float tensor (e.g. ``(N, 3, 32, 32)`` normalised images).
        labels: ``(N,)`` integer class ids (arbitrary, possibly non-contiguous).

    Returns:
        ``(classes, constants)``: ``(C,)`` int64 sorted unique labels and ``(C,)``
        float64 constants aligned with them. A class with one example gets 0.
    """
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise TypeError("inputs must be a floating torch.Tensor")
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must have a non-empty leading batch axis, got {inputs.shape}")
    flat = inputs.reshape(inputs.shape[0], -1)
    labels = _check_labels(labels, flat.shape[0], flat.device)
    classes, inverse, counts = _unique_classes(labels)
    order = torch.argsort(inverse, stable=True)
    bounds = [0, *torch.cumsum(counts, 0).tolist()]
    constants = torch.empty(classes.numel(), dtype=torch.float64)
    for k in range(classes.numel()):
        rows = order[bounds[k] : bounds[k + 1]]
        x = flat[rows].to(torch.float64)
        x = x - x.mean(dim=0, keepdim=True)
        constants[k] = _top_eigenvalue_gram(x) / x.shape[0]
    return classes, constants.to(flat.device)
