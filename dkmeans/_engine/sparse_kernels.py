"""Chunk kernels for scipy.sparse blocks (CSR rows): numba on the CSR arrays, no dask.

``kernels``, ``cluster_stats`` and ``linalg`` hand a block here when it is
scipy.sparse (``backend.is_sparse``), under the contracts of their dense kernels.
Centres and every result are dense NumPy; nothing here densifies a block, so a pass
costs O(nnz · k) as scikit-learn's sparse Lloyd (``cluster/_k_means_lloyd.pyx``).

The algebra.  For a CSR row x with stored entries (f, v) and a dense centre c::

    ||x - c||² = ||x||² - 2 x·c + ||c||²,     x·c = Σ_(f,v) v·c_f

per row, in float64 (the dense kernels' GEMM form, as scikit-learn computes it for
sparse X).  A cost that must be exact (``exact_cost``, the metrics' per-cluster
sums) uses direct differences instead::

    ||x - c||² = Σ_(f,v) (v - c_f)² + (||c||² - Σ_(f,v) c_f²)

where the second term is the centre's mass on the features the row does not store
(never negative but for rounding; clamped at 0).

The shift.  The dense kernels work on rows shifted by a common point s; a shifted
sparse row would be dense, so here the shift is algebra: centres come shifted
(``CenterSet.shifted = c - s``) and are un-shifted in float64, and the Lloyd sums
returned are those of shifted rows, ``Σ w·(x - s) = Σ w·x - (Σ w)·s``, as the
contract says.  Column moments count a missing entry as a stored zero.

A block in another sparse format is converted to CSR, and a CSR block that is not
canonical (duplicate entries) is summed, on a copy, first.  Everything here is also
what a mini-batch step needs: ``lloyd_step`` on a batch of CSR rows.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

# --------------------------------------------------------------------------- numba loops


@numba.njit(nogil=True, cache=True, inline="always")
def _row_dot(data, indices, start, stop, ct, xc):  # pragma: no cover - jit
    """xc[j] = x·c_j over the row's stored entries (ct is Cᵀ, (d, k)); returns ||x||²."""
    k = xc.shape[0]
    for j in range(k):
        xc[j] = 0.0
    xx = 0.0
    for p in range(start, stop):
        v = np.float64(data[p])
        xx += v * v
        col = ct[indices[p]]
        for j in range(k):
            xc[j] += v * col[j]
    return xx


@numba.njit(nogil=True, cache=True, inline="always")
def _nearest(xc, c_sq):  # pragma: no cover - jit
    """argmin_j ||c_j||² - 2 x·c_j and its value."""
    best = c_sq[0] - 2.0 * xc[0]
    best_j = 0
    for j in range(1, xc.shape[0]):
        v = c_sq[j] - 2.0 * xc[j]
        if v < best:
            best = v
            best_j = j
    return best, best_j


@numba.njit(nogil=True, cache=True)
def _lloyd(data, indices, indptr, ct, c_sq, w, sums, counts, dist, labels):  # pragma: no cover
    """Label rows, accumulate Σ w·x (unshifted) and Σ w per cluster, return Σ w·d².

    OUT: sums (k, d) float64, counts (k,) float64, dist (n,) float64 squared
    distances (GEMM form, clamped at 0), labels (n,) int32.
    """
    has_w = w.shape[0] > 0
    xc = np.empty(ct.shape[1])
    cost = 0.0
    for i in range(indptr.shape[0] - 1):
        a, b = indptr[i], indptr[i + 1]
        xx = _row_dot(data, indices, a, b, ct, xc)
        best, j = _nearest(xc, c_sq)
        dd = xx + best
        dd = dd if dd > 0.0 else 0.0
        wi = np.float64(w[i]) if has_w else 1.0
        cost += wi * dd
        counts[j] += wi
        row = sums[j]
        for p in range(a, b):
            row[indices[p]] += wi * np.float64(data[p])
        dist[i] = dd
        labels[i] = j
    return cost


@numba.njit(nogil=True, cache=True)
def _assign(data, indices, indptr, ct, c_sq, labels, dist):  # pragma: no cover - jit
    """Nearest centre and squared distance of every row (no accumulation)."""
    xc = np.empty(ct.shape[1])
    for i in range(indptr.shape[0] - 1):
        xx = _row_dot(data, indices, indptr[i], indptr[i + 1], ct, xc)
        best, j = _nearest(xc, c_sq)
        dd = xx + best
        labels[i] = j
        dist[i] = dd if dd > 0.0 else 0.0


@numba.njit(nogil=True, cache=True)
def _min_update(data, indices, indptr, ct, c_sq, first, cost, nearest):  # pragma: no cover
    """Lower each row's min cost with distances to new candidates (in place)."""
    xc = np.empty(ct.shape[1])
    for i in range(indptr.shape[0] - 1):
        xx = _row_dot(data, indices, indptr[i], indptr[i + 1], ct, xc)
        best, j = _nearest(xc, c_sq)
        dd = xx + best
        dd = dd if dd > 0.0 else 0.0
        if dd < cost[i]:
            cost[i] = dd
            nearest[i] = first + j


@numba.njit(nogil=True, cache=True)
def _all_sq(data, indices, indptr, ct, c_sq, out):  # pragma: no cover - jit
    """out[i, j] = ||x_i - c_j||² (GEMM form, clamped at 0), float64."""
    xc = np.empty(ct.shape[1])
    for i in range(indptr.shape[0] - 1):
        xx = _row_dot(data, indices, indptr[i], indptr[i + 1], ct, xc)
        for j in range(xc.shape[0]):
            dd = xx + c_sq[j] - 2.0 * xc[j]
            out[i, j] = dd if dd > 0.0 else 0.0


@numba.njit(nogil=True, cache=True)
def _assigned(data, indices, indptr, labels, centers, c_sq, w, root, out):  # pragma: no cover
    """out[label] += w·||x - c_label||² (or its square root), by direct differences."""
    has_w = w.shape[0] > 0
    for i in range(indptr.shape[0] - 1):
        j = labels[i]
        c = centers[j]
        s = 0.0
        stored = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            cf = c[indices[p]]
            diff = np.float64(data[p]) - cf
            s += diff * diff
            stored += cf * cf
        rest = c_sq[j] - stored
        dd = s + (rest if rest > 0.0 else 0.0)
        if root:
            dd = np.sqrt(dd)
        out[j] += (w[i] if has_w else 1.0) * dd


@numba.njit(nogil=True, cache=True)
def _cluster_sums(data, indices, indptr, labels, w, sums, counts, stored_w):  # pragma: no cover
    """Per-cluster Σ w·x (k, d), Σ w (k,) and, per feature, the weight of the rows
    that store it (k, d; length-0 to skip)."""
    has_w = w.shape[0] > 0
    per_feature = stored_w.shape[0] > 0
    for i in range(indptr.shape[0] - 1):
        j = labels[i]
        wi = w[i] if has_w else 1.0
        counts[j] += wi
        for p in range(indptr[i], indptr[i + 1]):
            sums[j, indices[p]] += wi * np.float64(data[p])
            if per_feature:
                stored_w[j, indices[p]] += wi


@numba.njit(nogil=True, cache=True)
def _feature_m2(data, indices, indptr, labels, w, means, m2):  # pragma: no cover - jit
    """m2[label, f] += w·(v - mean[label, f])² over stored entries (the missing ones'
    share is added by the caller)."""
    has_w = w.shape[0] > 0
    for i in range(indptr.shape[0] - 1):
        j = labels[i]
        wi = w[i] if has_w else 1.0
        for p in range(indptr[i], indptr[i + 1]):
            diff = np.float64(data[p]) - means[j, indices[p]]
            m2[j, indices[p]] += wi * diff * diff


@numba.njit(nogil=True, cache=True)
def _moments(data, indices, indptr, n_features, w):  # pragma: no cover - jit
    """Weighted count, column means, centred sums of squares (float64, two passes over
    the stored entries; missing entries are zeros) and the non-finite count."""
    has_w = w.shape[0] > 0
    total = 0.0
    sums = np.zeros(n_features)
    stored_w = np.zeros(n_features)
    n_bad = 0
    for i in range(indptr.shape[0] - 1):
        wi = np.float64(w[i]) if has_w else 1.0
        total += wi
        for p in range(indptr[i], indptr[i + 1]):
            f = indices[p]
            v = np.float64(data[p])
            stored_w[f] += wi
            if np.isfinite(v):
                sums[f] += wi * v
            else:
                n_bad += 1
    mean = sums / total if total > 0 else np.zeros(n_features)
    m2 = np.zeros(n_features)
    for i in range(indptr.shape[0] - 1):
        wi = np.float64(w[i]) if has_w else 1.0
        for p in range(indptr[i], indptr[i + 1]):
            diff = np.float64(data[p]) - mean[indices[p]]
            m2[indices[p]] += wi * diff * diff
    for f in range(n_features):
        missing = total - stored_w[f]
        if missing > 0:
            m2[f] += missing * mean[f] * mean[f]
    return total, mean, m2, n_bad


@numba.njit(nogil=True, cache=True)
def _row_sq_norms(data, indptr, out):  # pragma: no cover - jit
    for i in range(indptr.shape[0] - 1):
        s = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            v = np.float64(data[p])
            s += v * v
        out[i] = s


# --------------------------------------------------------------------------- helpers


def csr(X):
    """``X`` as canonical CSR (each entry stored once): ``X`` itself when it is."""
    if X.format != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def _parts(X):
    return X.data, X.indices, X.indptr


def _weights(sample_weight) -> np.ndarray:
    """Host weights as float64, length 0 meaning 'all ones' (numba branches on it)."""
    if sample_weight is None:
        return np.empty(0)
    return np.asarray(sample_weight, dtype=np.float64)


def _unshifted(shifted, shift, dtype):
    """Centres ``shifted + s`` in float64 (s as the rows see it: rounded to the data
    dtype), with their transpose for the row loops and their squared norms."""
    s = np.asarray(shift, dtype=dtype).astype(np.float64)
    c = np.asarray(shifted, dtype=np.float64) + s
    return c, np.ascontiguousarray(c.T), np.einsum("ij,ij->i", c, c), s


def row_sq_norms(X) -> np.ndarray:
    """||x_i||² of every row, float64."""
    X = csr(X)
    out = np.empty(X.shape[0])
    _row_sq_norms(X.data, X.indptr, out)
    return out


def all_finite(X) -> bool:
    """No NaN or infinity among the stored entries."""
    return bool(np.isfinite(X.data).all())


def n_nonfinite(X) -> int:
    return int(X.data.size - np.count_nonzero(np.isfinite(X.data)))


# --------------------------------------------------------------------------- Lloyd, labels


@np.errstate(invalid="ignore", over="ignore")
def lloyd_step(X, center_sets, shift, sample_weight=None):
    """One Lloyd step over a CSR block for several centre sets.

    Returns one ``(sums, counts, cost, dist, labels)`` per set: sums (k, d) float64 of
    SHIFTED rows, counts (k,), cost (float, GEMM form), every row's squared distance
    (n,) float64 and label (n,) int32 (``kernels.lloyd_step`` keeps the farthest).
    """
    X = csr(X)
    n, d = X.shape
    w = _weights(sample_weight)
    out = []
    for cs in center_sets:
        _, ct, c_sq, s = _unshifted(cs.shifted, shift, X.dtype)
        k = ct.shape[1]
        sums, counts = np.zeros((k, d)), np.zeros(k)
        dist, labels = np.empty(n), np.empty(n, np.int32)
        cost = _lloyd(*_parts(X), ct, c_sq, w, sums, counts, dist, labels)
        if s.any():
            sums -= counts[:, None] * s
        out.append((sums, counts, float(cost), dist, labels))
    return out


def assign_labels(X, center_set, shift) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (int32) and squared distance (X's dtype) of every row."""
    X = csr(X)
    _, ct, c_sq, _ = _unshifted(center_set.shifted, shift, X.dtype)
    labels, dist = np.empty(X.shape[0], np.int32), np.empty(X.shape[0])
    _assign(*_parts(X), ct, c_sq, labels, dist)
    return labels, dist.astype(X.dtype)


def min_cost_update(X, cost, nearest, center_set, shift, first_index: int) -> None:
    """Lower ``cost``/``nearest`` in place with the distances to new candidates."""
    X = csr(X)
    _, ct, c_sq, _ = _unshifted(center_set.shifted, shift, X.dtype)
    _min_update(*_parts(X), ct, c_sq, first_index, cost, nearest)


def sq_distances(X, centers) -> np.ndarray:
    """(n, k) squared distances to dense ``centers`` (GEMM form, clamped), float64."""
    X = csr(X)
    c = np.asarray(centers, dtype=np.float64)
    out = np.empty((X.shape[0], c.shape[0]))
    _all_sq(*_parts(X), np.ascontiguousarray(c.T), np.einsum("ij,ij->i", c, c), out)
    return out


def distances(X, center_set, shift) -> np.ndarray:
    """Euclidean distances to every centre (n, k), in the centres' dtype."""
    c, _, _, _ = _unshifted(center_set.shifted, shift, center_set.shifted.dtype)
    return np.sqrt(sq_distances(X, c)).astype(center_set.shifted.dtype)


def assigned_distances(X, labels, centers, sample_weight, n_clusters: int, *, root: bool):
    """Per-cluster Σ w·||x - c_label||² (``root``: Σ w·||x - c_label||), float64, by
    direct differences."""
    X = csr(X)
    c = np.ascontiguousarray(centers, dtype=np.float64)
    out = np.zeros(n_clusters)
    labels = np.asarray(labels, dtype=np.int64)
    _assigned(*_parts(X), labels, c, np.einsum("ij,ij->i", c, c), _weights(sample_weight),
              root, out)  # fmt: skip
    return out


def exact_cost(X, centers, labels, sample_weight=None) -> float:
    """Σ w·||x - c_label||² by direct differences, float64."""
    k = np.asarray(centers).shape[0]
    return float(assigned_distances(X, labels, centers, sample_weight, k, root=False).sum())


# --------------------------------------------------------------------------- moments


def moments(X, sample_weight=None):
    """``(count, mean, m2, n_nonfinite)`` as ``kernels.moments``/``weighted_moments``."""
    X = csr(X)
    total, mean, m2, n_bad = _moments(*_parts(X), X.shape[1], _weights(sample_weight))
    if sample_weight is None:
        return X.shape[0], mean, m2, int(n_bad)
    if total == 0:
        return 0, np.zeros(X.shape[1]), np.zeros(X.shape[1]), int(n_bad)
    return float(total), mean, m2, int(n_bad)


def cluster_moments(X, labels, sample_weight, n_clusters: int, *, per_feature: bool = False):
    """Per-cluster weights (k,), means (k, d) and Σ w·||x - mean||² (k,), float64; with
    ``per_feature`` the sums of squares per feature (k, d)."""
    X = csr(X)
    labels = np.asarray(labels, dtype=np.int64)
    w = _weights(sample_weight)
    d = X.shape[1]
    sums, counts = np.zeros((n_clusters, d)), np.zeros(n_clusters)
    stored_w = np.zeros((n_clusters, d) if per_feature else (0, 0))
    _cluster_sums(*_parts(X), labels, w, sums, counts, stored_w)
    means = sums / np.where(counts > 0, counts, 1.0)[:, None]
    if not per_feature:
        return counts, means, assigned_distances(X, labels, means, w, n_clusters, root=False)
    m2 = np.zeros((n_clusters, d))
    _feature_m2(*_parts(X), labels, w, means, m2)
    m2 += np.maximum(counts[:, None] - stored_w, 0.0) * means**2
    return counts, means, m2


# --------------------------------------------------------------------------- rows


def take_rows(X, index) -> np.ndarray:
    """Rows by local index as a dense NumPy copy (centre candidates, far rows)."""
    return csr(X)[np.asarray(index, dtype=np.int64)].toarray()


def subset_rows(X, index):
    """Rows by local index, still CSR (a row sample)."""
    return csr(X)[np.asarray(index, dtype=np.int64)]


def stack_rows(parts: list):
    """CSR row blocks stacked in order."""
    return sp.vstack([csr(p) for p in parts], format="csr")


def scale_rows(X, factors):
    """Row i times ``factors[i]``, same sparsity, dtype and class."""
    X = csr(X)
    data = (X.data * np.repeat(np.asarray(factors), np.diff(X.indptr))).astype(X.dtype)
    return type(X)((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)


def scale_columns(X, factors):
    """Column f times ``factors[f]``, same sparsity, dtype and class."""
    X = csr(X)
    data = (X.data * np.asarray(factors)[X.indices]).astype(X.dtype)
    return type(X)((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)


def _as64(x):
    return x.astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)


def pairwise_sq_distances(xa, xb) -> np.ndarray:
    """(len(xa), len(xb)) squared Euclidean distances (GEMM form, clamped), float64;
    either side sparse or dense."""
    a, b = _as64(xa), _as64(xb)
    aa = row_sq_norms(a) if sp.issparse(a) else np.einsum("ij,ij->i", a, a)
    bb = row_sq_norms(b) if sp.issparse(b) else np.einsum("ij,ij->i", b, b)
    prod = a @ b.T
    prod = prod.toarray() if sp.issparse(prod) else np.asarray(prod)
    d2 = aa[:, None] + bb[None, :] - 2.0 * prod
    return np.maximum(d2, 0.0, out=d2)


# --------------------------------------------------------------------------- Gram (PCA, SVD)


def centred_gram(X):
    """``(count, mean, Xcᵀ Xc, trace)`` of a block, float64, never forming Xc:
    ``Xcᵀ Xc = Xᵀ X - n μ μᵀ`` with the sparse product."""
    X = csr(X).astype(np.float64)
    n = X.shape[0]
    mean = np.asarray(X.sum(axis=0)).ravel() / n
    gram = (X.T @ X).toarray() - n * np.outer(mean, mean)
    trace = float(X.data @ X.data - n * (mean @ mean))
    return n, mean, gram, trace


def centred_gram_times(X, basis):
    """``(count, mean, Xcᵀ (Xc Q), trace)``: as ``Xᵀ (X Q) - n μ (μᵀ Q)``, since the
    columns of Xc Q sum to zero."""
    X = csr(X).astype(np.float64)
    n = X.shape[0]
    mean = np.asarray(X.sum(axis=0)).ravel() / n
    out = np.asarray(X.T @ np.asarray(X @ basis)) - n * np.outer(mean, mean @ basis)
    trace = float(X.data @ X.data - n * (mean @ mean))
    return n, mean, out, trace
