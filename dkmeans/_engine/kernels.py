"""Per-chunk k-means kernels: NumPy and numba, no dask.

Every function here takes one in-memory block of rows ``X`` of shape
``(n_rows, n_features)`` and returns small partial results (per-cluster sums,
counts, costs) that the reductions in ``reductions.py`` combine.  A NumPy array
is simply one block, so the in-memory and the dask paths share this arithmetic.
A block from another array library (CuPy) is handed to ``_xp_kernels``, and a
scipy.sparse block to ``sparse_kernels``; both keep the same contracts, and results
are NumPy either way (see ``backend``).

Distances use the GEMM form ``||x - c||² = ||x||² - 2 x·cᵀ + ||c||²`` on rows
*shifted* by a common point (the data mean, or a data point before the mean is
known).  Shifting keeps the form accurate in float32 for data far from the
origin, as scikit-learn does by centring X before Lloyd.  Rows are processed in
sub-blocks of ``SUB_BLOCK_ROWS`` so that the shifted copy and the ``x·cᵀ`` tile
stay in cache while the numba loop reads them.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numba
import numpy as np

from . import backend as B
from . import sparse_kernels as SP
from . import xp_kernels as XP
from .errors import InputError
from .validation import nonfinite_error

SUB_BLOCK_ROWS = 4096


class CenterSet(NamedTuple):
    """Centres prepared for the GEMM form.

    Attributes
    ----------
    shifted : ndarray of shape (n_centers, n_features)
        ``centers - shift`` in the data's dtype.
    sq_norms : ndarray of shape (n_centers,)
        Squared norms of ``shifted`` (same dtype).
    """

    shifted: np.ndarray
    sq_norms: np.ndarray


def as_shift(shift, dtype) -> np.ndarray:
    """The shift exactly as rows see it: rounded to the data dtype, held in float64.

    Rows and centres must be shifted by the SAME value, or a float32 rounding of the
    shift (up to 1e-3 at 1e4) would bias every distance.
    """
    return np.asarray(shift, dtype=dtype).astype(np.float64)


def prepare_centers(centers: np.ndarray, shift: np.ndarray, dtype) -> CenterSet:
    """Shift centres and precompute their squared norms (norms accumulated in float64)."""
    shift = as_shift(shift, dtype)
    shifted = np.ascontiguousarray(np.asarray(centers, dtype=np.float64) - shift, dtype=dtype)
    sq = np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64).astype(dtype)
    return CenterSet(shifted, sq)


def scratch(name: str, shape, dtype) -> np.ndarray:
    """This thread's reusable work array ``name`` (contents undefined), for buffers that
    never leave the kernel that asks.

    Fresh memory is slow to touch under distributed's workers: their
    MALLOC_TRIM_THRESHOLD_ disables glibc's adaptive mmap threshold, so every array
    above 128 KiB is a new mapping whose pages fault on first use (a pruned pass ran
    1.7x slower with that setting, threaded).  Buffers above ``_SCRATCH_MAX_BYTES``
    are not kept: their work dwarfs the faults.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes > _SCRATCH_MAX_BYTES:
        return np.empty(shape, dtype)
    pool = _SCRATCH.__dict__
    buf = pool.get(name)
    if buf is None or buf.shape[0] < nbytes:
        buf = pool[name] = np.empty(max(nbytes, 64), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


_SCRATCH = threading.local()
_SCRATCH_MAX_BYTES = 16 << 20


def _shifted_tiles(X, shift):
    """Yield (start, stop, rows - shift) tiles; rows are used in place when shift is zero."""
    n, d = X.shape
    shift = np.asarray(shift, dtype=X.dtype)
    if not shift.any():
        for s in range(0, n, SUB_BLOCK_ROWS):
            e = min(n, s + SUB_BLOCK_ROWS)
            yield s, e, X[s:e]
        return
    buf = scratch("tile", (min(n, SUB_BLOCK_ROWS), d), X.dtype)
    for s in range(0, n, SUB_BLOCK_ROWS):
        e = min(n, s + SUB_BLOCK_ROWS)
        np.subtract(X[s:e], shift, out=buf[: e - s])
        yield s, e, buf[: e - s]


class _TileProduct:
    """``xs @ Cᵀ`` into one reused buffer (this thread's ``scratch``)."""

    def __init__(self, n_rows: int, n_centers: int, dtype, name: str = "product"):
        self.buf = scratch(name, (min(n_rows, SUB_BLOCK_ROWS), n_centers), dtype)

    def __call__(self, xs, shifted_centers):
        out = self.buf[: xs.shape[0], : shifted_centers.shape[0]]
        return np.matmul(xs, shifted_centers.T, out=out)


def choose_shift(mean, variance) -> np.ndarray:
    """The shift for the GEMM form: the mean, or zero when data is already near-centred.

    Shifting costs a copy of every tile; it only pays when the mean is large against
    the spread (||μ||² > Σ var), where ||x||² would swamp the distances.
    """
    mean = np.asarray(mean, dtype=np.float64)
    return mean if float(mean @ mean) > float(np.sum(variance)) else np.zeros_like(mean)


def _padded(shape, fill=0.0, dtype=np.float64) -> np.ndarray:
    """An array with a cache line of padding each side.

    Small accumulators touched on every row (counts, sums, the far-row heap) would
    otherwise share cache lines with another thread's and run into false sharing.
    """
    n = int(np.prod(shape))
    pad = 64 // np.dtype(dtype).itemsize
    return np.full(n + 2 * pad, fill, dtype=dtype)[pad : pad + n].reshape(shape)


def _as_weights(sample_weight, n_rows: int, dtype) -> np.ndarray:
    """Weights as an array numba can branch on: length 0 means 'all ones'."""
    if sample_weight is None:
        return np.empty(0, dtype=dtype)
    w = np.asarray(sample_weight, dtype=dtype)
    if w.shape != (n_rows,):
        raise InputError(f"sample_weight block has shape {w.shape}, expected ({n_rows},)")
    return w


# --------------------------------------------------------------------------- numba loops
# Arithmetic runs in the data's dtype (float32 stays float32, as in scikit-learn) and
# reassociation is allowed so LLVM vectorises the row reductions; NaN/inf semantics are
# kept (no nnan/ninf), so non-finite rows still surface in the moments.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _nearest(xc, c_sq, i):  # pragma: no cover - jit
    """argmin_j ||c_j||² - 2 x_i·c_j and its value, from row i of the GEMM tile."""
    best = c_sq[0] - (xc[i, 0] + xc[i, 0])
    best_j = 0
    for j in range(1, xc.shape[1]):
        v = c_sq[j] - (xc[i, j] + xc[i, j])
        if v < best:
            best = v
            best_j = j
    return best, best_j


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _nearest_two(xc, c_sq, i):  # pragma: no cover - jit
    """As ``_nearest`` (the same values and ties), and the second smallest value.

    Branch-free (min/max, a select for the index): the if/elif form mispredicted on
    every other centre and cost 2.7x the accumulation loop around it.
    """
    best = c_sq[0] - (xc[i, 0] + xc[i, 0])
    best_j = 0
    second = np.inf
    for j in range(1, xc.shape[1]):
        v = c_sq[j] - (xc[i, j] + xc[i, j])
        second = min(second, max(best, v))
        if v < best:
            best_j = j
        best = min(best, v)
    return best, best_j, second


@numba.njit(nogil=True, cache=True)
def _direct_sq64(x, i, centers, j):  # pragma: no cover - jit
    """||x_i - c_j||² by differences in float64 (as ``_exact_cost``)."""
    s = 0.0
    for f in range(x.shape[1]):
        diff = np.float64(x[i, f]) - np.float64(centers[j, f])
        s += diff * diff
    return s


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _label_tile(x, xc, c_sq, centers, w, labels, weights):  # pragma: no cover - jit
    """The final E-step of a tile: labels as ``_assign`` gives them, and returns
    (Σ w·||x - c_label||², Σ w·simplified silhouette), both distances by differences in
    float64 (own and second-nearest centre, the latter ranked by the GEMM form).

    x (m, d) unshifted rows; xc (m, k) = shifted rows @ shifted Cᵀ; centers (k, d) in
    x's dtype.  OUT: labels (m,), weights (k,) float64 += w per label.
    """
    has_w = w.shape[0] > 0
    k = xc.shape[1]
    cost = 0.0
    simple = 0.0
    for i in range(x.shape[0]):
        _, j, second = _nearest_two(xc, c_sq, i)
        labels[i] = j
        wi = np.float64(w[i]) if has_w else 1.0
        weights[j] += wi
        own = _direct_sq64(x, i, centers, j)
        cost += wi * own
        if k > 1:
            j2 = _index_of(xc, c_sq, i, j, second)
            if j2 < 0:  # not met again (a value rounded otherwise): rank them afresh
                j2 = _second_index(xc, c_sq, i, j)
            a = math.sqrt(own)
            b = math.sqrt(_direct_sq64(x, i, centers, j2))
            top = a if a > b else b
            if top > 0.0:
                simple += wi * ((b - a) / top)
    return cost, simple


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _index_of(xc, c_sq, i, j, value):  # pragma: no cover - jit
    """The first centre other than ``j`` whose GEMM-form value is ``value`` (-1 if none).

    With ``value`` the second smallest from ``_nearest_two``, this is
    ``_second_index``'s centre, found by a search whose one branch is taken once (the
    ranking loop's ``v < best`` mispredicts: W1's label tile took 15 ms a 250k block
    with it, 12.6 ms with this)."""
    for c in range(xc.shape[1]):
        if c != j and c_sq[c] - (xc[i, c] + xc[i, c]) == value:
            return c
    return -1


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _second_index(xc, c_sq, i, j):  # pragma: no cover - jit
    """The centre with the smallest GEMM-form value other than ``j``."""
    best = np.inf
    best_j = 0 if j != 0 else 1
    for c in range(xc.shape[1]):
        if c == j:
            continue
        v = c_sq[c] - (xc[i, c] + xc[i, c])
        if v < best:
            best = v
            best_j = c
    return best_j


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _sq_norm(xs, i):  # pragma: no cover - jit
    """||x_i||² in the data's dtype."""
    xx = xs[i, 0] * xs[i, 0]
    for f in range(1, xs.shape[1]):
        xx += xs[i, f] * xs[i, f]
    return xx


@numba.njit(nogil=True, cache=True, inline="always")
def _clamped(xx, best):  # pragma: no cover - jit
    """||x||² + best, clamped at 0 (rounding in the GEMM form), as float64."""
    dd = np.float64(xx) + np.float64(best)
    return dd if dd > 0.0 else 0.0


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH, inline="always")
def _sq_dist(xs, i, best):  # pragma: no cover - jit
    """Squared distance of row i to the centre whose GEMM-form value is ``best``."""
    return _clamped(_sq_norm(xs, i), best)


@numba.njit(nogil=True, cache=True, inline="always")
def _heap_push(far_d, far_i, far_l, dd, row, label):  # pragma: no cover - jit
    """Keep the largest distances seen: replace the min-heap's root if ``dd`` beats it.

    Strict comparison: on ties the earlier row stays, so the result is deterministic.
    """
    m = far_d.shape[0]
    if m == 0 or not dd > far_d[0]:
        return
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= m:
            break
        if child + 1 < m and far_d[child + 1] < far_d[child]:
            child += 1
        if far_d[child] >= dd:
            break
        far_d[pos] = far_d[child]
        far_i[pos] = far_i[child]
        far_l[pos] = far_l[child]
        pos = child
    far_d[pos] = dd
    far_i[pos] = row
    far_l[pos] = label


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _row_sq_norms(xs, out):  # pragma: no cover - jit
    """||x_i||² of every row in the data's dtype (shared by all centre sets of a tile)."""
    for i in range(xs.shape[0]):
        out[i] = _sq_norm(xs, i)


@numba.njit(nogil=True, cache=True)
def _push_far(dist, labels, row0, far_d, far_i, far_l):  # pragma: no cover - jit
    """Offer a tile's rows to the far-row heap, in row order (the same heap as pushing
    each row as it is labelled)."""
    for i in range(dist.shape[0]):
        if dist[i] > far_d[0]:
            _heap_push(far_d, far_i, far_l, dist[i], row0 + i, labels[i])


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _assign_accumulate(
    xs, xc, c_sq, w, row0, sums, counts, far_d, far_i, far_l, dist, labels
):  # pragma: no cover - jit
    """Label rows, accumulate weighted shifted sums and counts, return weighted cost.

    xs (m, d) shifted rows (block rows row0 .. row0+m); xc (m, k) = xs @ Cᵀ; c_sq (k,);
    w (m,) or (0,).  OUT: sums (k, d) float64 += w·xs, counts (k,) float64 += w, and
    the min-heap (far_d, far_i, far_l) of the farthest rows' distances, rows and
    labels; dist (m,) float64 and labels (m,) int32 are scratch.

    ||x||² is taken while the row is loaded for its sum (a separate pass over the
    tile cost 15%), and the heap is fed after the loop: a push inside it kept LLVM
    from vectorising the accumulation (1.8x slower).
    """
    has_w = w.shape[0] > 0
    cost = 0.0
    m = xs.shape[0]
    for i in range(m):
        best, j = _nearest(xc, c_sq, i)
        wi = np.float64(w[i]) if has_w else 1.0
        counts[j] += wi
        row = sums[j]
        for f in range(xs.shape[1]):
            row[f] += wi * xs[i, f]
        dd = _sq_dist(xs, i, best)
        dist[i] = dd
        labels[i] = j
        cost += wi * dd
    if far_d.shape[0]:
        _push_far(dist[:m], labels[:m], row0, far_d, far_i, far_l)
    return cost


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _assign(xs, xc, c_sq, labels, dist):  # pragma: no cover - jit
    """Nearest centre and squared distance only (no accumulation)."""
    for i in range(xs.shape[0]):
        best, j = _nearest(xc, c_sq, i)
        labels[i] = j
        dist[i] = _sq_dist(xs, i, best)


@numba.njit(nogil=True, cache=True)
def _exact_cost(x, centers, labels, w):  # pragma: no cover - jit
    """Σ w·||x - c_label||² by direct differences, accumulated in float64."""
    m, d = x.shape
    has_w = w.shape[0] > 0
    total = 0.0
    for i in range(m):
        j = labels[i]
        s = 0.0
        for f in range(d):
            diff = np.float64(x[i, f]) - np.float64(centers[j, f])
            s += diff * diff
        total += (w[i] if has_w else 1.0) * s
    return total


@numba.njit(nogil=True, cache=True, fastmath=_FASTMATH)
def _min_update(xs, xc, c_sq, first_index, cost, nearest):  # pragma: no cover - jit
    """Lower each row's min cost with distances to new candidates (in place)."""
    for i in range(xs.shape[0]):
        best, j = _nearest(xc, c_sq, i)
        dd = _sq_dist(xs, i, best)
        if dd < cost[i]:
            cost[i] = dd
            nearest[i] = first_index + j


@numba.njit(nogil=True, cache=True)
def _moments(x):  # pragma: no cover - jit
    """Column means and centred sums of squares (float64, two passes) and non-finite count."""
    m, d = x.shape
    mean = np.zeros(d)
    n_bad = 0
    for i in range(m):
        for f in range(d):
            v = np.float64(x[i, f])
            if np.isfinite(v):
                mean[f] += v
            else:
                n_bad += 1
    if m > 0:
        mean /= m
    m2 = np.zeros(d)
    for i in range(m):
        for f in range(d):
            diff = np.float64(x[i, f]) - mean[f]
            m2[f] += diff * diff
    return mean, m2, n_bad


# --------------------------------------------------------------------------- public kernels


class LloydPartial(NamedTuple):
    """Partial results of one Lloyd step over one block, for one set of centres.

    sums : (k, d) float64, weighted sums of shifted rows per cluster.
    counts : (k,) float64, summed weights per cluster.
    cost : float, weighted squared distances (GEMM form; for logging).
    far_dist, far_rows, far_weight, far_label : the ``n_far`` rows farthest from
        their centres (distance descending), kept for empty-cluster relocation.
    """

    sums: np.ndarray
    counts: np.ndarray
    cost: float
    far_dist: np.ndarray
    far_rows: np.ndarray
    far_weight: np.ndarray
    far_label: np.ndarray


def farthest(dist: np.ndarray, n_far: int) -> np.ndarray:
    """Indices of the ``n_far`` largest entries of ``dist``, largest first (ties by index:
    of equal entries the earlier comes first, and is kept first)."""
    return farthest_and_rest(dist, n_far)[0]


def farthest_and_rest(dist: np.ndarray, n_far: int) -> tuple[np.ndarray, float]:
    """``farthest(dist, n_far)``, and the largest entry left out (-inf if none is).

    One sweep with a heap of ``n_far`` entries (``_top_heap``): a block's 250,000 keys
    for 40 draws took 0.2 ms, where ``argpartition`` took 2.3 ms and a mask for the
    rest 0.3 ms more, in every k-means|| pass.
    """
    n = dist.shape[0]
    n_far = max(min(int(n_far), n), 0)
    values = np.ascontiguousarray(dist)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    heap = np.empty(n_far, np.int64)
    rest = _top_heap(values, heap)
    order = np.lexsort((heap, -values[heap]))  # largest first, ties by index
    return heap[order].astype(np.intp, copy=False), float(rest)


@numba.njit(nogil=True, cache=True)
def _top_heap(values, heap):  # pragma: no cover - jit
    """OUT: ``heap`` the indices of the ``heap.size`` largest values (of equal values the
    earlier); returns the largest value not among them (-inf when all are).

    A min-heap by (value, then the later index as the smaller): a later row with an
    equal value never displaces a kept one, as a strict ``>`` against the root says.
    """
    m = heap.shape[0]
    rest = -np.inf
    if m == 0:
        for i in range(values.shape[0]):
            rest = max(rest, values[i])
        return rest
    for i in range(m):
        heap[i] = i
        _sift_up(values, heap, i)
    for i in range(m, values.shape[0]):
        v = values[i]
        root = heap[0]
        if v > values[root]:
            rest = max(rest, values[root])
            heap[0] = i
            _sift_down(values, heap, 0)
        else:
            rest = max(rest, v)
    return rest


@numba.njit(nogil=True, cache=True, inline="always")
def _below(values, a, b):  # pragma: no cover - jit
    """Entry a ranks below entry b: a smaller value, or an equal one of a later row."""
    return values[a] < values[b] or (values[a] == values[b] and a > b)


@numba.njit(nogil=True, cache=True, inline="always")
def _sift_up(values, heap, pos):  # pragma: no cover - jit
    while pos > 0:
        parent = (pos - 1) // 2
        if not _below(values, heap[pos], heap[parent]):
            break
        heap[pos], heap[parent] = heap[parent], heap[pos]
        pos = parent


@numba.njit(nogil=True, cache=True, inline="always")
def _sift_down(values, heap, pos):  # pragma: no cover - jit
    m = heap.shape[0]
    while True:
        child = 2 * pos + 1
        if child >= m:
            return
        if child + 1 < m and _below(values, heap[child + 1], heap[child]):
            child += 1
        if not _below(values, heap[child], heap[pos]):
            return
        heap[pos], heap[child] = heap[child], heap[pos]
        pos = child


@np.errstate(invalid="ignore", over="ignore")  # non-finite rows are counted by `moments`
def lloyd_step(X, center_sets, shift, sample_weight=None, n_far=0) -> list[LloydPartial]:
    """One Lloyd step over a block, for several centre sets sharing one read of X.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32 or float64
    center_sets : list of CenterSet, prepared with the same ``shift`` and X's dtype
    shift : ndarray of shape (n_features,)
    sample_weight : ndarray of shape (n_rows,) or None
    n_far : int
        How many farthest rows to keep per centre set.

    Returns
    -------
    list of LloydPartial, one per centre set.
    """
    if B.is_sparse(X):
        return _sparse_lloyd_step(X, center_sets, shift, sample_weight, n_far)
    if not B.is_host(X):
        return XP.lloyd_step(X, center_sets, shift, sample_weight, n_far, LloydPartial)
    n, d = X.shape
    dtype = X.dtype
    w = _as_weights(B.to_host(sample_weight), n, dtype)
    n_far = min(n_far, n)
    state = []
    for cs in center_sets:
        k = cs.shifted.shape[0]
        heap = (_padded(n_far, -np.inf), _padded(n_far, 0, np.int64), _padded(n_far, 0, np.int32))
        state.append([_padded((k, d)), _padded(k), 0.0, heap])
    product = _TileProduct(n, max(cs.shifted.shape[0] for cs in center_sets), dtype)
    tile = min(n, SUB_BLOCK_ROWS)
    dist, labels = scratch("dist", tile, np.float64), scratch("labels", tile, np.int32)
    for s, e, xs in _shifted_tiles(X, shift):
        ws = w[s:e] if w.shape[0] else w
        for cs, st in zip(center_sets, state, strict=True):
            st[2] += _assign_accumulate(
                xs,
                product(xs, cs.shifted),
                cs.sq_norms,
                ws,
                s,
                st[0],
                st[1],
                *st[3],
                dist,
                labels,
            )
    return [lloyd_partial(X, w, sums, counts, cost, heap) for sums, counts, cost, heap in state]


def lloyd_partial(X, w, sums, counts, cost: float, heap) -> LloydPartial:
    """The partial of a block from its accumulators and far-row heap (``w`` as
    ``_as_weights`` gives it)."""
    far_d, far_i, far_l = heap
    order = np.lexsort((far_i, -far_d))  # farthest first, ties by row
    far_d, far_i, far_l = far_d[order], far_i[order], far_l[order]
    far_w = w[far_i] if w.shape[0] else np.ones(far_i.shape[0], dtype=X.dtype)
    return LloydPartial(sums, counts, cost, far_d.astype(X.dtype), X[far_i].copy(), far_w, far_l)


def _sparse_lloyd_step(X, center_sets, shift, sample_weight, n_far) -> list[LloydPartial]:
    """``lloyd_step`` of a scipy.sparse block: the sums from ``sparse_kernels``, the
    farthest rows (dense copies) chosen here as for the other blocks."""
    w = B.to_host(sample_weight)
    out = []
    for sums, counts, cost, dist, labels in SP.lloyd_step(X, center_sets, shift, w):
        far = farthest(dist, n_far)
        far_w = np.ones(far.shape[0], X.dtype) if w is None else np.asarray(w, X.dtype)[far]
        out.append(LloydPartial(sums, counts, cost, dist[far].astype(X.dtype),
                                SP.take_rows(X, far), far_w, labels[far]))  # fmt: skip
    return out


def assign_labels(X, center_set: CenterSet, shift) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (int32) and squared distance (GEMM form, X's dtype) for every row."""
    if B.is_sparse(X):
        return SP.assign_labels(X, center_set, shift)
    if not B.is_host(X):
        return XP.assign_labels(X, center_set, shift)
    n = X.shape[0]
    labels = np.empty(n, np.int32)
    dist = np.empty(n, X.dtype)
    product = _TileProduct(n, center_set.shifted.shape[0], X.dtype)
    for s, e, xs in _shifted_tiles(X, shift):
        _assign(xs, product(xs, center_set.shifted), center_set.sq_norms, labels[s:e], dist[s:e])
    return labels, dist


def labels_and_cost(X, centers, center_set, shift, sample_weight=None):
    """Final E-step: labels and the EXACT weighted squared-distance cost (direct differences).

    Returns
    -------
    labels : ndarray of shape (n_rows,), int32
    cost : float
    """
    labels, _ = assign_labels(X, center_set, shift)
    return labels, exact_cost(X, centers, labels, sample_weight)


def label_block(X, centers, center_set: CenterSet, shift, sample_weight=None):
    """The final E-step of a host (NumPy) block in one sweep of GEMM tiles.

    Returns ``(labels, cost, weights, simplified)``: the labels of ``assign_labels``,
    the exact weighted cost (as ``exact_cost``), the summed weight per centre (float64)
    and Σ w·s of the centroid-based silhouette ``s = (b - a) / max(a, b)`` (a, b: the
    distances to the nearest and the second-nearest centre, by differences in float64).
    """
    n = X.shape[0]
    k = center_set.shifted.shape[0]
    w = _as_weights(sample_weight, n, np.float64)  # as exact_cost and weighted_bincount
    cx = np.ascontiguousarray(centers, dtype=X.dtype)
    labels = np.empty(n, np.int32)
    weights = _padded(k)
    product = _TileProduct(n, k, X.dtype)
    cost = simple = 0.0
    for s, e, xs in _shifted_tiles(X, shift):
        c, v = _label_tile(X[s:e], product(xs, center_set.shifted), center_set.sq_norms, cx,
                           w[s:e] if w.shape[0] else w, labels[s:e], weights)  # fmt: skip
        cost += c
        simple += v
    return labels, cost, weights.copy(), simple


def exact_cost(X, centers, labels, sample_weight=None) -> float:
    """Σ w·||x - c_label||² by direct differences, accumulated in float64."""
    if B.is_sparse(X):
        return SP.exact_cost(X, centers, labels, B.to_host(sample_weight))
    if not B.is_host(X):
        return XP.exact_cost(X, centers, labels, sample_weight)
    w = _as_weights(B.to_host(sample_weight), X.shape[0], np.float64)
    centers = np.ascontiguousarray(centers, dtype=X.dtype)
    return float(_exact_cost(X, centers, labels, w))


def distances(X, center_set: CenterSet, shift, out_dtype=None):
    """Euclidean (not squared) distances to every centre, shape (n_rows, n_centers),
    in X's array library (NumPy for a sparse block), computed in the centre set's dtype
    (float64 for ``transform``, as scikit-learn upcasts float32) and returned as
    ``out_dtype``."""
    if B.is_sparse(X):
        out = SP.distances(X, center_set, shift)
        return out if out_dtype is None else out.astype(out_dtype, copy=False)
    xp = B.namespace(X)
    dtype = B.host_dtype(center_set.shifted)
    xs = xp.astype(X, B.xp_dtype(xp, dtype), copy=False) - B.like(X, as_shift(shift, dtype), dtype)
    xx = xp.sum(xs * xs, axis=1)
    sq = xx[:, None] - 2 * (xs @ B.like(X, center_set.shifted).T)
    sq = sq + B.like(X, center_set.sq_norms)[None, :]
    out = xp.sqrt(xp.maximum(sq, 0))
    return out if out_dtype is None else xp.astype(out, B.xp_dtype(xp, out_dtype), copy=False)


def unit_rows(X, *, strict: bool = True):
    """Rows scaled to unit Euclidean length (norms in float64; X's dtype and library kept).

    ``strict``: a zero row has no direction and raises ValueError; otherwise it is
    left as it is (an empty cluster's centre).  A sparse block stays sparse.
    """
    if B.is_sparse(X):
        norms = np.sqrt(SP.row_sq_norms(X))
        _check_directions(int(np.count_nonzero(norms == 0)), strict)
        return SP.scale_rows(X, 1.0 / np.where(norms == 0, 1.0, norms))
    xp = B.namespace(X)
    X = xp.asarray(X)
    x64 = xp.astype(X, xp.float64, copy=False)
    norms = xp.sqrt(xp.sum(x64 * x64, axis=1))
    zero = norms == 0
    _check_directions(int(xp.sum(xp.astype(zero, xp.int64))), strict)
    return xp.astype(x64 / xp.where(zero, 1.0, norms)[:, None], X.dtype, copy=False)


def _check_directions(n_zero: int, strict: bool) -> None:
    if strict and n_zero:
        raise InputError(
            f"metric='cosine': {n_zero} row(s) are all zeros and have no direction; "
            "drop them or use metric='euclidean'."
        )


def all_finite(X) -> bool:
    """True when a block holds no NaN or infinity (any array library, or sparse)."""
    if B.is_sparse(X):
        return SP.all_finite(X)
    xp = B.namespace(X)
    return bool(xp.all(xp.isfinite(X)))


def finite_block(X):
    """``X``, after checking that it holds no NaN or infinity (in a block function)."""
    if not all_finite(X):
        raise nonfinite_error()
    return X


def moments(X) -> tuple[int, np.ndarray, np.ndarray, int]:
    """Row count, column means, centred sums of squares (float64) and non-finite count."""
    if B.is_sparse(X):
        return SP.moments(X)
    if not B.is_host(X):
        return XP.moments(X)
    mean, m2, n_bad = _moments(np.ascontiguousarray(X))
    return X.shape[0], mean, m2, int(n_bad)


def weighted_moments(X, sample_weight) -> tuple[float, np.ndarray, np.ndarray, int]:
    """As ``moments`` with row weights: the count is the summed weight."""
    if B.is_sparse(X):
        return SP.moments(X, B.to_host(sample_weight))
    if not B.is_host(X):
        return XP.moments(X, sample_weight)
    w = np.asarray(B.to_host(sample_weight), dtype=np.float64)
    total = float(w.sum())
    n_bad = int(X.size - np.count_nonzero(np.isfinite(X)))
    if total == 0:
        return 0, np.zeros(X.shape[1]), np.zeros(X.shape[1]), n_bad
    mean = (w @ X) / total
    m2 = w @ (np.asarray(X, dtype=np.float64) - mean) ** 2
    return total, mean, m2, n_bad


@np.errstate(invalid="ignore", over="ignore")
def min_cost_update(X, cost, nearest, center_set: CenterSet, shift, first_index: int):
    """Lower per-row min costs with the distances to new candidates.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    cost : ndarray of shape (n_rows,), float32 for float32 X (else float64), or None
        (start from +inf)
    nearest : ndarray of shape (n_rows,), uint16 (int32 past 65,535 candidates), or None
    center_set : the NEW candidates only, prepared with ``shift``
    first_index : global index of the first new candidate

    Returns
    -------
    cost, nearest : new arrays (the inputs are not modified)

    Notes
    -----
    This state stays with each block between seeding passes (two copies while a pass
    runs), so it is kept small: 6 bytes a row for float32 data (float32 is ample for
    sampling weights; the totals φ are summed in float64).
    """
    n = X.shape[0]
    n_new = center_set.shifted.shape[0]
    cost_dtype = np.float32 if B.host_dtype(X) == np.float32 else np.float64
    cost = np.full(n, np.inf, cost_dtype) if cost is None else cost.copy()
    index_dtype = np.uint16 if first_index + n_new <= np.iinfo(np.uint16).max else np.int32
    if nearest is None:
        nearest = np.zeros(n, index_dtype)
    else:
        nearest = nearest.astype(np.promote_types(nearest.dtype, index_dtype))
    if n_new == 0:  # a round that drew nothing lowers nothing
        return cost, nearest
    if B.is_sparse(X):
        SP.min_cost_update(X, cost, nearest, center_set, shift, first_index)
        return cost, nearest
    if not B.is_host(X):
        XP.min_cost_update(X, cost, nearest, center_set, shift, first_index)
        return cost, nearest
    product = _TileProduct(n, center_set.shifted.shape[0], X.dtype)
    for s, e, xs in _shifted_tiles(X, shift):
        _min_update(
            xs, product(xs, center_set.shifted), center_set.sq_norms, first_index,
            cost[s:e], nearest[s:e],
        )  # fmt: skip
    return cost, nearest


def sampling_keys(cost, sample_weight, scale: float, seed, draw: str) -> np.ndarray:
    """Random keys that turn cost-proportional sampling into a top-k selection.

    ``draw="bernoulli"``: key = scale·w·cost / u with u ~ U(0, 1]; a row is in a
    Bernoulli sample with p = min(1, scale·w·cost/φ) exactly when key > φ, so a block
    can return its largest keys before φ (the total cost) is known.
    ``draw="exponential"``: key = w·cost / E with E ~ Exp(1); the row with the
    largest key over all blocks is one draw with probability ∝ w·cost.
    """
    rng = np.random.default_rng(seed)
    sample_weight = B.to_host(sample_weight)
    u = 1.0 - rng.random(cost.shape[0])
    z = u if draw == "bernoulli" else -np.log(u)
    weighted = cost if sample_weight is None else cost * sample_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = scale * weighted / z
    keys[~(weighted > 0)] = 0.0  # zero cost or weight (and NaN) is never drawn
    return keys


def weighted_bincount(nearest, sample_weight, n_bins: int) -> np.ndarray:
    """Summed weight of the rows attracted by each candidate, float64 (n_bins,)."""
    weights = B.to_host(sample_weight)
    return np.bincount(nearest, weights=weights, minlength=n_bins).astype(np.float64)


def take_rows(X, index) -> np.ndarray:
    """Rows of a block by local index, as a NumPy copy (from any array library; dense
    rows of a sparse block)."""
    if B.is_sparse(X):
        return SP.take_rows(X, index)
    return B.to_host(B.take(X, index))


def sample_rows(X, index):
    """Rows of a block by local index on the host, for a row sample: NumPy, or CSR
    for a sparse block (a sample of sparse rows is not made dense)."""
    if B.is_sparse(X):
        return SP.subset_rows(X, index)
    return take_rows(X, index)


def stack_rows(parts: list):
    """``sample_rows`` pieces stacked in order (NumPy or CSR)."""
    if parts and B.is_sparse(parts[0]):
        return SP.stack_rows(parts)
    return np.concatenate(parts)
