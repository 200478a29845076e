"""Bound-based pruning of Lloyd iterations (Hamerly 2010) for blocks held in memory.

Each row keeps, beside its block between passes, its label ``a``, an upper bound
``u >= ||x - c_a||`` and a lower bound ``l <= min_{j != a} ||x - c_j||`` (12 bytes a
row: int32 + two float32).  When the centres move by ``p_j``, ``u + p_a`` and
``l - max_{j != a} p_j`` are bounds for the new centres (triangle inequality), and so
is ``2 s_a - u`` for ``l``, with ``s_a`` half the distance from ``c_a`` to its nearest
other centre.  A row whose bounds prove that its label cannot change skips every
distance computation; a row that fails first recomputes ``u`` exactly (one distance)
and tries again; the rest are gathered and assigned with one GEMM, exactly as
``kernels.lloyd_step`` assigns them.  The block also keeps its per-cluster sums and
counts, and updates them by the rows that moved only.

Same labels as plain Lloyd
--------------------------
Plain Lloyd's label is the argmin of ``v_j = ||c_j||² - 2 x·c_j``, computed in the
data's dtype on the shifted rows ``x = fl(row - shift)`` and centres (see
``kernels``).  Each ``v_j`` is within ``E = tau·(||c|| + ||x||)²`` of its exact value
(``tau = (d + 4)·eps``: the dot product's worst-case error with a factor 2 to
spare), so a skip needs more than a proof that ``a`` is nearest: the skip test is
``l² - u² > 2·tau·(2R + u)²``, ``R >= max ||c_j||`` and ``||x|| <= R + u``.  Rows near
a tie are therefore recomputed, by the same GEMM-form arithmetic as plain Lloyd.
The bounds themselves are kept *valid* for the exact distances between those
float vectors: GEMM-form distances are widened by ``E``, float32 storage rounds
``u`` up and ``l`` down (``nextafter``), centre drifts and gaps are rounded
outwards, and the bound logic runs without fastmath.

What is left is a GEMM over gathered rows instead of plain Lloyd's tile: BLAS may
round a dot product differently for another tile shape, so a row whose two nearest
centres tie to within that rounding may get the other (equally valid) label.  With
continuous data this does not happen in practice.

Sums by moved rows
------------------
A row moving from ``a`` to ``b`` subtracts ``w·x`` from ``sums[a]`` and adds it to
``sums[b]`` (float64).  Each update rounds once, like each addition of a fresh
summation, so after as many updates as the block has rows the error is of the order
of summing the block afresh; the block then sums itself again exactly (same
arithmetic as ``lloyd_step``), which costs no more than the updates did.

Cost without distances
----------------------
Plain Lloyd reports ``Σ w·||x - c_label||²`` per iteration (for logging only).  The
block keeps ``Σ w·||x||²`` and gets the same value from its sums:
``Σ w||x||² - 2 Σ_j c_j·S_j + Σ_j N_j ||c_j||²`` (float64).  The farthest rows that
empty-cluster relocation needs are not known for skipped rows: a pruned partial
carries none, and the caller redoes such an iteration as a plain pass.

NumPy blocks only; no dask here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from . import backend as B
from . import kernels as K

_EPS64 = float(np.finfo(np.float64).eps)
_GAP_ROWS = 2048  # centres per tile of the centre-to-centre distances


class Step(NamedTuple):
    """One run's centres for a pruned pass, and how they moved since its last pass.

    centers : the pass's centres (``kernels.CenterSet``, shifted, data dtype)
    shift : (d,) the shift as rows see it (data dtype)
    drift : (k,) float64, >= ||c_j - c_j(previous pass)|| (zeros for a first pass)
    other_drift : (k,) float64, max of ``drift`` over the other centres
    half_gap : (k,) float64, <= half the distance from c_j to its nearest other centre
        (inf for k = 1)
    reach : float, >= max_j ||c_j|| (shifted)
    tau : float, relative error allowance of the GEMM form (see the module notes)
    first : True when the blocks keep no bounds yet (a full pass makes them)
    """

    centers: K.CenterSet
    shift: np.ndarray
    drift: np.ndarray
    other_drift: np.ndarray
    half_gap: np.ndarray
    reach: float
    tau: float
    first: bool


class BlockBounds(NamedTuple):
    """What a block keeps for one run between pruned passes.

    labels : (n,) int32; upper, lower : (n,) float32 (see the module notes)
    sums : (k, d) float64, Σ w·x of each cluster's shifted rows; counts : (k,) float64
    sq_total : float, Σ w·||x||² of the shifted rows
    moved : int, row moves applied to ``sums`` since they were last summed afresh
    spare : (labels, upper, lower) or None, the previous pass's arrays, which the next
        pass overwrites with its own (double buffering: fresh arrays each pass cost
        page faults, 1.7x the pass under distributed's allocator settings).  The
        pass that made this state has finished, and nothing reads its state again.
    """

    labels: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    sq_total: float
    moved: int
    spare: tuple | None = None


# a screened pass that sends more rows than this to the distances cost more than a full
# one (W1, 30%: 18.8 ms against 11.6 ms a 250k block): the screening stops as soon as
# that many rows fail, and the block makes a full step instead (fresh bounds for the
# next pass; W1's second pass sent 96% of the rows)
FULL_SHARE = 0.2


def bytes_per_row() -> int:
    """Bytes a row's bounds take (label, upper, lower) per run, plus 3 toward the pass's
    scratch (the int32 index of the rows it recomputes: per thread, not per run); the
    bounds are held twice (``spare``)."""
    return 4 + 4 + 4 + 3


def prepare_step(center_set: K.CenterSet, shift, previous: K.CenterSet | None) -> Step:
    """The ``Step`` of a pass with ``center_set`` after one with ``previous`` (None when
    the blocks keep no bounds yet)."""
    dtype = center_set.shifted.dtype
    q = center_set.shifted.astype(np.float64)
    k, d = q.shape
    up = 1.0 + (d + 4) * _EPS64  # outward rounding of float64 norms of d terms
    norms2 = np.einsum("ij,ij->i", q, q)
    reach = float(np.sqrt(norms2.max())) * up if k else 0.0
    if previous is None:
        drift = np.zeros(k)
    else:
        delta = q - previous.shifted.astype(np.float64)
        drift = np.sqrt(np.einsum("ij,ij->i", delta, delta)) * up
    other = np.zeros(k)
    half = np.full(k, np.inf)
    if k > 1:
        order = np.argsort(drift, kind="stable")
        other[:] = drift[order[-1]]
        other[order[-1]] = drift[order[-2]]
        # ||c_i - c_j||² by the GEMM form in float64, widened by its error bound
        margin = 8.0 * (d + 2) * _EPS64 * reach * reach
        for s in range(0, k, _GAP_ROWS):
            e = min(k, s + _GAP_ROWS)
            g2 = norms2[s:e, None] + norms2[None, :] - 2.0 * (q[s:e] @ q.T)
            g2[np.arange(e - s), np.arange(s, e)] = np.inf
            half[s:e] = 0.5 * np.sqrt(np.maximum(g2.min(axis=1) - margin, 0.0)) / up
    tau = (d + 4) * float(np.finfo(dtype).eps)
    shift_rows = np.asarray(shift, dtype=dtype)
    return Step(center_set, shift_rows, drift, other, half, reach, tau, previous is None)


# --------------------------------------------------------------------------- numba loops
# Bound arithmetic runs without fastmath (no reassociation may weaken a bound); the
# distance loops use kernels' flags, under which every error bound above still holds.


# float32 storage of a bound is widened by 2^-22 (4 ulps at most) before it rounds to
# nearest, which then cannot cross the float64 value (half an ulp is under 2^-24 of it);
# nextafter is the fallback (subnormals, overflow) only: called on every row it cost
# 6.6 ns a row, half of a late screened pass.
_WIDEN = 2.0**-22


@numba.njit(nogil=True, cache=True, inline="always")
def _up(v):  # pragma: no cover - jit
    """float32 >= v."""
    r = np.float32(v * (1.0 + _WIDEN if v >= 0.0 else 1.0 - _WIDEN))
    if np.float64(r) < v:
        r = np.nextafter(r, np.float32(np.inf))
    return r


@numba.njit(nogil=True, cache=True, inline="always")
def _down(v):  # pragma: no cover - jit
    """float32 <= v."""
    r = np.float32(v * (1.0 - _WIDEN if v >= 0.0 else 1.0 + _WIDEN))
    if np.float64(r) > v:
        r = np.nextafter(r, np.float32(-np.inf))
    return r


@numba.njit(nogil=True, cache=True, inline="always")
def _safe(u, lo, reach, tau):  # pragma: no cover - jit
    """True when bounds u (own centre) and lo (every other centre) prove that plain
    Lloyd's GEMM-form argmin is the own centre (see the module notes)."""
    if not lo > u:
        return False
    m = u + 2.0 * reach
    return (lo - u) * (lo + u) > 2.0 * tau * m * m


@numba.njit(nogil=True, cache=True, inline="always")
def _gemm_bounds(xx, best, second, reach, tau):  # pragma: no cover - jit
    """(upper, lower) on the distances to the nearest and to every other centre, from
    the GEMM-form values of a row (its ||x||², and ||c||² - 2x·c of both)."""
    x2 = max(np.float64(xx), 0.0)
    norm = math.sqrt(x2 * (1.0 + tau))
    err = tau * (norm + reach) * (norm + reach)
    hi = x2 + np.float64(best)
    u = math.sqrt((hi if hi > 0.0 else 0.0) + err)
    lo = x2 + np.float64(second) - err
    return u, math.sqrt(lo if lo > 0.0 else 0.0)


@numba.njit(nogil=True, cache=True, fastmath=K._FASTMATH)
def _direct_sq(x, i, shift, q, a):  # pragma: no cover - jit
    """||fl(x_i - shift) - q_a||² by differences in float64, and ||fl(x_i - shift)||²."""
    s = 0.0
    n2 = 0.0
    for f in range(x.shape[1]):
        p = np.float64(x[i, f] - shift[f])
        diff = p - np.float64(q[a, f])
        s += diff * diff
        n2 += p * p
    return s, n2


@numba.njit(nogil=True, cache=True)
def _screen(x, shift, labels, upper, lower, q, drift, other, half, reach, tau, todo,
            upper_out, lower_out, limit):  # fmt: skip  # pragma: no cover - jit
    """Move every row's bounds with the centres and test them.

    A row passes when its bounds prove the label, or do after its upper bound is
    recomputed (one distance).  OUT: ``todo[:m]`` the rows that need every distance,
    in row order (returns m); the moved bounds, rounded outwards.  Returns -1 as soon
    as more than ``limit`` rows need every distance (the outputs are then partial).
    """
    m = 0
    for i in range(x.shape[0]):
        a = labels[i]
        u = np.float64(upper[i]) + drift[a]
        lo = np.float64(lower[i]) - other[a]
        if not _safe(u, max(lo, 2.0 * half[a] - u), reach, tau):
            s, _ = _direct_sq(x, i, shift, q, a)
            u = math.sqrt(s * (1.0 + tau))
            if not _safe(u, max(lo, 2.0 * half[a] - u), reach, tau):
                if m == limit:
                    return -1
                todo[m] = i
                m += 1
        upper_out[i] = _up(u)
        lower_out[i] = _down(lo)
    return m


@numba.njit(nogil=True, cache=True, fastmath=K._FASTMATH)
def _assign_two(xs, xx, xc, c_sq, w, sums, counts, labels, dist, best,
                second):  # fmt: skip  # pragma: no cover - jit
    """``kernels._assign_accumulate``'s labels, sums, counts and cost (the far rows are
    fed from ``dist`` after the loop, as there), keeping each row's ||x||² (OUT: xx)
    and two smallest GEMM-form values for its bounds; returns (cost, Σ w·||x||² in
    float64).

    The bounds are made in a second loop, without fastmath: with them (and the heap
    push) in this one, LLVM left the accumulation scalar (2.2x a plain step)."""
    has_w = w.shape[0] > 0
    cost = 0.0
    sq = 0.0
    for i in range(xs.shape[0]):
        b, j, s = K._nearest_two(xc, c_sq, i)
        xx[i] = K._sq_norm(xs, i)  # while the row is loaded (as kernels._row_sq_norms)
        dd = K._clamped(xx[i], b)
        wi = np.float64(w[i]) if has_w else 1.0
        cost += wi * dd
        counts[j] += wi
        row = sums[j]
        n2 = 0.0
        for f in range(xs.shape[1]):
            row[f] += wi * xs[i, f]
            n2 += np.float64(xs[i, f]) * np.float64(xs[i, f])
        sq += wi * n2
        labels[i] = j
        dist[i] = dd
        best[i] = b
        second[i] = s
    return cost, sq


@numba.njit(nogil=True, cache=True)
def _make_bounds(xx, best, second, reach, tau, upper, lower):  # pragma: no cover - jit
    """Every row's bounds from its GEMM-form values, rounded outwards."""
    for i in range(xx.shape[0]):
        u, lo = _gemm_bounds(xx[i], best[i], second[i], reach, tau)
        upper[i] = _up(u)
        lower[i] = _down(lo)


@numba.njit(nogil=True, cache=True, fastmath=K._FASTMATH)
def _reassign(xs, xx, xc, c_sq, w, rows, labels, upper, lower, sums, counts, reach,
              tau):  # fmt: skip  # pragma: no cover - jit
    """Assign gathered rows (block rows ``rows``) as plain Lloyd does, set their bounds,
    and move the rows whose label changed between the sums; returns the moves."""
    has_w = w.shape[0] > 0
    moved = 0
    for r in range(xs.shape[0]):
        i = rows[r]
        best, j, second = K._nearest_two(xc, c_sq, r)
        u, lo = _gemm_bounds(xx[r], best, second, reach, tau)
        upper[i] = _up(u)
        lower[i] = _down(lo)
        a = labels[i]
        if j != a:
            wi = np.float64(w[i]) if has_w else 1.0
            counts[a] -= wi
            counts[j] += wi
            for f in range(xs.shape[1]):
                v = wi * xs[r, f]
                sums[a, f] -= v
                sums[j, f] += v
            labels[i] = j
            moved += 1
    return moved


@numba.njit(nogil=True, cache=True, fastmath=K._FASTMATH)
def _accumulate(xs, w, labels, sums, counts):  # pragma: no cover - jit
    """Σ w·x and Σ w per label, in row order (as ``kernels._assign_accumulate``)."""
    has_w = w.shape[0] > 0
    for i in range(xs.shape[0]):
        j = labels[i]
        wi = np.float64(w[i]) if has_w else 1.0
        counts[j] += wi
        row = sums[j]
        for f in range(xs.shape[1]):
            row[f] += wi * xs[i, f]


# --------------------------------------------------------------------------- block step


def pruned_step(X, sample_weight, step: Step, state: BlockBounds | None, n_far: int):
    """One Lloyd step of one block for one run, with bounds.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), NumPy (float32 or float64)
    sample_weight : ndarray of shape (n_rows,) or None
    step : Step (``prepare_step``)
    state : BlockBounds of the run's last pass over this block, or None when
        ``step.first`` (then every distance is computed and the bounds are made)
    n_far : farthest rows to keep (first pass only: later passes keep none)

    Returns
    -------
    (LloydPartial, skipped rows, BlockBounds) : the partial of ``kernels.lloyd_step``
    (a later pass's cost comes from the sums and it carries no far rows), how many
    rows skipped the distances to all centres, and the block's new state.
    """
    if not B.is_host(X):  # a device block (dask array of CuPy rows): a plain step, no state
        part = K.lloyd_step(X, [step.centers], step.shift, sample_weight, n_far)[0]
        return part, 0, None
    w = K._as_weights(B.to_host(sample_weight), X.shape[0], X.dtype)
    if state is None:
        return _first_step(X, w, step, n_far)
    return _later_step(X, w, step, state)


def _bound_arrays(n: int, spare):
    """``(labels, upper, lower)`` for a pass to write: the state's spare arrays, or new."""
    if spare is not None and spare[0].shape[0] == n:
        return spare
    return np.empty(n, np.int32), np.empty(n, np.float32), np.empty(n, np.float32)


def _first_step(X, w, step: Step, n_far: int, spare=None, kept=None):
    """Every distance, fresh bounds and sums (into ``spare``); ``kept`` the arrays of
    the state this pass replaces, which become the new state's spare."""
    n, d = X.shape
    cs = step.centers
    k = cs.shifted.shape[0]
    n_far = min(n_far, n)
    sums, counts = K._padded((k, d)), K._padded(k)
    heap = (K._padded(n_far, -np.inf), K._padded(n_far, 0, np.int64), K._padded(n_far, 0, np.int32))
    labels, upper, lower = _bound_arrays(n, spare)
    product = K._TileProduct(n, k, X.dtype)
    tile = min(n, K.SUB_BLOCK_ROWS)
    norms = K.scratch("norms", tile, X.dtype)
    dist, best, second = (K.scratch(name, tile, np.float64) for name in ("dist", "best", "second"))
    cost = sq = 0.0
    for s, e, xs in K._shifted_tiles(X, step.shift):
        m = e - s
        ws = w[s:e] if w.shape[0] else w
        xx = norms[:m]
        c, q = _assign_two(xs, xx, product(xs, cs.shifted), cs.sq_norms, ws, sums, counts,
                           labels[s:e], dist[:m], best[:m], second[:m])  # fmt: skip
        _make_bounds(xx, best[:m], second[:m], step.reach, step.tau, upper[s:e], lower[s:e])
        if n_far:
            K._push_far(dist[:m], labels[s:e], s, *heap)
        cost += c
        sq += q
    part = K.lloyd_partial(X, w, sums, counts, cost, heap)
    return part, 0, BlockBounds(labels, upper, lower, sums, counts, sq, 0, spare=kept)


def _later_step(X, w, step: Step, st: BlockBounds):
    kept = (st.labels, st.upper, st.lower)
    n, d = X.shape
    cs = step.centers
    k = cs.shifted.shape[0]
    labels, upper, lower = _bound_arrays(n, st.spare)
    todo = K.scratch("todo", n, np.int32)
    limit = int(FULL_SHARE * n)
    m = _screen(X, step.shift, st.labels, st.upper, st.lower, cs.shifted, step.drift,
                step.other_drift, step.half_gap, step.reach, step.tau, todo, upper,
                lower, limit)  # fmt: skip
    if m < 0:  # the centres moved too far for the bounds: a full step costs less now
        return _first_step(X, w, step, 0, st.spare, kept)
    todo = todo[:m]
    labels[:] = st.labels
    sums, counts = K._padded((k, d)), K._padded(k)
    sums[:] = st.sums
    counts[:] = st.counts
    moved = st.moved
    if m:
        product = K._TileProduct(m, k, X.dtype)
        buf = K.scratch("gather", (min(m, K.SUB_BLOCK_ROWS), d), X.dtype)
        norms = K.scratch("norms", buf.shape[0], X.dtype)
        for s in range(0, m, K.SUB_BLOCK_ROWS):
            rows = todo[s : s + K.SUB_BLOCK_ROWS]
            xs = buf[: rows.shape[0]]
            np.take(X, rows, axis=0, out=xs, mode="clip")  # "raise" buffers a copy
            np.subtract(xs, step.shift, out=xs)  # the rounding of kernels._shifted_tiles
            xx = norms[: rows.shape[0]]
            K._row_sq_norms(xs, xx)
            moved += _reassign(xs, xx, product(xs, cs.shifted), cs.sq_norms, w, rows, labels,
                               upper, lower, sums, counts, step.reach, step.tau)  # fmt: skip
    if moved > n:  # as many updates as a fresh sum has additions: sum afresh
        sums[:] = 0.0
        counts[:] = 0.0
        for s, e, xs in K._shifted_tiles(X, step.shift):
            _accumulate(xs, w[s:e] if w.shape[0] else w, labels[s:e], sums, counts)
        moved = 0
    part = K.LloydPartial(sums, counts, _cost_from_sums(st.sq_total, sums, counts, cs.shifted),
                          *_no_far(X))  # fmt: skip
    return part, n - m, BlockBounds(labels, upper, lower, sums, counts, st.sq_total, moved,
                                    kept)  # fmt: skip


def _cost_from_sums(sq_total: float, sums, counts, shifted) -> float:
    """Σ w·||x - c_label||² = Σ w||x||² - 2 Σ_j c_j·S_j + Σ_j N_j ||c_j||² (float64)."""
    q = shifted.astype(np.float64)
    cost = sq_total - 2.0 * float(np.einsum("ij,ij->", q, sums))
    cost += float(counts @ np.einsum("ij,ij->i", q, q))
    return max(cost, 0.0)


def _no_far(X):
    """The far-row fields of a partial that keeps none."""
    dtype = X.dtype
    return (np.empty(0, dtype), np.empty((0, X.shape[1]), dtype), np.empty(0, dtype),
            np.empty(0, np.int32))  # fmt: skip
