"""Each bad input raises one clear exception naming the problem."""

import dask.array as da
import numpy as np
import pytest

from dkmeans import KMeans

X = np.random.default_rng(0).normal(size=(100, 3))


def _with(value, where=(5, 1)):
    Y = X.copy()
    Y[where] = value
    return Y


@pytest.mark.parametrize(
    ("data", "kwargs", "exc", "match"),
    [
        (_with(np.nan), {}, ValueError, "NaN or infinite"),
        (_with(np.inf), {}, ValueError, "NaN or infinite"),
        (da.from_array(_with(np.nan, (99, 2)), chunks=10), {}, ValueError, "NaN or infinite"),
        (_with(np.nan), {"init": "random"}, ValueError, "NaN or infinite"),
        (_with(np.nan), {"init": "k-means++"}, ValueError, "NaN or infinite"),
        (X[:, 0], {}, ValueError, "must be 2-D"),
        (X[None], {}, ValueError, "must be 2-D"),
        (np.empty((0, 3)), {}, ValueError, "empty"),
        (np.array([["a", "b"], ["c", "d"]]), {}, TypeError, "not numeric"),
        (X.astype(object).astype(str), {}, TypeError, "not numeric"),
        (X, {"n_clusters": 0}, ValueError, "n_clusters=0"),
        (X, {"n_clusters": 101}, ValueError, "larger than the number of samples"),
        (X, {"n_clusters": 2.5}, ValueError, "n_clusters"),
        (X, {"init": "kmeans"}, ValueError, "init="),
        (X, {"init": np.zeros((3, 2)), "n_clusters": 3}, ValueError, "init array has shape"),
        (X, {"tol": -1}, ValueError, "tol=-1"),
        (X, {"persist": "yes"}, ValueError, "persist="),
        (X, {"random_state": "seed"}, ValueError, "random_state"),
        ({"a": 1}, {}, TypeError, "not supported"),
    ],
)
def test_bad_fit_input(data, kwargs, exc, match):
    kw = {"n_clusters": 3, "random_state": 0} | kwargs
    with pytest.raises(exc, match=match):
        KMeans(**kw).fit(data)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(99), "one weight per sample"),
        (-np.ones(100), "negative"),
        (np.zeros(100), "zero everywhere"),
        (np.full(100, np.nan), "NaN"),
    ],
)
def test_bad_sample_weight(weights, match):
    with pytest.raises(ValueError, match=match):
        KMeans(3).fit(X, sample_weight=weights)


def test_predict_with_wrong_feature_count():
    km = KMeans(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans was fitted with 3"):
        km.predict(X[:, :2])
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.predict(_with(np.nan))
    with pytest.raises(ValueError, match="NaN or infinity"):
        km.score(_with(np.nan))


def test_paths_that_are_not_zarr(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Zarr store"):
        KMeans(2).fit(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match="not a Zarr array or group"):
        KMeans(2).fit(str(tmp_path / "plain"))


def test_unknown_chunk_sizes():
    d = da.from_array(X, chunks=10)
    d = d[d[:, 0] > -100]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        KMeans(2).fit(d)


def test_unfitted_predict():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        KMeans(2).predict(X)
