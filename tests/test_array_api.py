"""Non-NumPy blocks (CuPy on a GPU) through the kernels, KMeans, PCA, the scaler and
the metrics: the same public calls, the same answers as on NumPy blocks.

CI has no GPU: the blocks are the stand-in of ``tests/_device.py``, which fails
wherever dkmeans would hand a device block to NumPy.
"""

import array_api_strict as xs
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from hypothesis import given
from hypothesis import strategies as st

import dkmeans
from dkmeans import PCA, KMeans, MiniBatchKMeans, StandardScaler
from dkmeans._engine import cluster_stats as S
from dkmeans._engine import kernels as K
from dkmeans._engine import reductions as R
from dkmeans.persistence import data_fingerprint

from ._device import device, host, on_device  # noqa: F401  (device is a fixture)
from .conftest import blobs

pytestmark = pytest.mark.usefixtures("device")


# --------------------------------------------------------------------------- kernels


@st.composite
def problems(draw):
    n = draw(st.integers(1, 200))
    d = draw(st.integers(1, 6))
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(n, d)) * draw(st.sampled_from([1.0, 100.0])) + draw(
        st.sampled_from([0.0, 50.0])
    )
    C = X[rng.integers(n, size=k)] + rng.normal(size=(k, d))
    w = rng.uniform(0.1, 3, size=n) if draw(st.booleans()) else None
    return X, C, w


def _shift(X):
    return K.choose_shift(X.mean(axis=0), X.var(axis=0))


@given(problems(), st.booleans())
def test_lloyd_step_on_device_matches_numba(problem, device_weights):
    (
        X,
        C,
        w,
    ) = problem
    shift = _shift(X)
    sets = [K.prepare_centers(C, shift, X.dtype), K.prepare_centers(C[::-1], shift, X.dtype)]
    wd = None if w is None else (xs.asarray(w) if device_weights else w)
    want = K.lloyd_step(X, sets, shift, w, n_far=3)
    got = K.lloyd_step(xs.asarray(X), sets, shift, wd, n_far=3)
    for g, e in zip(got, want, strict=True):
        assert isinstance(g.sums, np.ndarray) and isinstance(g.far_rows, np.ndarray)
        scale = np.abs(X).max() * max(X.shape[0], 1)
        np.testing.assert_allclose(g.sums, e.sums, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(g.counts, e.counts, rtol=1e-12)
        np.testing.assert_allclose(g.cost, e.cost, rtol=1e-7, atol=1e-9 * scale**2)
        np.testing.assert_allclose(g.far_dist, e.far_dist, rtol=1e-7, atol=1e-7 * scale)
        np.testing.assert_array_equal(g.far_rows, e.far_rows)
        np.testing.assert_array_equal(g.far_label, e.far_label)
        np.testing.assert_array_equal(g.far_weight, e.far_weight)


@given(problems())
def test_assignment_costs_and_moments_on_device_match_numba(problem):
    X, C, w = problem
    shift = _shift(X)
    cs = K.prepare_centers(C, shift, X.dtype)
    Xd = xs.asarray(X)
    labels, dist = K.assign_labels(Xd, cs, shift)
    want_labels, want_dist = K.assign_labels(X, cs, shift)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-7, atol=1e-6 * np.abs(X).max() ** 2)
    np.testing.assert_allclose(
        K.exact_cost(Xd, C, labels, w), K.exact_cost(X, C, labels, w), rtol=1e-10
    )
    cost, nearest = K.min_cost_update(Xd, None, None, cs, shift, first_index=5)
    want_cost, want_nearest = K.min_cost_update(X, None, None, cs, shift, first_index=5)
    np.testing.assert_array_equal(nearest, want_nearest)
    np.testing.assert_allclose(cost, want_cost, rtol=1e-7, atol=1e-6 * np.abs(X).max() ** 2)
    got = K.moments(Xd) if w is None else K.weighted_moments(Xd, w)
    want = K.moments(X) if w is None else K.weighted_moments(X, w)
    assert got[0] == pytest.approx(want[0]) and got[3] == want[3]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(host(K.distances(Xd, cs, shift)), K.distances(X, cs, shift))
    add, skip = np.abs(C[:, 0]), np.arange(C.shape[0]) == C.shape[0] - 1
    for kwargs in ({}, {"add": add, "skip": skip}):
        got = S._own_and_other(Xd, labels, C, shift, **kwargs)
        want = S._own_and_other(X, labels, C, shift, **kwargs)
        for g, e in zip(got, want, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9 * np.abs(X).max() ** 2)
    np.testing.assert_allclose(host(K.unit_rows(Xd, strict=False)), K.unit_rows(X, strict=False))


@given(problems())
def test_per_cluster_sums_on_device_match_numpy(problem):
    X, C, w = problem
    k = C.shape[0]
    labels = np.random.default_rng(0).integers(k, size=X.shape[0])
    Xd = xs.asarray(X)
    # float32 rows: the device computes distances in float32, numba in float64
    rel = 1e-9 if X.dtype == np.float64 else 1e-6
    tol = {"rtol": rel, "atol": rel * np.abs(X).max() ** 2 * X.shape[0]}
    pairs = [
        (S.cluster_moments_chunk(Xd, w, labels, k), S.cluster_moments_chunk(X, w, labels, k)),
        (S.feature_moments_chunk(Xd, w, k, labels), S.feature_moments_chunk(X, w, k, labels)),
    ]
    for got, want in pairs:
        for g, e in zip(got, want, strict=True):
            np.testing.assert_allclose(g, e, **tol)
    np.testing.assert_allclose(
        S.spread_chunk(Xd, w, C, labels), S.spread_chunk(X, w, C, labels), **tol
    )
    half = X.shape[0] // 2
    for xa, offset in ((X[:half], 0), (X[half:], None)):
        np.testing.assert_allclose(
            S.pairwise_cluster_sums(xs.asarray(xa), Xd, labels, k, offset),
            S.pairwise_cluster_sums(xa, X, labels, k, offset), **tol,
        )  # fmt: skip


def test_moments_on_device_count_nonfinite():
    X = np.arange(12.0).reshape(4, 3)
    X[1, 2], X[3, 0] = np.nan, np.inf
    got, want = K.moments(xs.asarray(X)), K.moments(X)
    assert got[3] == want[3] == 2
    np.testing.assert_allclose(got[1], want[1])


def test_cost_chunk_on_device_refuses_nonfinite():
    X = np.ones((5, 2))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        R.cost_chunk(xs.asarray(X), None, [X[:1]], [K.prepare_centers(X[:1], 0 * X[0], X.dtype)],
                     0 * X[0])  # fmt: skip


# --------------------------------------------------------------------------- estimators


def _data(dtype=np.float64, n=3000, chunks=700):
    X, _, _ = blobs(n=n, d=5, k=4, dtype=dtype)
    Xn = da.from_array(X, chunks=(chunks, -1))
    return X, Xn, on_device(Xn)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kmeans_on_device_blocks_matches_numpy_blocks(init, dtype):
    X, Xn, Xd = _data(dtype)
    w = np.random.default_rng(1).uniform(0.5, 2, X.shape[0])
    wd = on_device(da.from_array(w, chunks=(700,)))
    want = KMeans(4, init=init, random_state=0).fit(Xn, sample_weight=w)
    got = KMeans(4, init=init, random_state=0).fit(Xd, sample_weight=wd)
    assert got.n_iter_ == want.n_iter_
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=tol, atol=tol)
    assert got.inertia_ == pytest.approx(want.inertia_, rel=tol)
    labels = got.labels_.compute()
    assert isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels, want.labels_.compute())
    np.testing.assert_array_equal(got.predict(Xd).compute(), labels)
    distances = got.transform(Xd).compute()
    assert not isinstance(distances, np.ndarray)  # stays in the blocks' library
    np.testing.assert_allclose(host(distances), want.transform(Xn).compute(), rtol=tol, atol=tol)
    assert got.score(Xd) == pytest.approx(want.score(Xn), rel=tol)


def test_cosine_and_minibatch_on_device_blocks():
    _, Xn, Xd = _data()
    want = KMeans(4, metric="cosine", random_state=0).fit(Xn)
    got = KMeans(4, metric="cosine", random_state=0).fit(Xd)
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-10)
    mb_want = MiniBatchKMeans(4, batch_size=256, random_state=0).fit(Xn)
    mb_got = MiniBatchKMeans(4, batch_size=256, random_state=0).fit(Xd)
    np.testing.assert_allclose(mb_got.cluster_centers_, mb_want.cluster_centers_, rtol=1e-10)
    stream_want = MiniBatchKMeans(4, batch_size=256, random_state=0)
    stream_got = MiniBatchKMeans(4, batch_size=256, random_state=0)
    for start in range(0, Xn.shape[0], 1000):
        stream_want.partial_fit(Xn[start : start + 1000])
        stream_got.partial_fit(Xd[start : start + 1000])
    np.testing.assert_allclose(
        stream_got.cluster_centers_, stream_want.cluster_centers_, rtol=1e-10
    )


@pytest.mark.parametrize("solver", ["covariance", "tsqr", "randomized"])
def test_pca_and_scaler_on_device_blocks(solver):
    X, Xn, Xd = _data()
    want = PCA(3, svd_solver=solver, random_state=0).fit(Xn)
    got = PCA(3, svd_solver=solver, random_state=0).fit(Xd)
    np.testing.assert_allclose(got.components_, want.components_, atol=1e-8)
    np.testing.assert_allclose(got.explained_variance_, want.explained_variance_, rtol=1e-8)
    Z = got.transform(Xd)
    np.testing.assert_allclose(host(Z), want.transform(Xn).compute(), atol=1e-8)
    np.testing.assert_allclose(
        host(got.inverse_transform(Z)), want.inverse_transform(want.transform(Xn)).compute(),
        atol=1e-8,
    )  # fmt: skip
    scaler = StandardScaler().fit(Xd)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0))
    np.testing.assert_allclose(host(scaler.transform(Xd)), (X - X.mean(0)) / X.std(0), atol=1e-10)


def test_metrics_and_select_k_on_device_blocks():
    _, Xn, Xd = _data(n=1500, chunks=400)
    labels = KMeans(4, random_state=0).fit(Xn).labels_
    for metric in (dkmeans.calinski_harabasz_score, dkmeans.davies_bouldin_score):
        assert metric(Xd, labels) == pytest.approx(metric(Xn, labels), rel=1e-10)
    for kwargs in ({}, {"sample_size": 300, "stratify": True, "random_state": 0},
                   {"method": "sqeuclidean-exact"}):  # fmt: skip
        assert dkmeans.silhouette_score(Xd, labels, **kwargs) == pytest.approx(
            dkmeans.silhouette_score(Xn, labels, **kwargs), rel=1e-9
        )
    got = dkmeans.select_k(Xd, range(2, 6), random_state=0)
    want = dkmeans.select_k(Xn, range(2, 6), random_state=0)
    assert got.best_k == want.best_k == 4
    np.testing.assert_allclose(
        got.table[["inertia", "silhouette", "davies_bouldin"]].to_numpy(),
        want.table[["inertia", "silhouette", "davies_bouldin"]].to_numpy(), rtol=1e-8,
    )  # fmt: skip


def test_profiles_alignment_persistence_and_checkpoints_on_device_blocks(tmp_path):
    _, Xn, Xd = _data()
    want = KMeans(4, random_state=0).fit(Xn)
    got = KMeans(4, random_state=0, checkpoint=tmp_path / "ckpt").fit(Xd)
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-10)
    profiles = dkmeans.profile_clusters(Xd, got.labels_)
    np.testing.assert_allclose(profiles.means, dkmeans.profile_clusters(Xn, want.labels_).means)
    dkmeans.align_labels(got, want)
    np.testing.assert_array_equal(got.cluster_ids_, np.arange(4))
    got.save(tmp_path / "model")
    loaded = dkmeans.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(Xd).compute(), want.labels_.compute())
    assert data_fingerprint(Xd) == data_fingerprint(Xn)


def test_device_blocks_on_a_local_cluster():
    _, Xn, Xd = _data()
    want = KMeans(4, random_state=0).fit(Xn)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
        got = KMeans(4, random_state=0).fit(Xd)
        labels = got.labels_.compute()  # held on the workers
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(labels, want.labels_.compute())


def test_in_memory_device_arrays_go_in_as_they_are():
    """A bare CuPy array (here its stand-in): blocks of it stay on the device, fitted
    attributes and labels come back as NumPy, transforms as the input's library."""
    X, _, _ = blobs(n=2000, d=4, k=3)
    Xd = xs.asarray(X)
    want = KMeans(3, random_state=0).fit(X)
    got = KMeans(3, random_state=0).fit(Xd)
    assert isinstance(got.labels_, np.ndarray)
    np.testing.assert_array_equal(got.labels_, want.labels_)
    np.testing.assert_array_equal(got.predict(Xd), want.labels_)
    distances = got.transform(Xd)
    assert isinstance(distances, type(Xd))
    np.testing.assert_allclose(host(distances), want.transform(X))
    assert dkmeans.silhouette_score(Xd, got.labels_) == pytest.approx(
        dkmeans.silhouette_score(X, want.labels_)
    )
    np.testing.assert_allclose(host(PCA(2).fit(Xd).transform(Xd)), PCA(2).fit(X).transform(X))
    np.testing.assert_allclose(
        host(StandardScaler().fit(Xd).transform(Xd)), StandardScaler().fit(X).transform(X)
    )
    with pytest.raises(ValueError, match="2-D"):
        KMeans(2).fit(xs.asarray(X[:, 0]))


@pytest.mark.parametrize("free_bytes, persisted", [(2**30, True), (2**20, False)])
def test_auto_persist_counts_gpu_memory_for_device_blocks(monkeypatch, free_bytes, persisted):
    from dkmeans._engine import backend as _backend

    X, _, _ = blobs(n=40_000, d=5, k=3)  # 1.6 MB: fits 1 GiB, not half of 1 MiB
    Xd = on_device(da.from_array(X, chunks=(10_000, -1)))
    monkeypatch.setattr(
        _backend, "device_free_bytes", lambda meta: free_bytes if meta is not None else None
    )
    assert KMeans(3, random_state=0, max_iter=2).fit(Xd).persisted_ is persisted


def test_nonfinite_device_blocks_get_the_same_clear_error():
    X, _, _ = blobs(n=2000, d=3, k=3)
    X[1234, 1] = np.nan
    Xd = on_device(da.from_array(X, chunks=(500, -1)))
    for fit in (KMeans(3).fit, PCA(2).fit, StandardScaler().fit, MiniBatchKMeans(3).fit):
        with pytest.raises(ValueError, match="NaN or infinit"):
            fit(Xd)
    good = KMeans(3, random_state=0).fit(np.nan_to_num(X))
    with pytest.raises(ValueError, match="NaN or infinity"):
        good.predict(Xd).compute()
