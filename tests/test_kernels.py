"""Chunk kernels and reductions against the naive NumPy reference."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dkmeans._engine import kernels as K
from dkmeans._engine import reductions as R

from ._reference import lloyd_partials, moments, sq_dists


@st.composite
def problems(draw):
    n = draw(st.integers(1, 300))
    d = draw(st.integers(1, 7))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * draw(st.sampled_from([1.0, 100.0])) + draw(
        st.sampled_from([0.0, 50.0])
    )
    C = X[rng.integers(n, size=k)] + rng.normal(size=(k, d))
    w = rng.uniform(0, 3, size=n) if draw(st.booleans()) else None
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=4))))
    cuts = [c for c in cuts if 0 < c < n]
    return X, C, w, cuts


@given(problems())
def test_lloyd_step_matches_reference_over_any_chunking(problem):
    X, C, w, cuts = problem
    shift = X.mean(axis=0)
    cs = K.prepare_centers(C, shift, X.dtype)
    bounds = [0, *cuts, len(X)]
    parts = [
        R.lloyd_chunk(X[a:b], None if w is None else w[a:b], [cs], shift, n_far=3)
        for a, b in itertools.pairwise(bounds)
    ]
    (got,), _ = R.combine_lloyd(parts, n_far=3)
    labels, sums, counts, cost = lloyd_partials(X, C, w)
    np.testing.assert_allclose(got.counts, counts, rtol=1e-12, atol=1e-12)
    # sums are of shifted rows
    np.testing.assert_allclose(got.sums + np.outer(counts, shift), sums, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(got.cost, cost, rtol=1e-7, atol=1e-6)
    # far points: the largest distances overall, descending
    d_ref = sq_dists(X, C)[np.arange(len(X)), labels]
    np.testing.assert_allclose(got.far_dist, np.sort(d_ref)[::-1][:3], rtol=1e-7, atol=1e-6)


@given(problems())
def test_moments_merge_matches_numpy(problem):
    X, _, _, cuts = problem
    bounds = [0, *cuts, len(X)]
    got = R.combine_moments([R.moments_chunk(X[a:b]) for a, b in itertools.pairwise(bounds)])
    mean, m2 = moments(X)
    assert got.count == len(X)
    np.testing.assert_allclose(got.mean, mean, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.m2, m2, rtol=1e-9, atol=1e-7)
    assert got.n_nonfinite == 0


def test_moments_count_nonfinite():
    X = np.ones((5, 3))
    X[1, 2] = np.nan
    X[4, 0] = np.inf
    assert R.moments_chunk(X).n_nonfinite == 2


@given(problems())
def test_labels_and_exact_cost(problem):
    X, C, w, _ = problem
    shift = X.mean(axis=0)
    labels, cost = K.labels_and_cost(X, C, K.prepare_centers(C, shift, X.dtype), shift, w)
    ref_labels, _, _, ref_cost = lloyd_partials(X, C, w)
    D = sq_dists(X, C)
    # labels may differ only on exact ties
    np.testing.assert_allclose(
        D[np.arange(len(X)), labels], D[np.arange(len(X)), ref_labels], rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(cost, ref_cost, rtol=1e-10, atol=1e-9)


@given(problems())
def test_min_cost_update_is_incremental(problem):
    X, C, _, _ = problem
    shift = X.mean(axis=0)
    split = max(1, len(C) // 2)
    cost, near = K.min_cost_update(X, None, None, K.prepare_centers(C[:split], shift, X.dtype),
                                   shift, 0)  # fmt: skip
    if split < len(C):
        cost, near = K.min_cost_update(
            X, cost, near, K.prepare_centers(C[split:], shift, X.dtype), shift, split
        )
    # a k-means|| round that drew no candidate lowers nothing
    cost, near = K.min_cost_update(
        X, cost, near, K.prepare_centers(C[:0], shift, X.dtype), shift, len(C)
    )
    D = sq_dists(X, C)
    np.testing.assert_allclose(cost, D.min(axis=1), rtol=1e-7, atol=1e-6 * (1 + D.max()))
    np.testing.assert_allclose(D[np.arange(len(X)), near], D.min(axis=1), rtol=1e-7,
                               atol=1e-6 * (1 + D.max()))  # fmt: skip


def test_seeding_state_is_six_bytes_a_row_for_float32_and_widens_past_uint16():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3)).astype(np.float32)
    shift = np.zeros(3)
    first = K.prepare_centers(X[:4], shift, X.dtype)
    cost, near = K.min_cost_update(X, None, None, first, shift, 0)
    assert (cost.dtype, near.dtype) == (np.float32, np.uint16)
    far = K.prepare_centers(X[4:8] + 0.0, shift, X.dtype)
    cost2, near2 = K.min_cost_update(X, cost, near, far, shift, 70_000)
    assert near2.dtype == np.int32 and near.dtype == np.uint16  # input untouched
    D = sq_dists(X.astype(np.float64), X[:8].astype(np.float64))
    index = np.r_[np.arange(4), 70_000 + np.arange(4)]
    np.testing.assert_allclose(cost2, D.min(axis=1), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(D[np.arange(500), np.searchsorted(index, near2)], D.min(axis=1),
                               rtol=1e-6, atol=1e-5)  # fmt: skip
    X64 = X.astype(np.float64)
    first64 = K.prepare_centers(X64[:4], shift, X64.dtype)
    assert K.min_cost_update(X64, None, None, first64, shift, 0)[0].dtype == np.float64


def test_float32_shift_keeps_precision_far_from_origin():
    rng = np.random.default_rng(0)
    X = (1e4 + rng.normal(size=(2000, 4))).astype(np.float32)
    C = X[:3].copy()
    shift = X.astype(np.float64).mean(axis=0)
    (p,) = K.lloyd_step(X, [K.prepare_centers(C, shift, X.dtype)], shift)
    _, _, _, cost = lloyd_partials(X, C)
    assert p.cost == pytest.approx(cost, rel=1e-4)


def test_sampling_keys_bernoulli_rate():
    """key > φ selects each row with probability min(1, ℓ·w·c/φ)."""
    cost = np.linspace(0, 1, 2000)
    phi = cost.sum()
    hits = np.zeros_like(cost)
    for s in range(400):
        hits += K.sampling_keys(cost, None, 50.0, s, "bernoulli") > phi
    expected = np.minimum(1, 50.0 * cost / phi)
    assert abs(hits.sum() / 400 - expected.sum()) < 1.0
    assert np.all(K.sampling_keys(cost, None, 50.0, 0, "bernoulli")[cost == 0] == 0)


def test_sampling_keys_exponential_draw_proportional_to_cost():
    cost = np.array([1.0, 2.0, 0.0, 7.0])
    wins = np.bincount(
        [int(np.argmax(K.sampling_keys(cost, None, 1.0, s, "exponential"))) for s in range(4000)],
        minlength=4,
    )
    np.testing.assert_allclose(wins / 4000, cost / cost.sum(), atol=0.03)


def test_combine_draws_tracks_largest_dropped_key():
    def draw(keys):
        keys = np.asarray(keys, float)
        return R.Draw(1.0, keys, np.zeros((len(keys), 1)), np.arange(len(keys)), 0.0)

    out = R.combine_draws([draw([5, 1]), draw([4, 3])], n_keep=2)
    np.testing.assert_array_equal(out.keys, [5, 4])
    assert out.max_dropped == 3
    assert out.cost == 2.0


def test_relocation_takes_farthest_point():
    X = np.array([[0.0], [0.1], [0.2], [10.0]])
    C = np.array([[0.1], [100.0]])  # cluster 1 gets no point
    shift = np.zeros(1)
    (p,) = K.lloyd_step(X, [K.prepare_centers(C, shift, X.dtype)], shift, n_far=2)
    upd = R.finalize_lloyd(p, C, shift)
    assert upd.n_relocated == 1
    np.testing.assert_allclose(upd.centers[1], [10.0])
    np.testing.assert_allclose(upd.centers[0], [0.1])


@given(
    st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-1e9, 1e9)), max_size=80),
    st.integers(0, 90),
    st.sampled_from([np.float32, np.float64]),
)
def test_farthest_takes_the_largest_and_earlier_of_equal_entries(values, n, dtype):
    dist = np.array(values, dtype=dtype)
    naive = np.lexsort((np.arange(dist.shape[0]), -dist))  # largest first, ties by index
    top, rest = K.farthest_and_rest(dist, n)
    np.testing.assert_array_equal(top, naive[:n])
    left = dist[naive[n:]]
    assert rest == (left.max() if left.size else -np.inf)
    np.testing.assert_array_equal(K.farthest(dist, n), top)


@given(problems(), st.sampled_from([np.float32, np.float64]))
def test_final_label_block_matches_reference(problem, dtype):
    """The fused final E-step: labels, exact cost, per-cluster weight and the
    centroid-based silhouette, against direct NumPy distances."""
    X, C, w, _ = problem
    X, C = X.astype(dtype), C.astype(dtype)
    shift = X.mean(axis=0, dtype=np.float64)
    cs = K.prepare_centers(C, shift, dtype)
    labels, cost, weights, simplified = K.label_block(X, C, cs, shift, w)
    np.testing.assert_array_equal(labels, K.assign_labels(X, cs, shift)[0])
    d2 = sq_dists(X.astype(np.float64), C.astype(np.float64))
    ww = np.ones(len(X)) if w is None else w
    own = d2[np.arange(len(X)), labels]
    np.testing.assert_allclose(cost, ww @ own, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(weights, np.bincount(labels, ww, minlength=len(C)), rtol=1e-12)
    if len(C) < 2:
        assert simplified == 0.0
        return
    other = np.where(np.arange(len(C)) == labels[:, None], np.inf, d2).min(axis=1)
    a, b = np.sqrt(own), np.sqrt(other)
    top = np.maximum(a, b)
    s = np.divide(b - a, top, out=np.zeros_like(top), where=top > 0)
    # the second centre is ranked in the data's dtype: a near-tie may pick the other one
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(simplified, ww @ s, rtol=tol, atol=tol * len(X))
