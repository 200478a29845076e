"""Per-cluster statistics for the clustering metrics: kernels and chunk/combine pairs.

Same layer as ``kernels`` and ``reductions`` (NumPy and numba, no dask).  Every
``*_chunk`` takes one block of rows (and its labels) and returns a small partial;
every ``combine_*`` merges a LIST of partials in block order.

Per-cluster moments are merged with Chan et al.'s pairwise formula (count, mean,
summed squared deviation), so within-cluster sums of squares stay accurate in
float64 however far the data sit from the origin.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from . import backend as B
from . import kernels as K
from . import sparse_kernels as SP
from . import xp_kernels as XP

# --------------------------------------------------------------------------- numba loops


@numba.njit(nogil=True, cache=True)
def _cluster_moments(x, labels, w, k):  # pragma: no cover - jit
    """Per-cluster weights, means and Σ w·||x - mean||² (float64, two passes)."""
    m, d = x.shape
    has_w = w.shape[0] > 0
    counts = np.zeros(k)
    means = np.zeros((k, d))
    for i in range(m):
        j = labels[i]
        wi = w[i] if has_w else 1.0
        counts[j] += wi
        for f in range(d):
            means[j, f] += wi * np.float64(x[i, f])
    for j in range(k):
        if counts[j] > 0:
            means[j] /= counts[j]
    m2 = np.zeros(k)
    for i in range(m):
        j = labels[i]
        s = 0.0
        for f in range(d):
            diff = np.float64(x[i, f]) - means[j, f]
            s += diff * diff
        m2[j] += (w[i] if has_w else 1.0) * s
    return counts, means, m2


@numba.njit(nogil=True, cache=True)
def _distance_to_assigned(x, labels, centers, w, k):  # pragma: no cover - jit
    """Per-cluster Σ w·||x - centers[label]|| (Euclidean, not squared), float64."""
    m, d = x.shape
    has_w = w.shape[0] > 0
    out = np.zeros(k)
    for i in range(m):
        j = labels[i]
        s = 0.0
        for f in range(d):
            diff = np.float64(x[i, f]) - centers[j, f]
            s += diff * diff
        out[j] += (w[i] if has_w else 1.0) * np.sqrt(s)
    return out


def _host(sample_weight):
    return None if sample_weight is None else _weights(sample_weight)


def _weights(sample_weight):
    if sample_weight is None:
        return np.empty(0)
    return np.asarray(B.to_host(sample_weight), np.float64)


def _sq_distances(X, centers, shift):
    """(n, k) squared distances to ``centers`` in float64 (GEMM form on shifted rows)."""
    xs = np.asarray(X, dtype=np.float64) - shift
    cs = np.asarray(centers, dtype=np.float64) - shift
    d = np.einsum("ij,ij->i", xs, xs)[:, None] - 2.0 * (xs @ cs.T)
    d += np.einsum("ij,ij->i", cs, cs)[None, :]
    return np.maximum(d, 0.0, out=d)


def _own_and_other(X, labels, centers, shift, *, add=None, skip=None):
    """Per row: squared distance (plus ``add[c]``) to its own cluster ``labels`` and the
    smallest to any other cluster not in ``skip`` — in row tiles, so memory stays
    O(tile × k) however large the block or k.  NumPy out."""
    sparse = B.is_sparse(X)
    if not (sparse or B.is_host(X)):
        return XP.own_and_other(X, labels, centers, shift, add=add, skip=skip)
    X = SP.csr(X) if sparse else X
    n = X.shape[0]
    own, other = np.empty(n), np.empty(n)
    for s in range(0, n, K.SUB_BLOCK_ROWS):
        e = min(n, s + K.SUB_BLOCK_ROWS)
        d = SP.sq_distances(X[s:e], centers) if sparse else _sq_distances(X[s:e], centers, shift)
        if add is not None:
            d += add[None, :]
        idx, lab = np.arange(e - s), labels[s:e]
        own[s:e] = d[idx, lab]
        d[idx, lab] = np.inf
        if skip is not None:
            d[:, skip] = np.inf
        other[s:e] = d.min(axis=1)
    return own, other


# --------------------------------------------------------------------------- per-cluster moments


class ClusterMoments(NamedTuple):
    """Per-cluster weight ``(k,)``, mean ``(k, d)`` and Σ w·||x - mean||² ``(k,)``."""

    counts: np.ndarray
    means: np.ndarray
    m2: np.ndarray

    @property
    def total(self) -> ClusterMoments:
        """The whole data set's moments, merged from the clusters'."""
        n = self.counts.sum()
        mean = (self.counts @ self.means) / n
        dev = ((self.means - mean) ** 2).sum(axis=1)
        m2 = self.m2.sum() + self.counts @ dev
        return ClusterMoments(np.array([n]), mean[None], np.array([m2]))


def cluster_moments_chunk(X, sample_weight, labels, n_clusters: int) -> ClusterMoments:
    labels = np.asarray(labels, dtype=np.int64)
    if B.is_sparse(X):
        return ClusterMoments(*SP.cluster_moments(X, labels, _host(sample_weight), n_clusters))
    if not B.is_host(X):
        return ClusterMoments(*XP.cluster_moments(X, labels, sample_weight, n_clusters))
    w = _weights(sample_weight)
    return ClusterMoments(*_cluster_moments(np.ascontiguousarray(X), labels, w, n_clusters))


def combine_cluster_moments(parts: list[ClusterMoments]) -> ClusterMoments:
    """Chan's pairwise merge, cluster by cluster, in list order."""
    counts = parts[0].counts.copy()
    means = parts[0].means.copy()
    m2 = parts[0].m2.copy()
    for p in parts[1:]:
        n = counts + p.counts
        safe = np.where(n > 0, n, 1.0)
        delta = p.means - means
        means += delta * (p.counts / safe)[:, None]
        m2 += p.m2 + (delta**2).sum(axis=1) * counts * p.counts / safe
        counts = n
    return ClusterMoments(counts, means, m2)


class FeatureMoments(NamedTuple):
    """Per-cluster weight ``(k,)``, mean ``(k, d)`` and Σ w·(x - mean)² per feature
    ``(k, d)``, float64: the archetype profiles' statistics."""

    counts: np.ndarray
    means: np.ndarray
    m2: np.ndarray


def feature_moments_chunk(X, sample_weight, n_clusters: int, labels) -> FeatureMoments:
    """Per-cluster, per-feature moments of one block (two passes over the block)."""
    labels = np.asarray(labels, dtype=np.int64)
    if B.is_sparse(X):
        return FeatureMoments(*SP.cluster_moments(X, labels, _host(sample_weight), n_clusters,
                                                  per_feature=True))  # fmt: skip
    if not B.is_host(X):
        return FeatureMoments(
            *XP.cluster_moments(X, labels, sample_weight, n_clusters, per_feature=True)
        )
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if sample_weight is None else _weights(sample_weight)
    counts = np.bincount(labels, weights=w, minlength=n_clusters)
    onehot = _onehot(labels, n_clusters) * w[:, None]
    means = (onehot.T @ X) / np.where(counts > 0, counts, 1.0)[:, None]
    m2 = onehot.T @ (X - means[labels]) ** 2
    return FeatureMoments(counts, means, m2)


def combine_feature_moments(parts: list[FeatureMoments]) -> FeatureMoments:
    """Chan's pairwise merge per cluster and feature, in list order."""
    counts, means, m2 = (a.copy() for a in parts[0])
    for p in parts[1:]:
        n = counts + p.counts
        safe = np.where(n > 0, n, 1.0)
        delta = p.means - means
        means += delta * (p.counts / safe)[:, None]
        m2 += p.m2 + delta**2 * (counts * p.counts / safe)[:, None]
        counts = n
    return FeatureMoments(counts, means, m2)


# --------------------------------------------------------------------------- Davies-Bouldin


def spread_chunk(X, sample_weight, centroids, labels) -> np.ndarray:
    """Per-cluster Σ w·||x - centroid|| of one block (Davies-Bouldin's intra distances)."""
    labels = np.asarray(labels, dtype=np.int64)
    if B.is_sparse(X):
        return SP.assigned_distances(X, labels, centroids, _host(sample_weight),
                                     centroids.shape[0], root=True)  # fmt: skip
    if not B.is_host(X):
        return XP.distance_to_assigned(X, labels, centroids, sample_weight, centroids.shape[0])
    return _distance_to_assigned(
        np.ascontiguousarray(X), labels, np.ascontiguousarray(centroids, dtype=np.float64),
        _weights(sample_weight), centroids.shape[0],
    )  # fmt: skip


def davies_bouldin(centroids, mean_spread) -> float:
    """DB index from centroids (k, d) and each cluster's mean distance to its centroid."""
    diff = centroids[:, None, :] - centroids[None, :, :]
    sep = np.sqrt((diff**2).sum(axis=2))
    if np.allclose(mean_spread, 0) or np.allclose(sep, 0):
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (mean_spread[:, None] + mean_spread[None, :]) / sep
    ratio[np.isinf(ratio)] = np.nan
    np.fill_diagonal(ratio, np.nan)
    return float(np.mean(np.nanmax(ratio, axis=1)))


def calinski_harabasz(moments: ClusterMoments, n_samples: float) -> float:
    """CH index: between-cluster over within-cluster dispersion, scaled by degrees of freedom."""
    k = int(np.count_nonzero(moments.counts > 0))
    total = moments.total
    within = float(moments.m2.sum())
    between = float(total.m2[0] - within)
    if within == 0.0:
        return 1.0
    return between * (n_samples - k) / (within * (k - 1.0))


# --------------------------------------------------------------------------- silhouettes


def silhouette_from_sums(dist_sums, labels, cluster_sizes) -> np.ndarray:
    """Silhouette of rows from their summed distances to each cluster.

    dist_sums : (m, k) Σ_j d(x_i, x_j) over the rows j of each cluster (self excluded
    by having d(x_i, x_i) = 0); labels : (m,); cluster_sizes : (k,) row counts.
    A row alone in its cluster scores 0, as in scikit-learn.
    """
    idx = np.arange(labels.shape[0])
    own = cluster_sizes[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = dist_sums[idx, labels] / (own - 1)
        mean_other = dist_sums / cluster_sizes[None, :]
    mean_other[idx, labels] = np.inf
    mean_other[:, cluster_sizes == 0] = np.inf
    b = mean_other.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b - a) / np.maximum(a, b)
    s[own <= 1] = 0.0
    return np.nan_to_num(s)


def _distances(xa, xb, self_offset: int | None = None) -> np.ndarray:
    """Euclidean distances (len(xa), len(xb)) in float64, GEMM form on rows centred on
    xb's mean.  ``self_offset``: row i of ``xa`` is row ``self_offset + i`` of ``xb``,
    and that distance is set to exactly 0 (the GEMM form leaves a rounding residue).
    Sparse rows are not centred (that would make them dense)."""
    if B.is_sparse(xa) or B.is_sparse(xb):
        d2 = SP.pairwise_sq_distances(xa, xb)
    else:
        xa = np.asarray(xa, dtype=np.float64)
        xb = np.asarray(xb, dtype=np.float64)
        d2 = _sq_distances(xa, xb, xb.mean(axis=0))
    if self_offset is not None:
        i = np.arange(xa.shape[0])
        d2[i, self_offset + i] = 0.0
    return np.sqrt(d2, out=d2)


def _onehot(labels, k) -> np.ndarray:
    out = np.zeros((labels.shape[0], k))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def pairwise_cluster_sums(xa, xb, labels_b, k, self_offset: int | None = None) -> np.ndarray:
    """(len(xa), k) sums of Euclidean distances from rows of ``xa`` to each cluster of ``xb``."""
    if not (B.is_host(xa) or B.is_sparse(xa)):
        return XP.pairwise_cluster_sums(xa, xb, labels_b, k, self_offset)
    return _distances(xa, xb, self_offset) @ _onehot(np.asarray(labels_b), k)


def silhouette_values(X, labelings, n_clusters, block_rows: int = 1024,
                      members=None) -> list[np.ndarray]:  # fmt: skip
    """Exact Euclidean silhouette of every row of an in-memory X, under each labeling.

    Row block by row block (memory ``block_rows × n``, scikit-learn's chunked
    approach); each block's distances are computed once and reused for every labeling.
    ``members``: per labeling, None or a boolean mask of the rows that make up the
    data set for it (the others are neither scored, NaN, nor counted in the
    clusters' mean distances): the silhouette of the subset ``X[mask]`` alone.
    """
    n = X.shape[0]
    members = [None] * len(labelings) if members is None else members
    labelings = [np.asarray(lab, dtype=np.int64) for lab in labelings]
    onehots = [_onehot(lab, k) for lab, k in zip(labelings, n_clusters, strict=True)]
    for oh, mask in zip(onehots, members, strict=True):
        if mask is not None:
            oh[~mask] = 0.0
    sizes = [oh.sum(axis=0) for oh in onehots]
    out = [np.empty(n) for _ in labelings]
    for s in range(0, n, block_rows):
        e = min(n, s + block_rows)
        dist = _distances(X[s:e], X, self_offset=s)
        for values, lab, oh, sz in zip(out, labelings, onehots, sizes, strict=True):
            values[s:e] = silhouette_from_sums(dist @ oh, lab[s:e], sz)
    for values, mask in zip(out, members, strict=True):
        if mask is not None:  # scored with the rest (one product is cheaper than a gather)
            values[~mask] = np.nan
    return out


def stratified_members(labels, keys, per_cluster: int) -> np.ndarray:
    """Boolean mask of a stratified subsample: in each cluster, its ``per_cluster`` rows
    of smallest key (all of them if it has fewer).

    With the uniform random keys of a row sample this is a uniform draw within each
    cluster, so each cluster's mean distances (the silhouette's a and b) are estimated
    without bias; only the clusters' weights change.
    """
    labels = np.asarray(labels)
    mask = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        mask[rows[_smallest(keys[rows], per_cluster)]] = True
    return mask


def macro_mean(values, labels) -> float:
    """The mean over clusters of each cluster's mean of the finite ``values`` (NaN
    when fewer than two clusters have any)."""
    values, labels = np.asarray(values), np.asarray(labels)
    finite = np.isfinite(values)
    clusters = np.unique(labels[finite])
    if clusters.shape[0] < 2:
        return np.nan
    return float(np.mean([values[finite & (labels == c)].mean() for c in clusters]))


def sq_silhouette_chunk(X, labels, moments: ClusterMoments, shift) -> np.ndarray:
    """Per-row silhouette for SQUARED Euclidean distance, exact, from per-cluster moments.

    The mean squared distance from x to the rows of cluster C is
    ``||x - μ_C||² + v_C`` with ``v_C = m2_C / n_C``; for x's own cluster the mean runs
    over the n_C - 1 others: ``n_C / (n_C - 1) · (||x - μ_C||² + v_C)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = moments.counts
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(counts > 0, moments.m2 / counts, 0.0)
    d_own, b = _own_and_other(X, labels, moments.means, shift, add=v, skip=counts == 0)
    own = counts[labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = own / (own - 1) * d_own
        s = (b - a) / np.maximum(a, b)
    s[own <= 1] = 0.0
    return np.nan_to_num(s)


def simplified_silhouette_chunk(X, centers, center_set, shift) -> tuple[np.ndarray, np.ndarray]:
    """Centroid-based silhouette of each row and its label.

    a = distance to the nearest centre, b = distance to the second nearest;
    s = (b - a) / max(a, b).  With one centre every row scores 0.
    """
    labels, _ = K.assign_labels(X, center_set, shift)
    if centers.shape[0] < 2:
        return np.zeros(labels.shape[0]), labels
    a2, b2 = _own_and_other(X, labels, centers, K.as_shift(shift, B.host_dtype(X)))
    a, b = np.sqrt(a2), np.sqrt(b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b - a) / np.maximum(a, b)
    return np.nan_to_num(s), labels


# --------------------------------------------------------------------------- row samples


class RowSample(NamedTuple):
    """Rows drawn by random keys: the smallest keys win (uniform without replacement).

    keys (m,), rows (m, d) (NumPy, or CSR for sparse data: ``kernels.sample_rows``),
    labels (m,) or None, index (m,) global row numbers,
    counts (k,) per-cluster row counts of the rows covered, or None without labels;
    weights (m,) the rows' sample weights, or None.
    """

    keys: np.ndarray
    rows: np.ndarray
    labels: np.ndarray | None
    index: np.ndarray
    counts: np.ndarray | None
    weights: np.ndarray | None = None


def _smallest(keys, m) -> np.ndarray:
    return K.farthest(-keys, m)


def _take(sample: RowSample, idx, counts) -> RowSample:
    return RowSample(
        sample.keys[idx], sample.rows[idx],
        None if sample.labels is None else sample.labels[idx], sample.index[idx], counts,
        None if sample.weights is None else sample.weights[idx],
    )  # fmt: skip


def _keep(sample: RowSample, size: int, stratify: bool) -> RowSample:
    """The ``size`` smallest keys overall, or per cluster when stratified."""
    if not stratify:
        return _take(sample, _smallest(sample.keys, size), sample.counts)
    parts = []
    for c in np.unique(sample.labels):
        members = np.flatnonzero(sample.labels == c)
        parts.append(members[_smallest(sample.keys[members], size)])
    idx = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.intp)
    return _take(sample, idx, sample.counts)


def sample_chunk(X, labels, seed, size: int, n_clusters: int, stratify: bool, offset: int):
    """Candidate sample rows of one block (uniform keys from the block's own seed)."""
    keys = np.random.default_rng(seed).random(X.shape[0])
    return sample_by_keys(X, keys, size, offset, labels, n_clusters, stratify)


def sample_by_keys(X, keys, size: int, offset: int, labels=None, n_clusters: int = 0,
                   stratify: bool = False) -> RowSample:  # fmt: skip
    """The block's ``size`` rows of smallest key (per cluster when stratified)."""
    n = X.shape[0]
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    counts = None if labels is None else np.bincount(labels, minlength=n_clusters)
    # choose on the keys alone, then copy only the chosen rows (from any array library)
    full = RowSample(keys, np.empty((n, 0)), labels, np.arange(n) + offset, counts)
    kept = _keep(full, size, stratify)
    return kept._replace(rows=K.sample_rows(X, kept.index - offset))


def combine_samples(parts: list[RowSample], size: int, stratify: bool) -> RowSample:
    labels = None if parts[0].labels is None else np.concatenate([p.labels for p in parts])
    counts = None if parts[0].counts is None else np.sum([p.counts for p in parts], axis=0)
    weights = None if parts[0].weights is None else np.concatenate([p.weights for p in parts])
    merged = RowSample(
        np.concatenate([p.keys for p in parts]), K.stack_rows([p.rows for p in parts]),
        labels, np.concatenate([p.index for p in parts]), counts, weights,
    )  # fmt: skip
    return _keep(merged, size, stratify)


def stratified_quota(counts, size: int) -> np.ndarray:
    """Rows to draw per cluster: equal shares capped by cluster size (water-filling).

    Small clusters are taken whole; what they leave goes to the larger ones, so the
    quotas sum to ``min(size, Σ counts)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quota = np.zeros_like(counts)
    left, open_ = size, counts > 0
    while left > 0 and open_.any():
        share = max(left // int(open_.sum()), 1)
        for c in np.flatnonzero(open_):
            take = min(share, counts[c] - quota[c], left)
            quota[c] += take
            left -= take
        open_ = quota < counts
    return quota


def finalize_sample(sample: RowSample, size: int, stratify: bool) -> RowSample:
    """Apply the stratified quotas (the uniform sample is already final)."""
    if not stratify:
        return sample
    quota = stratified_quota(sample.counts, size)
    idx = []
    for c in np.flatnonzero(quota):
        members = np.flatnonzero(sample.labels == c)
        idx.append(members[_smallest(sample.keys[members], int(quota[c]))])
    return _take(sample, np.sort(np.concatenate(idx)), sample.counts)


# --------------------------------------------------------------------------- select_k's passes


def weighted_sum(values, sample_weight) -> float:
    """Σ w·values of per-row host values (weights from any array library)."""
    w = B.to_host(sample_weight)
    return float(values.sum() if w is None else values @ w)


def evaluate_chunk(X, sample_weight, centers_list, center_sets, shift, sampling):
    """Per centre set: cluster moments of the nearest-centre assignment and Σ w·simplified
    silhouette; plus this block's candidate rows for the silhouette sample.

    ``sampling = (seed, size, offset)``.
    """
    evals = []
    for centers, cs in zip(centers_list, center_sets, strict=True):
        simple, labels = simplified_silhouette_chunk(X, centers, cs, shift)
        mom = cluster_moments_chunk(X, sample_weight, labels, centers.shape[0])
        evals.append((mom, weighted_sum(simple, sample_weight)))
    seed, size, offset = sampling
    return evals, sample_chunk(X, None, seed, size, 0, False, offset)


def combine_evaluations(parts, size: int):
    evals = [
        (
            combine_cluster_moments([g[0] for g in group]),
            sum(g[1] for g in group),
        )
        for group in zip(*(p[0] for p in parts), strict=True)
    ]
    return evals, combine_samples([p[1] for p in parts], size, False)


def spread_chunk_sets(X, sample_weight, center_sets, shift, moments_list, total_mean):
    """Per centre set: per-cluster Σ w·||x - mean|| (Davies-Bouldin) and Σ w·s_sq (the
    squared-Euclidean silhouette), labels from the nearest centre."""
    out = []
    for cs, mom in zip(center_sets, moments_list, strict=True):
        labels, _ = K.assign_labels(X, cs, shift)
        spread = spread_chunk(X, sample_weight, mom.means, labels)
        sq = sq_silhouette_chunk(X, labels, mom, total_mean)
        out.append((spread, weighted_sum(sq, sample_weight)))
    return out


def combine_spreads(parts):
    return [
        (np.sum([g[0] for g in group], axis=0), sum(g[1] for g in group))
        for group in zip(*parts, strict=True)
    ]
