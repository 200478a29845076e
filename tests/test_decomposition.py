"""PCA against scikit-learn, out of core, and the scale -> PCA -> KMeans pipeline."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from sklearn.decomposition import PCA as SkPCA
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline

from dkmeans import PCA, KMeans, StandardScaler

from .conftest import blobs, counting_array


def _data(n=3000, d=12, seed=0, offset=50.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10, 0.1, d)
    X = rng.normal(size=(n, d)) * scales @ np.linalg.qr(rng.normal(size=(d, d)))[0] + offset
    return X.astype(dtype)


@pytest.mark.parametrize("solver", ["covariance", "tsqr"])
@pytest.mark.parametrize("n_components", [None, 4, 0.9, 0.999])
@pytest.mark.parametrize("chunks", [3000, 311])
def test_exact_solvers_match_sklearn(solver, n_components, chunks):
    X = _data()
    ref = SkPCA(n_components, svd_solver="full").fit(X)
    ours = PCA(n_components, svd_solver=solver).fit(da.from_array(X, chunks=(chunks, -1)))
    assert ours.n_components_ == ref.n_components_
    np.testing.assert_allclose(
        ours.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-6
    )
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-5)  # signs too
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-9)
    assert ours.noise_variance_ == pytest.approx(ref.noise_variance_, rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-8)
    Z = ours.transform(X)
    np.testing.assert_allclose(ours.inverse_transform(Z), ref.inverse_transform(Z), atol=1e-8)


def test_randomized_recovers_a_low_rank_spectrum():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 5)) @ rng.normal(size=(5, 60)) * 3
    X += 0.01 * rng.normal(size=X.shape)
    ref = SkPCA(5, svd_solver="full").fit(X)
    ours = PCA(5, svd_solver="randomized", random_state=0).fit(da.from_array(X, chunks=(500, -1)))
    np.testing.assert_allclose(
        ours.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-6
    )
    np.testing.assert_allclose(ours.components_, ref.components_, atol=1e-5)
    assert ours.n_passes_ == 4 + 1
    again = PCA(5, svd_solver="randomized", random_state=0).fit(X)
    np.testing.assert_allclose(again.components_, ours.components_, atol=1e-12)


def test_whiten_float32_and_lazy_transform():
    X = _data(dtype=np.float32)
    ref = SkPCA(3, whiten=True).fit(X)
    ours = PCA(3, whiten=True).fit(X)
    assert ours.components_.dtype == np.float32
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-3, atol=1e-3)
    lazy = ours.transform(da.from_array(X, chunks=(500, -1)))
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    np.testing.assert_allclose(lazy.compute(), ours.transform(X), rtol=1e-5, atol=1e-5)


def test_one_pass_over_the_store_and_xarray_output(tmp_path):
    X = _data()
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(500, 12), dtype=X.dtype)
    z[:] = X
    for solver in ("covariance", "tsqr"):
        arr, store = counting_array(tmp_path / "x.zarr")
        pca = PCA(0.95, svd_solver=solver).fit(arr)
        assert store.chunk_reads == 6 and pca.n_passes_ == 1
    xa = xr.DataArray(X, dims=("row", "feature"), coords={"row": np.arange(len(X))})
    out = PCA(2).fit(xa).transform(xa)
    assert out.dims == ("row", "feature") and list(out["feature"].values) == ["pca0", "pca1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": 13}, "at most min"),
        ({"n_components": 0}, "n_components"),
        ({"n_components": 1.5}, "n_components"),
        ({"n_components": 0.5, "svd_solver": "randomized"}, "int n_components"),
        ({"svd_solver": "arpack"}, "svd_solver"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCA(**kwargs).fit(_data(n=50))


def test_nan_is_reported():
    X = _data(n=100)
    X[5, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        PCA(2).fit(X)


def test_pipeline_scale_pca_auto_k_streams_the_store(tmp_path):
    X, _, _ = blobs(n=3000, d=8, k=5, std=0.5, seed=4)
    X = X * np.geomspace(1, 1000, 8)  # features in very different units
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(500, 8), dtype=X.dtype)
    z[:] = X
    arr, store = counting_array(tmp_path / "x.zarr")

    def pipe():
        return make_pipeline(
            StandardScaler(), PCA(0.95), KMeans("auto", k_range=range(2, 9), random_state=0)
        )

    p = pipe().fit(da.from_array(arr, chunks=(500, 8)))
    # one read to scale, one for PCA, one for k-means (the reduced data is then kept)
    assert store.chunk_reads == 3 * 6
    km = p[-1]
    assert km.n_clusters_ == 5 and km.k_selection_.best_k == 5
    p_np = pipe().fit(X)
    # the same partition (cluster ids may differ: k-means|| draws depend on the chunking)
    assert adjusted_rand_score(np.asarray(p.predict(X)), p_np.predict(X)) == 1.0
    assert p_np[-1].n_clusters_ == 5


def test_float32_gram_is_as_accurate_as_the_data():
    X = _data(n=20000, offset=1000.0)
    ref = SkPCA(None, svd_solver="full").fit(X.astype(np.float32).astype(np.float64))
    ours = PCA(None).fit(da.from_array(X.astype(np.float32), chunks=(3000, -1)))
    np.testing.assert_allclose(
        ours.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-6
    )
    np.testing.assert_allclose(np.abs(ours.components_[:6]), np.abs(ref.components_[:6]), atol=1e-4)
