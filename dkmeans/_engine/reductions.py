"""Reductions declared as chunk / combine / finalize, on top of ``kernels``.

Each ``*_chunk`` function takes one block (and its weights) and returns a small
partial; each ``combine_*`` takes a LIST of partials in block order and returns
one partial of the same form, so the fixed tree of ``parallel`` can apply it at any
level of the tree; ``finalize`` functions turn the root into results.  Combining
in a fixed order makes floating-point results independent of the scheduler.
No dask here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import backend as B
from . import cluster_stats as S
from . import kernels as K
from . import pruning as P
from .validation import nonfinite_error

# --------------------------------------------------------------------------- moments


class Moments(NamedTuple):
    """Row count (or summed weight), column means, centred sums of squares (float64),
    non-finite count."""

    count: float
    mean: np.ndarray
    m2: np.ndarray
    n_nonfinite: int

    @property
    def variance(self) -> np.ndarray:
        """Population variance of each column (as ``numpy.var``)."""
        return self.m2 / max(self.count, 1)


def moments_chunk(X) -> Moments:
    return Moments(*K.moments(X))


def weighted_moments_chunk(X, sample_weight=None) -> Moments:
    """Moments with row weights (the count is then the summed weight)."""
    if sample_weight is None:
        return moments_chunk(X)
    return Moments(*K.weighted_moments(X, sample_weight))


def combine_moments(parts: list[Moments]) -> Moments:
    """Chan et al.'s pairwise merge of counts, means and M2, in list order."""
    acc = parts[0]
    for p in parts[1:]:
        n = acc.count + p.count
        if p.count == 0:
            acc = acc._replace(n_nonfinite=acc.n_nonfinite + p.n_nonfinite)
            continue
        if acc.count == 0:
            acc = p._replace(n_nonfinite=acc.n_nonfinite + p.n_nonfinite)
            continue
        delta = p.mean - acc.mean
        mean = acc.mean + delta * (p.count / n)
        m2 = acc.m2 + p.m2 + delta**2 * (acc.count * p.count / n)
        acc = Moments(n, mean, m2, acc.n_nonfinite + p.n_nonfinite)
    return acc


# --------------------------------------------------------------------------- Lloyd


def lloyd_chunk(X, sample_weight, center_sets, shift, n_far, with_moments=False):
    """Partials of one Lloyd step for every centre set; optionally the moments too."""
    parts = K.lloyd_step(X, center_sets, shift, sample_weight, n_far)
    return parts, (moments_chunk(X) if with_moments else None)


def _combine_far(parts: list[K.LloydPartial], n_far: int):
    dist = np.concatenate([p.far_dist for p in parts])
    keep = K.farthest(dist, n_far)
    return (
        dist[keep],
        np.concatenate([p.far_rows for p in parts])[keep],
        np.concatenate([p.far_weight for p in parts])[keep],
        np.concatenate([p.far_label for p in parts])[keep],
    )


def combine_lloyd_sets(parts: list[K.LloydPartial], n_far: int) -> K.LloydPartial:
    sums = parts[0].sums.copy()
    counts = parts[0].counts.copy()
    cost = parts[0].cost
    for p in parts[1:]:
        sums += p.sums
        counts += p.counts
        cost += p.cost
    return K.LloydPartial(sums, counts, cost, *_combine_far(parts, n_far))


def combine_lloyd(parts, n_far: int):
    """Combine ``lloyd_chunk`` outputs: per centre set, and the moments if present."""
    sets = [
        combine_lloyd_sets(list(group), n_far) for group in zip(*(p[0] for p in parts), strict=True)
    ]
    mom = None if parts[0][1] is None else combine_moments([p[1] for p in parts])
    return sets, mom


def pruned_lloyd_chunk(X, sample_weight, steps, states, n_far):
    """One pruned Lloyd step of a block for several runs (``pruning.pruned_step``).

    Returns ``((partials, skipped rows), *new states)``: the first item is reduced
    across blocks by ``combine_pruned_lloyd``; each new state stays with the block for
    that run's next pass.
    """
    out = [
        P.pruned_step(X, sample_weight, step, state, n_far)
        for step, state in zip(steps, states, strict=True)
    ]
    return (tuple(o[0] for o in out), tuple(o[1] for o in out)), *(o[2] for o in out)


def combine_pruned_lloyd(parts, n_far: int):
    """Combine ``pruned_lloyd_chunk`` partials: per run, and the skipped-row counts."""
    sets = [
        combine_lloyd_sets(list(group), n_far) for group in zip(*(p[0] for p in parts), strict=True)
    ]
    skipped = tuple(int(sum(c)) for c in zip(*(p[1] for p in parts), strict=True))
    return sets, skipped


class LloydUpdate(NamedTuple):
    """Result of finalizing a Lloyd step for one centre set."""

    centers: np.ndarray
    center_shift: float  # Σ_j ||c_new_j - c_old_j||², as scikit-learn's convergence test
    cost: float
    n_relocated: int


def finalize_lloyd(part: K.LloydPartial, old_centers, shift) -> LloydUpdate:
    """New centres from summed partials, relocating empty clusters as scikit-learn does.

    An empty cluster takes the farthest remaining point from its centre, which is
    removed from its old cluster's sums.  Clusters still empty keep their centre.
    """
    sums = part.sums.copy()
    counts = part.counts.copy()
    shift64 = K.as_shift(shift, old_centers.dtype)
    empty = np.flatnonzero(counts == 0)
    n_reloc = min(empty.shape[0], part.far_dist.shape[0])
    for i in range(n_reloc):
        j = empty[i]
        x = part.far_rows[i].astype(np.float64) - shift64
        w = float(part.far_weight[i])
        old = int(part.far_label[i])
        sums[old] -= w * x
        counts[old] -= w
        sums[j] = w * x
        counts[j] = w
    new = np.asarray(old_centers, dtype=np.float64).copy()
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None] + shift64
    new = new.astype(old_centers.dtype)
    move = float(((new.astype(np.float64) - old_centers.astype(np.float64)) ** 2).sum())
    return LloydUpdate(new, move, float(part.cost), n_reloc)


# --------------------------------------------------------------------------- final assignment


class Assignment(NamedTuple):
    """Exact cost, per-cluster weights and Σ w·(simplified silhouette) of the final
    assignment."""

    cost: float
    weights: np.ndarray  # (k,) float64
    simplified: float


def label_chunk(X, sample_weight, centers, center_set, shift):
    """Final E-step of one block: ``(labels, Assignment)``.

    The centroid-based silhouette rides on the same pass (distance to the nearest
    and the second-nearest centre).
    """
    if B.is_host(X) and not B.is_sparse(X):  # one sweep: no second GEMM, no float64 copy
        labels, cost, weights, simplified = K.label_block(
            X, centers, center_set, shift, B.to_host(sample_weight)
        )
        return labels, Assignment(cost, weights, simplified)
    simple, labels = S.simplified_silhouette_chunk(X, centers, center_set, shift)
    cost = K.exact_cost(X, centers, labels, sample_weight)
    weights = K.weighted_bincount(labels, sample_weight, centers.shape[0])
    simplified = S.weighted_sum(simple, sample_weight)
    return labels, Assignment(cost, weights, simplified)


def cost_chunk(X, sample_weight, centers_list, center_sets, shift) -> np.ndarray:
    """Exact costs of several centre sets over one block (no labels kept).

    Raises ValueError if the block holds NaN or infinity (the cost is then not finite).
    """
    costs = np.array(
        [
            K.labels_and_cost(X, c, cs, shift, sample_weight)[1]
            for c, cs in zip(centers_list, center_sets, strict=True)
        ]
    )
    if not np.all(np.isfinite(costs)):
        raise nonfinite_error()
    return costs


def combine_assignment(parts: list[Assignment]) -> Assignment:
    return Assignment(
        sum(p.cost for p in parts),
        np.sum([p.weights for p in parts], axis=0),
        sum(p.simplified for p in parts),
    )


def combine_sum(parts):
    acc = parts[0]
    for p in parts[1:]:
        acc = acc + p
    return acc


# --------------------------------------------------------------------------- k-means|| / k-means++


class Draw(NamedTuple):
    """Largest sampling keys of a block (or of several): see ``K.sampling_keys``.

    cost : Σ w·cost of the rows covered (φ's partial).
    keys, rows, index : the kept keys (descending), their rows and global row indices.
    max_dropped : the largest key NOT kept (0 if none was dropped); if it exceeds φ
        a selected row was lost and the caller must gather again.
    """

    cost: float
    keys: np.ndarray
    rows: np.ndarray
    index: np.ndarray
    max_dropped: float


def top_count(scale: float) -> int:
    """How many keys to keep so that a Bernoulli sample of mean ≤ scale is rarely cut."""
    return math.ceil(scale + 6.0 * math.sqrt(scale) + 10.0)


def _draw_from_keys(X, keys, weighted_cost: float, row_offset: int, n_keep: int) -> Draw:
    top, rest = K.farthest_and_rest(keys, n_keep)
    max_dropped = rest if top.shape[0] < keys.shape[0] else 0.0
    return Draw(weighted_cost, keys[top], K.take_rows(X, top), top + row_offset, max_dropped)


class SeedingJob(NamedTuple):
    """One seeder's share of a seeding pass (see ``seeding_jobs_chunk``).

    kind : ``"round"`` lowers the per-row min costs with ``new_set`` (incremental:
        the new candidates only) and draws keys from the updated costs (a k-means||
        round or a k-means++ step); ``"gather"`` returns every row whose key exceeds
        ``threshold`` (the rare fallback after a cut draw); ``"weights"`` lowers the
        costs with ``new_set`` (if any) and sums the weight each of ``n_candidates``
        candidates attracts.
    replay, keep_state : when the per-row costs are too large to keep on the workers
        between passes (``keep_state=False``), each pass rebuilds them by applying the
        earlier rounds' candidate sets in ``replay``, in order and with their own
        shifts: the same arithmetic as the incremental updates, so the same result.
    """

    kind: str
    new_set: K.CenterSet | None
    shift: np.ndarray
    first_index: int = 0
    scale: float = 1.0
    draw: str = "bernoulli"
    n_keep: int = 0
    threshold: float = 0.0
    n_candidates: int = 0
    replay: tuple = ()  # ((CenterSet, shift, first_index), ...) of the earlier rounds
    keep_state: bool = True

    @property
    def reads_data(self) -> bool:
        return self.kind != "weights" or self.new_set is not None or bool(self.replay)


def _seeding_job(X, sample_weight, job: SeedingJob, state, seed, row_offset):
    """``(result, new_state)`` of one job over a block; ``state = (cost, nearest)``."""
    cost, nearest = (None, None) if state is None else state
    if state is None:
        for center_set, shift, first_index in job.replay:
            cost, nearest = K.min_cost_update(X, cost, nearest, center_set, shift, first_index)
    if job.kind == "gather":
        keys = K.sampling_keys(cost, sample_weight, job.scale, seed, job.draw)
        n_keep = int(np.count_nonzero(keys > job.threshold))
        return _draw_from_keys(X, keys, 0.0, row_offset, n_keep), None
    if job.new_set is not None:
        cost, nearest = K.min_cost_update(X, cost, nearest, job.new_set, job.shift, job.first_index)
    if job.kind == "weights":
        return K.weighted_bincount(nearest, sample_weight, job.n_candidates), None
    keys = K.sampling_keys(cost, sample_weight, job.scale, seed, job.draw)
    w = B.to_host(sample_weight)
    wcost = float(np.dot(cost, w) if w is not None else cost.sum(dtype=np.float64))
    state = (cost, nearest) if job.keep_state else None
    return _draw_from_keys(X, keys, wcost, row_offset, job.n_keep), state


def seeding_jobs_chunk(X, sample_weight, jobs, states, seeds, row_offset, with_moments):
    """Several seeders' jobs over one block, sharing its read.

    Returns ``((results, Moments | None), *new_states)``: the first item is reduced
    across blocks by ``combine_seeding_jobs``; each new state stays with the block
    for that seeder's next job.
    """
    out = [
        _seeding_job(X, sample_weight, job, state, seed, row_offset)
        for job, state, seed in zip(jobs, states, seeds, strict=True)
    ]
    results = tuple(r for r, _ in out)
    return (results, moments_chunk(X) if with_moments else None), *(s for _, s in out)


def combine_draws(parts: list[Draw], n_keep: int) -> Draw:
    keys = np.concatenate([p.keys for p in parts])
    top, rest = K.farthest_and_rest(keys, n_keep)
    dropped = max([p.max_dropped for p in parts] + ([rest] if top.shape[0] < keys.shape[0] else []))
    return Draw(
        sum(p.cost for p in parts),
        keys[top],
        np.concatenate([p.rows for p in parts])[top],
        np.concatenate([p.index for p in parts])[top],
        dropped,
    )


def combine_seeding_jobs(parts, jobs: tuple[SeedingJob, ...]):
    """Combine ``seeding_jobs_chunk`` partials: per job by its kind, and the moments."""
    results = []
    for j, job in enumerate(jobs):
        group = [p[0][j] for p in parts]
        if job.kind == "weights":
            results.append(combine_sum(group))
        else:
            results.append(combine_draws(group, job.n_keep if job.kind == "round" else 1 << 62))
    mom = None if parts[0][1] is None else combine_moments([p[1] for p in parts])
    return tuple(results), mom


# --------------------------------------------------------------------------- mini-batch


def minibatch_update(X, sample_weight, centers, counts):
    """One mini-batch step (in memory): assign, then move each centre to the running
    mean of every row it has attracted so far (learning rate weight / total weight,
    as scikit-learn's MiniBatchKMeans).

    Returns new ``(centers, counts, cost)``; the inputs are not modified.
    """
    c64 = centers.astype(np.float64)
    shift = K.choose_shift(c64.mean(axis=0), c64.var(axis=0))
    center_set = K.prepare_centers(centers, shift, B.host_dtype(X))
    (part,) = K.lloyd_step(X, [center_set], shift, sample_weight)
    total = counts + part.counts
    hit = part.counts > 0
    batch_mean = part.sums[hit] / part.counts[hit, None] + shift
    new = c64.copy()
    new[hit] += (batch_mean - c64[hit]) * (part.counts[hit] / total[hit])[:, None]
    return new.astype(centers.dtype), total, float(part.cost)
