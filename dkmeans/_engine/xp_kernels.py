"""The chunk kernels for blocks that are not NumPy (CuPy and other array API libraries).

Same contracts as the numba kernels in ``kernels`` (which dispatch here), written
only with the array API standard so the heavy arithmetic runs where the block
lives: the ``x·cᵀ`` GEMM, the argmin and the per-cluster sums (a one-hot GEMM,
which a GPU does at matmul speed where a scatter-add would serialise).  Small
inputs (centres, shift, host weights) are moved to the block's device; results come
back as NumPy.  Rows are processed in tiles so that the ``tile × k`` score matrix
stays bounded however large the block or k.
"""

from __future__ import annotations

import numpy as np

from . import backend as B

TILE_ELEMENTS = 1 << 22  # tile rows × centres in one score matrix (16 MiB in float32)


def _tile_rows(n_centers: int) -> int:
    return max(256, TILE_ELEMENTS // max(n_centers, 1))


def _tiles(n: int, n_centers: int):
    step = _tile_rows(n_centers)
    for s in range(0, n, step):
        yield s, min(n, s + step)


def _shifted(X, s, e, shift):
    """Rows s..e minus the shift (``shift`` already on the device, or None)."""
    rows = X[s:e, ...]
    return rows if shift is None else rows - shift


def _device_shift(xp, X, shift):
    shift = np.asarray(shift, dtype=B.host_dtype(X))
    return xp.asarray(shift) if shift.any() else None


def _nearest(xp, xs, centers, c_sq):
    """Nearest centre of each row and ||x||² + min_j(||c_j||² - 2 x·c_j), clamped at 0."""
    score = c_sq[None, :] - 2 * (xs @ centers.T)
    xx = xp.sum(xs * xs, axis=1)
    best = xp.astype(xp.min(score, axis=1), xp.float64) + xp.astype(xx, xp.float64)
    return xp.astype(xp.argmin(score, axis=1), xp.int32), xp.maximum(best, 0.0)


def _weights(X, sample_weight):
    return None if sample_weight is None else B.like(X, sample_weight, B.host_dtype(X))


def lloyd_step(X, center_sets, shift, sample_weight, n_far, partial):
    """``kernels.lloyd_step`` for a non-NumPy block; ``partial`` builds a LloydPartial."""
    xp = B.namespace(X)
    n, d = X.shape
    f64 = xp.float64
    w = _weights(X, sample_weight)
    dev_shift = _device_shift(xp, X, shift)
    out = []
    for cs in center_sets:
        k = cs.shifted.shape[0]
        centers, c_sq = B.like(X, cs.shifted), B.like(X, cs.sq_norms)
        sums = xp.zeros((k, d), dtype=f64)
        counts = xp.zeros(k, dtype=f64)
        dist = xp.empty(n, dtype=f64)
        labels = xp.empty(n, dtype=xp.int32)
        ids = xp.arange(k, dtype=xp.int32)
        for s, e in _tiles(n, k):
            xs = _shifted(X, s, e, dev_shift)
            lab, dd = _nearest(xp, xs, centers, c_sq)
            onehot = xp.astype(lab[:, None] == ids[None, :], xs.dtype)
            if w is not None:
                onehot = onehot * w[s:e, None]
            sums += xp.astype(onehot.T @ xs, f64, copy=False)
            counts += xp.sum(xp.astype(onehot, f64), axis=0)
            dist[s:e] = dd
            labels[s:e] = lab
        cost = float(xp.sum(dist if w is None else dist * xp.astype(w, f64)))
        n_keep = min(n_far, n)  # farthest first, ties by row (as the numba heap)
        far = (
            xp.argsort(dist, descending=True, stable=True)[:n_keep]
            if n_keep
            else xp.zeros(0, dtype=xp.int64)
        )
        far_w = (
            np.ones(far.shape[0], dtype=B.host_dtype(X))
            if w is None
            else B.to_host(xp.take(w, far))
        )
        far_dist = B.to_host(xp.astype(xp.take(dist, far), X.dtype))
        far_rows = B.to_host(xp.take(X, far, axis=0))
        far_label = B.to_host(xp.take(labels, far))
        sums, counts = B.to_host(sums), B.to_host(counts)
        out.append(partial(sums, counts, cost, far_dist, far_rows, far_w, far_label))
    return out


def assign_labels(X, center_set, shift):
    """Nearest centre (int32) and squared distance (X's dtype), as NumPy."""
    xp = B.namespace(X)
    n = X.shape[0]
    centers, c_sq = B.like(X, center_set.shifted), B.like(X, center_set.sq_norms)
    dev_shift = _device_shift(xp, X, shift)
    labels = xp.empty(n, dtype=xp.int32)
    dist = xp.empty(n, dtype=X.dtype)
    for s, e in _tiles(n, centers.shape[0]):
        lab, dd = _nearest(xp, _shifted(X, s, e, dev_shift), centers, c_sq)
        labels[s:e] = lab
        dist[s:e] = xp.astype(dd, X.dtype)
    return B.to_host(labels), B.to_host(dist)


def min_cost_update(X, cost, nearest, center_set, shift, first_index):
    """Lower host arrays ``cost``/``nearest`` in place with the new candidates' distances."""
    xp = B.namespace(X)
    centers, c_sq = B.like(X, center_set.shifted), B.like(X, center_set.sq_norms)
    dev_shift = _device_shift(xp, X, shift)
    for s, e in _tiles(X.shape[0], centers.shape[0]):
        lab, dd = _nearest(xp, _shifted(X, s, e, dev_shift), centers, c_sq)
        lab, dd = B.to_host(lab), B.to_host(dd)
        better = dd < cost[s:e]
        cost[s:e][better] = dd[better]
        nearest[s:e][better] = lab[better] + first_index


def exact_cost(X, centers, labels, sample_weight) -> float:
    """Σ w·||x - c_label||² by direct differences in float64."""
    xp = B.namespace(X)
    f64 = xp.float64
    centers = B.like(X, centers, np.float64)
    labels = B.like(X, labels)
    w = None if sample_weight is None else B.like(X, sample_weight, np.float64)
    total = 0.0
    for s, e in _tiles(X.shape[0], X.shape[1]):
        diff = xp.astype(X[s:e, ...], f64, copy=False) - xp.take(centers, labels[s:e], axis=0)
        per_row = xp.sum(diff * diff, axis=1)
        total += float(xp.sum(per_row if w is None else per_row * w[s:e]))
    return total


def moments(X, sample_weight=None):
    """(count, column means, centred sums of squares, non-finite count), float64.

    As the numba kernel: non-finite values are left out of the mean and counted, and
    they surface in the sums of squares.
    """
    xp = B.namespace(X)
    x = xp.astype(X, xp.float64, copy=False)
    finite = xp.isfinite(x)
    n_bad = int(x.shape[0] * x.shape[1] - int(xp.sum(xp.astype(finite, xp.int64))))
    if sample_weight is None:
        count = x.shape[0]
        mean = xp.sum(xp.where(finite, x, 0.0), axis=0) / max(count, 1)
        m2 = xp.sum((x - mean) ** 2, axis=0)
    else:
        w = B.like(X, sample_weight, np.float64)
        count = float(xp.sum(w))
        if count == 0:
            zeros = np.zeros(x.shape[1])
            return 0, zeros, zeros.copy(), n_bad
        mean = (w @ x) / count
        m2 = w @ (x - mean) ** 2
    return count, B.to_host(mean), B.to_host(m2), n_bad


def _sq_distances(X, centers, shift):
    """(n, k) squared distances to ``centers`` in float64 (GEMM form on shifted rows)."""
    xp = B.namespace(X)
    shift = B.like(X, shift, np.float64)
    xs = xp.astype(X, xp.float64, copy=False) - shift
    cs = B.like(X, centers, np.float64) - shift
    d = xp.sum(xs * xs, axis=1)[:, None] - 2.0 * (xs @ cs.T)
    return xp.maximum(d + xp.sum(cs * cs, axis=1)[None, :], 0.0)


def own_and_other(X, labels, centers, shift, *, add=None, skip=None):
    """``cluster_stats._own_and_other`` for a non-NumPy block (masks where NumPy
    indexes: the standard has no integer-array assignment)."""
    n = X.shape[0]
    if n == 0:
        return np.empty(0), np.empty(0)
    xp = B.namespace(X)
    labels = B.like(X, labels)
    ids = xp.arange(centers.shape[0], dtype=labels.dtype)
    add = None if add is None else B.like(X, add, np.float64)
    skip = None if skip is None else B.like(X, skip)
    own, other = [], []
    for s, e in _tiles(n, centers.shape[0]):
        d = _sq_distances(X[s:e, ...], centers, shift)
        if add is not None:
            d = d + add[None, :]
        mine = labels[s:e, None] == ids[None, :]
        own.append(xp.sum(xp.where(mine, d, 0.0), axis=1))
        excluded = mine if skip is None else mine | skip[None, :]
        other.append(xp.min(xp.where(excluded, xp.inf, d), axis=1))
    return B.to_host(xp.concat(own)), B.to_host(xp.concat(other))


# --------------------------------------------------------------------------- per-cluster sums


def _onehot(xp, labels, n_clusters: int, w=None):
    """(rows, k) float64 indicator of each row's cluster, times its weight."""
    ids = xp.arange(n_clusters, dtype=labels.dtype)
    oh = xp.astype(labels[:, None] == ids[None, :], xp.float64)
    return oh if w is None else oh * w[:, None]


def _labelled(X, labels, sample_weight):
    w = None if sample_weight is None else B.like(X, sample_weight, np.float64)
    return B.like(X, labels), w


def cluster_moments(X, labels, sample_weight, n_clusters: int, *, per_feature=False):
    """Per-cluster weights, means and Σ w·||x - mean||² (float64; two sweeps of the
    block); with ``per_feature`` the sums of squares are kept per feature, (k, d)."""
    xp = B.namespace(X)
    n, d = X.shape
    labels, w = _labelled(X, labels, sample_weight)

    def sweep():
        for s, e in _tiles(n, n_clusters):
            oh = _onehot(xp, labels[s:e], n_clusters, None if w is None else w[s:e])
            yield s, e, oh, xp.astype(X[s:e, ...], xp.float64, copy=False)

    counts = xp.zeros(n_clusters, dtype=xp.float64)
    sums = xp.zeros((n_clusters, d), dtype=xp.float64)
    for _, _, oh, x in sweep():
        counts += xp.sum(oh, axis=0)
        sums += oh.T @ x
    means = sums / xp.where(counts > 0, counts, 1.0)[:, None]
    m2 = xp.zeros((n_clusters, d) if per_feature else n_clusters, dtype=xp.float64)
    for s, e, oh, x in sweep():
        sq = (x - xp.take(means, labels[s:e], axis=0)) ** 2
        m2 += oh.T @ (sq if per_feature else xp.sum(sq, axis=1))
    return B.to_host(counts), B.to_host(means), B.to_host(m2)


def distance_to_assigned(X, labels, centers, sample_weight, n_clusters: int):
    """Per-cluster Σ w·||x - centers[label]|| (Euclidean, not squared), float64."""
    xp = B.namespace(X)
    labels, w = _labelled(X, labels, sample_weight)
    centers = B.like(X, centers, np.float64)
    out = xp.zeros(n_clusters, dtype=xp.float64)
    for s, e in _tiles(X.shape[0], n_clusters):
        x = xp.astype(X[s:e, ...], xp.float64, copy=False)
        diff = x - xp.take(centers, labels[s:e], axis=0)
        out += xp.sqrt(xp.sum(diff * diff, axis=1)) @ _onehot(
            xp, labels[s:e], n_clusters, None if w is None else w[s:e]
        )
    return B.to_host(out)


def pairwise_cluster_sums(xa, xb, labels_b, n_clusters: int, self_offset):
    """(len(xa), k) sums of Euclidean distances from rows of ``xa`` to each cluster of
    ``xb``; ``self_offset`` as ``cluster_stats._distances``."""
    xp = B.namespace(xa)
    xb = B.like(xa, xb)
    shift = xp.mean(xp.astype(xb, xp.float64), axis=0)
    d2 = _sq_distances(xa, xb, shift)
    if self_offset is not None:
        i = xp.arange(xa.shape[0])[:, None] + self_offset
        d2 = xp.where(xp.arange(xb.shape[0])[None, :] == i, 0.0, d2)
    return B.to_host(xp.sqrt(d2) @ _onehot(xp, B.like(xa, labels_b), n_clusters))
