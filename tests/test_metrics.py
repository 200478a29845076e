"""Clustering metrics against scikit-learn and brute-force references."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from dkmeans import metrics as M

from ._reference import sq_dists
from .conftest import blobs, counting_array


def _data(n=1200, k=4, std=2.5, seed=0):
    X, y, _ = blobs(n=n, d=5, k=k, std=std, seed=seed)
    return X, y


def _forms(X, y):
    yield "numpy", X, y
    yield "dask-137", da.from_array(X, chunks=(137, -1)), y
    yield "dask-labels", da.from_array(X, chunks=(400, -1)), da.from_array(y, chunks=300)
    coords = {"row": np.arange(len(X)) * 10, "feature": list("abcde")}
    yield "xarray", xr.DataArray(X, dims=("row", "feature"), coords=coords), y


@pytest.mark.parametrize(
    "name", ["silhouette_score", "davies_bouldin_score", "calinski_harabasz_score"]
)
def test_agrees_with_sklearn_on_every_input_form(name):
    X, y = _data()
    ref = getattr(skm, name)(X, y)
    for form, Xf, yf in _forms(X, y):
        got = getattr(M, name)(Xf, yf)
        assert got == pytest.approx(ref, rel=1e-10), form


def test_zarr_store_and_string_labels(tmp_path):
    X, y = _data()
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(250, 5), dtype=X.dtype)
    z[:] = X
    names = np.array(["red", "green", "blue", "gold"])[y]
    for name in ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score"):
        assert getattr(M, name)(str(tmp_path / "x.zarr"), names) == pytest.approx(
            getattr(skm, name)(X, names), rel=1e-10
        )


def test_silhouette_samples_blockwise_on_dask():
    X, y = _data(n=900)
    got = M.silhouette_samples(da.from_array(X, chunks=(200, -1)), y)
    assert isinstance(got, da.Array)
    np.testing.assert_allclose(got.compute(), skm.silhouette_samples(X, y), atol=1e-12)


def _brute_sq_silhouette(X, y):
    D = sq_dists(X, X)
    out = np.zeros(len(X))
    for i in range(len(X)):
        own = y == y[i]
        if own.sum() == 1:
            continue
        a = D[i, own].sum() / (own.sum() - 1)
        b = min(D[i, y == c].mean() for c in np.unique(y) if c != y[i])
        out[i] = (b - a) / max(a, b)
    return out


@given(
    n=st.integers(5, 60),
    k=st.integers(2, 5),
    offset=st.sampled_from([0.0, 1e3]),
    chunk=st.integers(1, 25),
    seed=st.integers(0, 2**16),
)
def test_sqeuclidean_exact_matches_brute_force(n, k, offset, chunk, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) + offset
    y = rng.integers(k, size=n)
    y[:3] = [0, 1, 0]  # at least two clusters, and fewer than n (the metrics' domain)
    ref = _brute_sq_silhouette(X, y)
    got = M.silhouette_samples(da.from_array(X, chunks=(chunk, -1)), y, method="sqeuclidean-exact")
    np.testing.assert_allclose(got.compute(), ref, atol=1e-9 * (1 + offset))
    assert M.silhouette_score(X, y, method="sqeuclidean-exact") == pytest.approx(
        ref.mean(), abs=1e-9 * (1 + offset)
    )


def test_sampled_silhouette_is_close_to_exact_and_reproducible():
    X, y = _data(n=6000, std=3.0)
    exact = skm.silhouette_score(X, y)
    Xd = da.from_array(X, chunks=(700, -1))
    for stratify in (False, True):
        scores = [
            M.silhouette_score(Xd, y, sample_size=1500, stratify=stratify, random_state=s)
            for s in range(3)
        ]
        # stated tolerance: 0.02 for 1,500 of 6,000 rows on these blobs
        assert max(abs(s - exact) for s in scores) < 0.02
        again = M.silhouette_score(Xd, y, sample_size=1500, stratify=stratify, random_state=0)
        assert again == scores[0]


def test_stratified_sample_keeps_small_clusters():
    X, y = _data(n=5000)
    y = y.copy()
    y[:30] = 9  # a tiny cluster of 30 rows
    res = M.sample_silhouette(X, y, 400, stratify=True, random_state=0)
    assert np.count_nonzero(y[res.index] == 9) == 30
    assert res.weights.sum() == pytest.approx(1.0)
    uniform = M.sample_silhouette(X, y, 400, random_state=0)
    assert np.count_nonzero(y[uniform.index] == 9) < 30
    # every sampled row's silhouette is computed within the sample, as scikit-learn does
    codes = np.unique(y[res.index], return_inverse=True)[1]
    np.testing.assert_allclose(res.values, skm.silhouette_samples(X[res.index], codes), atol=1e-12)


def test_simplified_silhouette_matches_reference():
    X, _ = _data()
    C = X[[0, 5, 9]]
    D = np.sqrt(sq_dists(X, C))
    D.sort(axis=1)
    ref = np.mean((D[:, 1] - D[:, 0]) / np.maximum(D[:, 0], D[:, 1]))
    assert M.simplified_silhouette_score(da.from_array(X, chunks=(300, -1)), C) == pytest.approx(
        ref, rel=1e-10
    )


def test_passes_over_the_store(tmp_path):
    X, y = _data(n=2000)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(250, 5), dtype=X.dtype)
    z[:] = X
    for fn, passes in [
        (M.calinski_harabasz_score, 1),
        (M.davies_bouldin_score, 2),
        (lambda a, b: M.silhouette_score(a, b, sample_size=500, random_state=0), 1),
        (lambda a, b: M.silhouette_score(a, b, method="sqeuclidean-exact"), 2),
    ]:
        arr, store = counting_array(tmp_path / "x.zarr")
        fn(arr, y)
        assert store.chunk_reads == passes * 8


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.zeros(10, int), {}, "Number of labels is 1"),
        (np.arange(10), {}, "Number of labels is 10"),
        (np.arange(9) % 2, {}, "one label per row"),
        (np.arange(10) % 2, {"sample_size": 11}, "sample_size"),
        (np.arange(10) % 2, {"method": "cosine"}, "method"),
    ],
)
def test_bad_input(labels, kwargs, match):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match=match):
        M.silhouette_score(X, labels, **kwargs)


def test_nan_is_reported():
    X, y = _data(n=100)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.calinski_harabasz_score(X, y)


def test_kmeans_reports_the_simplified_silhouette_of_its_label_pass(zarr_blobs):
    from dkmeans import KMeans

    path, X, _ = zarr_blobs
    km = KMeans(5, random_state=0).fit(str(path))
    assert km.simplified_silhouette_ == pytest.approx(
        M.simplified_silhouette_score(X, km.cluster_centers_), rel=1e-6
    )


def test_centroid_silhouettes_are_tiled_without_changing_them():
    """Blocks longer than one row tile (and many centres) give the untiled values."""
    from dkmeans._engine import cluster_stats as S
    from dkmeans._engine import kernels as K

    rng = np.random.default_rng(5)
    X = rng.normal(size=(9_000, 4))
    C = rng.normal(size=(40, 4))
    shift = X.mean(axis=0)
    D = ((X[:, None] - C[None]) ** 2).sum(-1)
    labels = D.argmin(axis=1)
    a = np.sqrt(D[np.arange(len(X)), labels])
    D2 = D.copy()
    D2[np.arange(len(X)), labels] = np.inf
    b = np.sqrt(D2.min(axis=1))
    s, lab = S.simplified_silhouette_chunk(X, C, K.prepare_centers(C, shift, X.dtype), shift)
    np.testing.assert_array_equal(lab, labels)
    np.testing.assert_allclose(s, (b - a) / np.maximum(a, b), rtol=1e-9, atol=1e-12)
