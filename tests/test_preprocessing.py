"""StandardScaler against scikit-learn, out of core."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from sklearn.preprocessing import StandardScaler as SkScaler

from dkmeans import KMeans, StandardScaler

from .conftest import counting_array


def _data(seed=0, n=1000, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1.0, 1e3, 1e-3, 5.0] + [0.0, 1e6, -3.0, 2.0]
    X[:, 3] = 7.0  # a constant feature
    return X.astype(dtype)


# scikit-learn's weighted variance of the constant column rounds below zero before its sqrt
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
@pytest.mark.parametrize("chunks", [1000, 137, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_sklearn_for_any_chunking(chunks, weighted):
    X = _data()
    w = np.random.default_rng(1).uniform(0, 2, size=len(X)) if weighted else None
    ref = SkScaler().fit(X, sample_weight=w)
    ours = StandardScaler().fit(da.from_array(X, chunks=(chunks, -1)), sample_weight=w)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-9, atol=1e-18)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-9)
    assert ours.n_samples_seen_ == pytest.approx(ref.n_samples_seen_)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("with_mean", "with_std"), [(True, False), (False, True), (False, False)])
def test_options_match_sklearn(with_mean, with_std):
    X = _data()
    ref = SkScaler(with_mean=with_mean, with_std=with_std).fit(X)
    ours = StandardScaler(with_mean=with_mean, with_std=with_std).fit(X)
    assert (ours.scale_ is None) == (ref.scale_ is None)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(X)), X, rtol=1e-9)


def test_float32_stays_float32_and_dask_stays_lazy():
    X = _data(dtype=np.float32)
    s = StandardScaler().fit(X)
    assert s.transform(X).dtype == np.float32
    out = s.transform(da.from_array(X, chunks=100))
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), s.transform(X), rtol=1e-6)


def test_fit_is_one_pass_over_the_store(tmp_path):
    X = _data(n=2000)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(250, 4), dtype=X.dtype)
    z[:] = X
    arr, store = counting_array(tmp_path / "x.zarr")
    s = StandardScaler().fit(arr)
    assert store.chunk_reads == 8
    np.testing.assert_allclose(s.mean_, X.mean(axis=0), rtol=1e-12)


def test_xarray_round_trip_keeps_coordinates():
    X = _data(n=50)
    arr = xr.DataArray(
        X, dims=("community", "variable"),
        coords={"community": np.arange(50) + 100, "variable": ["a", "b", "c", "d"]},
    )  # fmt: skip
    s = StandardScaler().fit(arr)
    out = s.transform(arr)
    assert out.dims == ("community", "variable")
    assert list(out["variable"].values) == ["a", "b", "c", "d"]
    assert list(s.get_feature_names_out()) == ["a", "b", "c", "d"]


def test_composes_with_kmeans_in_a_pipeline():
    from sklearn.pipeline import make_pipeline

    X = _data(n=600)
    pipe = make_pipeline(StandardScaler(), KMeans(3, random_state=0))
    labels = pipe.fit_predict(da.from_array(X, chunks=200))
    assert np.asarray(labels).shape == (600,)


def test_bad_input():
    X = _data(n=20)
    Y = X.copy()
    Y[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        StandardScaler().fit(Y)
    with pytest.raises(ValueError, match="X has 3 features, but StandardScaler is expecting 4"):
        StandardScaler().fit(X).transform(X[:, :3])
    with pytest.raises(ValueError, match="with_mean="):
        StandardScaler(with_mean="yes").fit(X)
