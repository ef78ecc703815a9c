"""Batched N-way K-shot evaluation on cached, frozen embeddings (docs/science.md#few-shot-transfer).

An *episode* picks ``ways`` distinct classes uniformly at random, then for each chosen
class ``shots + queries`` distinct examples uniformly at random; the first ``shots`` are
the support set and the other ``queries`` the query set (so support and query never share
an example). Classes are indexed by their sorted unique label values (ids may be
non-contiguous, e.g. CIFAR-FS target classes or digits 5-9).

Sampling is a batch of tensor index operations: the examples of each class are laid out
in a padded ``(C, max_count)`` index table; per episode, ``ways`` classes are the top-k
of ``C`` uniform random keys, and the examples are the top-``(shots + queries)`` of
uniform random keys over the table row, with keys beyond the class's count masked out.
Top-k of i.i.d. keys is a uniformly random ordered subset, so this is sampling without
replacement. All randomness comes from a dedicated ``torch.Generator`` seeded with
``seed`` (the global RNG state is irrelevant; the same inputs and seed give the same
episodes, on any device). Episodes are drawn in chunks whose size depends only on
``ways`` and the largest class size, and evaluated in sub-chunks bounded by a memory
budget, so memory stays bounded for any number of episodes.

Classifiers (the pool is converted once to float64, ``N * d * 8`` bytes, and each chunk
of episodes gathers from it):

* ``"ncc"`` (default): prototypes ``p_w = mean of the support features of way w``; a query
  goes to ``argmin_w ||q - p_w||^2`` (ties to the lowest way). Evaluated as
  ``argmin_w (||p_w||^2 / 2 - q.p_w)`` after subtracting the mean prototype from queries
  and prototypes (translation invariance, no cancellation from a common offset).
* ``"logreg"``: multinomial logistic regression fitted on the support set of each
  episode, see :func:`_logreg_predict`.

``normalize=True`` L2-normalises every feature vector before either classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from scipy import stats
from torch import Tensor

from gcstudy.metrics.collapse import _check_labels, _check_pair, _unique_classes

__all__ = ["Episodes", "FewShotResult", "fewshot_eval", "sample_episodes"]

_CLASSIFIERS = ("ncc", "logreg")
_KEY_BUDGET = 2**22  # random keys per sampling chunk (float32: 16 MiB)
_MAX_CHUNK = 2048  # episodes per sampling chunk at most
# gathered float64 feature entries per evaluation chunk (32 MiB): small chunks stay in
# cache; measured ~3x faster than 64 MiB-1 GiB chunks on a 2-core EPYC
_FEATURE_BUDGET = 2**22


@dataclass(frozen=True)
class Episodes:
    """Indices of sampled few-shot episodes.

    Attributes:
        classes: ``(C,)`` int64 sorted unique labels of the pool.
        episode_classes: ``(E, ways)`` int64 indices into ``classes`` (way ``w`` of
            episode ``e`` is class ``classes[episode_classes[e, w]]``).
        support: ``(E, ways, shots)`` int64 row indices into the features.
        query: ``(E, ways, queries)`` int64 row indices into the features.
    """

    classes: Tensor
    episode_classes: Tensor
    support: Tensor
    query: Tensor


@dataclass(frozen=True)
class FewShotResult:
    """Few-shot accuracy over episodes.

    Attributes:
        accuracy: mean over episodes of the per-episode query accuracy, in ``[0, 1]``.
        ci95: ``1.96 * std / sqrt(episodes)`` with the sample standard deviation
            (``ddof = 1``) of the per-episode accuracies (NaN for a single episode).
        episodes, ways, shots, queries: the protocol.
        classifier: ``"ncc"`` or ``"logreg"``.
        normalize: whether features were L2-normalised.
        seed: the episode seed.
        per_episode: ``(episodes,)`` float64 per-episode accuracies (CPU).
    """

    accuracy: float
    ci95: float
    episodes: int
    ways: int
    shots: int
    queries: int
    classifier: str
    normalize: bool
    seed: int
    per_episode: Tensor

    @property
    def ci95_t(self) -> float:
        """Half-width of the Student-t 95 % interval of the mean accuracy,
        ``t_{0.975, n-1} * sd / sqrt(n)`` over the ``n = episodes`` per-episode accuracies
        (sd with ``ddof = 1``; NaN for a single episode): the convention of the RFS code
        base (Tian et al., 2020). At 600 episodes ``t = 1.9640``, 0.2 % wider than ``ci95``."""
        n = self.episodes
        if n < 2:
            return float("nan")
        sd = self.per_episode.std().item()
        return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _EpisodeSampler:
    """Padded per-class index table plus the chunked episode sampler (CPU)."""

    def __init__(self, labels: Tensor, ways: int, shots: int, queries: int) -> None:
        self.ways = _check_int("ways", ways, 2)
        self.shots = _check_int("shots", shots, 1)
        self.queries = _check_int("queries", queries, 1)
        labels = labels.detach().to("cpu", torch.int64)
        classes, inverse, counts = _unique_classes(labels)
        need = self.shots + self.queries
        if classes.numel() < self.ways:
            raise ValueError(
                f"{self.ways}-way episodes need at least {self.ways} classes, "
                f"got {classes.numel()}: {classes.tolist()}"
            )
        small = counts < need
        if bool(small.any()):
            detail = ", ".join(
                f"class {c} has {n}"
                for c, n in zip(classes[small].tolist(), counts[small].tolist(), strict=True)
            )
            raise ValueError(
                f"every class needs at least shots + queries = {self.shots} + "
                f"{self.queries} = {need} examples: {detail}"
            )
        self.classes, self.counts = classes, counts
        num, max_count = classes.numel(), int(counts.max())
        order = torch.argsort(inverse, stable=True)  # example rows grouped by class
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(labels.numel()) - starts[inverse[order]]
        table = torch.full((num, max_count), -1, dtype=torch.int64)
        table[inverse[order], position] = order
        self.table = table
        self.max_count = max_count
        # depends only on ways and the class sizes: the drawn episodes never depend on d
        self.chunk = max(1, min(_MAX_CHUNK, _KEY_BUDGET // (self.ways * max_count + num)))

    def draw(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` episodes: ``(episode_classes, support, query)`` index tensors."""
        num = self.classes.numel()
        class_keys = torch.rand(count, num, generator=generator)
        chosen = class_keys.topk(self.ways, dim=1).indices  # (E, ways) distinct classes
        keys = torch.rand(count, self.ways, self.max_count, generator=generator)
        valid = torch.arange(self.max_count) < self.counts[chosen].unsqueeze(-1)
        keys.masked_fill_(~valid, -1.0)  # never selected: count >= shots + queries
        need = self.shots + self.queries
        positions = keys.topk(need, dim=-1, sorted=True).indices  # distinct per row
        rows = self.table[chosen.unsqueeze(-1), positions]  # (E, ways, need)
        return chosen, rows[..., : self.shots], rows[..., self.shots :]

    def chunks(self, episodes: int, seed: int):
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        for start in range(0, episodes, self.chunk):
            yield self.draw(min(self.chunk, episodes - start), generator)


@torch.no_grad()
def sample_episodes(
    labels: Tensor,
    ways: int = 5,
    shots: int = 5,
    queries: int = 15,
    episodes: int = 10000,
    seed: int = 0,
) -> Episodes:
    """The episodes :func:`fewshot_eval` draws for the same arguments (CPU indices).

    Args:
        labels: ``(N,)`` integer class ids of the pool.
        ways, shots, queries: classes per episode, support and query examples per class.
        episodes: number of episodes ``E``.
        seed: seed of the dedicated generator.

    Raises:
        ValueError: fewer than ``ways`` classes, or a class with fewer than
            ``shots + queries`` examples (named with its count).
    """
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    labels = _check_labels(labels, labels.shape[0], labels.device)
    sampler = _EpisodeSampler(labels, ways, shots, queries)
    episodes = _check_int("episodes", episodes, 1)
    parts = list(sampler.chunks(episodes, seed))
    return Episodes(
        classes=sampler.classes,
        episode_classes=torch.cat([p[0] for p in parts]),
        support=torch.cat([p[1] for p in parts]),
        query=torch.cat([p[2] for p in parts]),
    )


def _ncc_predict(support: Tensor, query: Tensor) -> Tensor:
    """``(E, Q)`` predicted ways; support ``(E, W, S, d)``, query ``(E, Q, d)``, float64.

    With prototypes ``p_w``, their mean ``c`` and ``r_w = p_w - c``:
    ``||q - p_w||^2 = ||q - c||^2 + ||r_w||^2 - 2 (q - c).r_w``, so
    ``argmin_w ||q - p_w||^2 = argmin_w (||r_w||^2 / 2 + c.r_w - q.r_w)``. Only the small
    centred ``r_w`` enter the products, so a large common offset of the features costs
    relative precision ``~ eps * |offset| / spread`` (negligible in float64), and the
    queries are used as gathered (no extra pass over them).
    """
    protos = support.mean(dim=2)  # (E, W, d)
    centre = protos.mean(dim=1, keepdim=True)
    resid = protos - centre
    offset = (0.5 * resid.square().sum(dim=-1) + (centre * resid).sum(dim=-1)).unsqueeze(1)
    scores = torch.baddbmm(offset, query, resid.transpose(1, 2), alpha=-1.0)  # (E, Q, W)
    return scores.argmin(dim=-1)


def _logreg_grams(support: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Per-episode standardised Gram matrices for :func:`_logreg_predict`.

    The ``n = W * S`` support features of an episode are centred by their mean ``m`` and
    divided by their RMS norm ``sqrt(mean ||x - m||^2)``; the queries get the same affine
    map. Returns ``K = X X^T`` ``(E, n, n)`` and ``K_q = X_q X^T`` ``(E, Q, n)``, the
    latter as ``(q.x_i - m.x_i) / rms`` so the large query tensor is read only once.
    """
    num, ways, shots, dim = support.shape
    x = support.reshape(num, ways * shots, dim)
    mean = x.mean(dim=1, keepdim=True)
    x = x - mean
    rms = x.square().sum(dim=-1).mean(dim=1).sqrt().clamp_min(1e-300).view(-1, 1, 1)
    x = x / rms
    xt = x.transpose(1, 2)
    gram_q = torch.baddbmm(mean @ xt, query, xt, beta=-1.0) / rms
    return x @ xt, gram_q


def _logreg_predict(
    gram: Tensor, gram_q: Tensor, ways: int, shots: int, l2: float, iters: int
) -> Tensor:
    """Multinomial logistic-regression probe per episode, batched over episodes.

    On the standardised support features ``x_i`` (see :func:`_logreg_grams`, which makes
    ``l2`` scale-free) the objective is

        mean_i CE(W^T x_i + b, y_i) + (l2 / 2) ||W||_F^2     (bias not penalised),

    minimised by ``iters`` steps of accelerated (FISTA/Nesterov) full-batch gradient
    descent from zero with step ``1 / L``, ``L = lambda_max([X 1]^T [X 1]) / (2 n) + l2``
    (the softmax-CE Hessian in the logits is at most ``I / 2``). Gradient descent from
    zero keeps ``W`` in the row span of the support, so ``W = X^T A`` and the iteration
    runs on the ``(n, W)`` coefficients ``A`` through the Gram matrix ``K = X X^T``:
    ``A <- A - eta ((P - Y) / n + l2 A)``, ``b <- b - eta 1^T (P - Y) / n``, exactly
    gradient descent on ``(W, b)`` at a cost independent of the feature dimension.
    Returns the ``(E, Q)`` predicted ways of the queries (logits ``K_q A + b``).
    """
    num, n, _ = gram.shape
    lip = 0.5 * torch.linalg.eigvalsh((gram + 1.0) / n)[:, -1] + l2
    eta = (1.0 / lip).view(-1, 1, 1)
    # transposed layout (E, ways, n): logits^T = A^T K + b (K symmetric), softmax over
    # dim 1; measured ~2x faster on CPU than (E, n, ways) with a size-``ways`` last dim
    target = torch.arange(ways, device=gram.device).repeat_interleave(shots)
    onehot = torch.nn.functional.one_hot(target, ways).to(gram.dtype).T  # (W, n)
    coef = gram.new_zeros(num, ways, n)
    bias = gram.new_zeros(num, ways, 1)
    coef_y, bias_y, t = coef, bias, 1.0
    for _ in range(iters):
        logits = torch.baddbmm(bias_y, coef_y, gram)
        resid = (torch.softmax(logits, dim=1) - onehot) / n
        coef_new = coef_y - eta * (resid + l2 * coef_y)
        bias_new = bias_y - eta * resid.sum(dim=2, keepdim=True)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        momentum = (t - 1.0) / t_new
        coef_y = coef_new + momentum * (coef_new - coef)
        bias_y = bias_new + momentum * (bias_new - bias)
        coef, bias, t = coef_new, bias_new, t_new
    return torch.baddbmm(bias, coef, gram_q.transpose(1, 2)).argmax(dim=1)  # (E, Q)


@torch.no_grad()
def fewshot_eval(
    features: Tensor,
    labels: Tensor,
    ways: int = 5,
    shots: int = 5,
    queries: int = 15,
    episodes: int = 10000,
    seed: int = 0,
    classifier: str = "ncc",
    normalize: bool = False,
    logreg_l2: float = 1e-2,
    logreg_iters: int = 100,
) -> FewShotResult:
    """N-way K-shot accuracy on cached features, all episodes batched.

    Args:
        features: ``(N, d)`` float tensor of frozen embeddings (any dtype/device).
        labels: ``(N,)`` integer class ids (arbitrary, possibly non-contiguous).
        ways: classes per episode (``>= 2``).
        shots: support examples per class (``>= 1``).
        queries: query examples per class (``>= 1``).
        episodes: number of episodes.
        seed: seed of the dedicated episode generator (global RNG state is irrelevant).
        classifier: ``"ncc"`` (nearest prototype) or ``"logreg"`` (logistic probe).
        normalize: L2-normalise the features first.
        logreg_l2: L2 penalty ``(l2 / 2) ||W||_F^2`` of the logistic probe, relative to
            per-episode standardised support features (sklearn's ``C = 1 / (l2 n)``).
        logreg_iters: accelerated gradient steps of the logistic probe. The defaults
            (1e-2, 100) reach the minimiser's predictions (checked against sklearn); a
            smaller ``l2`` converges more slowly and needs more iterations.

    Returns:
        :class:`FewShotResult`; ``accuracy`` is the mean per-episode query accuracy.

    Raises:
        ValueError: bad arguments, fewer than ``ways`` classes, or a class with fewer
            than ``shots + queries`` examples (named with its count).
    """
    if classifier not in _CLASSIFIERS:
        raise ValueError(f"classifier must be one of {_CLASSIFIERS}, got {classifier!r}")
    features, labels = _check_pair(features, labels)
    episodes = _check_int("episodes", episodes, 1)
    predict = _ncc_chunk if classifier == "ncc" else _logreg_probe(logreg_l2, logreg_iters)
    sampler = _EpisodeSampler(labels, ways, shots, queries)
    per_episode = _episode_accuracies(features, normalize, sampler, episodes, seed, predict)
    std = per_episode.std().item() if episodes > 1 else float("nan")
    return FewShotResult(
        accuracy=per_episode.mean().item(),
        ci95=1.96 * std / math.sqrt(episodes),
        episodes=episodes,
        ways=sampler.ways,
        shots=sampler.shots,
        queries=sampler.queries,
        classifier=classifier,
        normalize=bool(normalize),
        seed=int(seed),
        per_episode=per_episode,
    )


def _episode_accuracies(
    features: Tensor, normalize: bool, sampler: _EpisodeSampler, episodes: int, seed: int, predict
) -> Tensor:
    """``(episodes,)`` float64 query accuracy of each episode (CPU): the fraction of its
    ``ways * queries`` queries whose predicted way is their own. The features are converted
    once to float64 (L2-normalised with ``normalize``), the pool every episode gathers from.
    Episodes are drawn in the sampler's chunks; ``predict(pool, support_rows, query_rows,
    sub)`` returns the ``(E, ways * queries)`` predicted ways of a chunk, gathering the
    features in sub-chunks of ``sub`` episodes (at most ``_FEATURE_BUDGET`` float64 entries
    each)."""
    pool = features.detach().to(torch.float64)
    if normalize:
        pool = torch.nn.functional.normalize(pool, dim=1)
    need = sampler.shots + sampler.queries
    sub = max(1, _FEATURE_BUDGET // (sampler.ways * need * pool.shape[1]))
    target = torch.arange(sampler.ways, device=pool.device).repeat_interleave(sampler.queries)
    accs = []
    for _, support_rows, query_rows in sampler.chunks(episodes, seed):
        pred = predict(pool, support_rows.to(pool.device), query_rows.to(pool.device), sub)
        accs.append((pred == target).to(torch.float64).mean(dim=1).cpu())
    return torch.cat(accs)


def _gathered(pool: Tensor, support_rows: Tensor, query_rows: Tensor, sub: int):
    """The features of a chunk of episodes, ``sub`` episodes at a time (cache friendly):
    support ``(E, ways, shots, d)`` and queries ``(E, ways * queries, d)``, way-major."""
    dim = pool.shape[1]
    for start in range(0, support_rows.shape[0], sub):
        sup_rows = support_rows[start : start + sub]
        qry_rows = query_rows[start : start + sub]
        sup = pool.index_select(0, sup_rows.reshape(-1)).view(*sup_rows.shape, dim)
        qry = pool.index_select(0, qry_rows.reshape(-1)).view(qry_rows.shape[0], -1, dim)
        yield sup, qry


def _logreg_probe(l2: float, iters: int):
    """``_logreg_chunk`` with the penalty ``l2`` (a positive number) and ``iters`` (an
    integer >= 1) checked."""
    iters = _check_int("logreg_iters", iters, 1)
    if not math.isfinite(l2) or l2 <= 0:
        raise ValueError(f"logreg_l2 must be a positive number, got {l2!r}")
    return partial(_logreg_chunk, l2=float(l2), iters=iters)


def _ncc_chunk(pool: Tensor, support_rows: Tensor, query_rows: Tensor, sub: int) -> Tensor:
    """Nearest-prototype predictions (``_ncc_predict``) of a chunk of episodes."""
    return torch.cat(
        [_ncc_predict(sup, qry) for sup, qry in _gathered(pool, support_rows, query_rows, sub)]
    )


def _logreg_chunk(
    pool: Tensor, support_rows: Tensor, query_rows: Tensor, sub: int, l2: float, iters: int
) -> Tensor:
    """Logistic-probe predictions (``_logreg_predict``) of a chunk of episodes: the Gram
    matrices are built per sub-chunk; the iterations act on tiny ``(n x n)`` Gram matrices
    and run on the whole chunk (fewer, larger ops)."""
    grams = [_logreg_grams(sup, qry) for sup, qry in _gathered(pool, support_rows, query_rows, sub)]
    gram = torch.cat([g[0] for g in grams])
    gram_q = torch.cat([g[1] for g in grams])
    _, ways, shots = support_rows.shape
    return _logreg_predict(gram, gram_q, ways, shots, l2, iters)
