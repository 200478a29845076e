"""Each bad input raises one clear exception naming the problem."""

import warnings

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
        (_with(np.nan), {}, ValueError, "NaN or infinity"),
        (_with(np.inf), {}, ValueError, "NaN or infinity"),
        (da.from_array(_with(np.nan, (99, 2)), chunks=10), {}, ValueError, "NaN or infinity"),
        (_with(np.nan), {"init": "random"}, ValueError, "NaN or infinity"),
        (_with(np.nan), {"init": "k-means++"}, ValueError, "NaN or infinity"),
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
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3 features"):
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


# --------------------------------------------------------------------------- the whole surface
# Each row: (what, call(tmp_path), exception, message).  Calls that write get an existing
# output to protect; the test then checks that nothing in tmp_path changed.


def _store(tmp, names=("a", "b", "c")):
    import zarr

    group = zarr.open_group(str(tmp / "s.zarr"), mode="w")
    arr = group.create_array("features", shape=(100, 3), chunks=(25, 3), dtype="f8")
    arr[:] = X
    if names is not None:
        arr.attrs["feature_names"] = list(names)
    return tmp / "s.zarr"


def _model(tmp):
    from dkmeans import save

    return save(KMeans(3, random_state=0).fit(X), tmp / "model")


def _edit_manifest(tmp, change):
    import json

    path = _model(tmp)
    doc = json.loads((path / "model.json").read_text())
    change(doc)
    (path / "model.json").write_text(json.dumps(doc))
    return path


def _corrupt_store(tmp):
    path = _store(tmp)
    (path / "features" / "zarr.json").write_text("{not json")
    return path


def _job(tmp, **kw):
    from dkmeans.pipeline import Job, run

    return run(Job(**kw))


SURFACE = [
    ("select_k empty range", lambda t: __import__("dkmeans").select_k(X, []), ValueError,
     "k_range is empty"),
    ("select_k k=1", lambda t: __import__("dkmeans").select_k(X, [1, 2]), ValueError,
     "at least 2"),
    ("select_k k>=n", lambda t: __import__("dkmeans").select_k(X[:5], [2, 5]), ValueError,
     "only 5 samples"),
    ("select_k criterion", lambda t: __import__("dkmeans").select_k(X, criterion="gap"),
     ValueError, "criterion='gap'"),
    ("select_k NaN", lambda t: __import__("dkmeans").select_k(_with(np.nan), [2, 3]),
     ValueError, "NaN or infinity"),
    ("PCA n_components=0", lambda t: __import__("dkmeans").PCA(0).fit(X), ValueError,
     "n_components"),
    ("PCA n_components>d", lambda t: __import__("dkmeans").PCA(4).fit(X), ValueError,
     "at most min"),
    ("PCA 1-D", lambda t: __import__("dkmeans").PCA(1).fit(X[:, 0]), ValueError, "2-D"),
    ("PCA NaN", lambda t: __import__("dkmeans").PCA(2).fit(_with(np.inf)), ValueError,
     "NaN or infinity"),
    ("scaler strings", lambda t: __import__("dkmeans").StandardScaler().fit(X.astype(str)),
     TypeError, "not numeric"),
    ("scaler transform width", lambda t: __import__("dkmeans").StandardScaler().fit(X)
     .transform(X[:, :2]), ValueError, "2 features"),
    ("silhouette labels length", lambda t: __import__("dkmeans").silhouette_score(
        X, np.arange(99) % 2), ValueError, "labels have shape"),
    ("silhouette one cluster", lambda t: __import__("dkmeans").silhouette_score(
        X, np.zeros(100, int)), ValueError, "Number of labels is 1"),
    ("silhouette sample too big", lambda t: __import__("dkmeans").silhouette_score(
        X, np.arange(100) % 2, sample_size=500), ValueError, "sample_size=500"),
    ("davies_bouldin NaN", lambda t: __import__("dkmeans").davies_bouldin_score(
        _with(np.nan), np.arange(100) % 2), ValueError, "NaN"),
    ("missing store", lambda t: KMeans(2).fit(str(t / "nope.zarr")), FileNotFoundError,
     "No Zarr store"),
    ("corrupt store", lambda t: KMeans(2).fit(str(_corrupt_store(t) / "features")),
     FileNotFoundError, "not a Zarr array or group"),
    ("duplicated names", lambda t: KMeans(2).fit(str(_store(t, ("a", "a", "b")) / "features")),
     ValueError, "duplicated"),
    ("job store missing", lambda t: _job(t, store=str(t / "nope.zarr"), k=2), FileNotFoundError,
     "No Zarr store"),
    ("job variable missing", lambda t: _job(t, store=str(_store(t)), variable="x", k=2),
     KeyError, "No variable 'x'"),
    ("job names of another width", lambda t: _job(t, store=str(_store(t, None)), k=2,
     feature_names=["a"]), ValueError, "feature_names must be 3 unique names"),
    ("job k > n", lambda t: _job(t, store=str(_store(t)), k=500, pca=None), ValueError,
     "larger than the number of samples"),
    ("load: not a model", lambda t: __import__("dkmeans").load(t), FileNotFoundError,
     "not a dkmeans model directory"),
    ("load: edited JSON", lambda t: (_model(t) / "model.json").write_text("{") and
     __import__("dkmeans").load(t / "model"), ValueError, "not valid JSON"),
    ("load: unknown version", lambda t: __import__("dkmeans").load(_edit_manifest(
        t, lambda d: d.update(format_version=2))), ValueError, "format version 2"),
    ("load: unknown class", lambda t: __import__("dkmeans").load(_edit_manifest(
        t, lambda d: d["steps"][0].update({"class": "Pickle"}))), ValueError,
     "unknown estimator class 'Pickle'"),
    ("load: array removed", lambda t: [p.unlink() for p in (_model(t) / "arrays").glob(
        "*cluster_centers_*")] and __import__("dkmeans").load(t / "model"), FileNotFoundError,
     "cluster_centers_"),
    ("predict width", lambda t: __import__("dkmeans").load(_model(t)).predict(X[:, :2]),
     ValueError, "X has 2 features"),
    ("cluster config key", lambda t: __import__("dkmeans").open_cluster(
        {"kind": "local", "workers": 2}).__enter__(), ValueError, r"unknown key\(s\)"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "call", "exc", "match"), SURFACE, ids=[s[0] for s in SURFACE])
def test_bad_input_across_the_public_surface(tmp_path, what, call, exc, match):
    from dkmeans.exceptions import DKMeansError

    with pytest.raises(exc, match=match) as info:
        call(tmp_path)
    assert "\n" not in str(info.value).strip()  # one line
    assert isinstance(info.value, DKMeansError), type(info.value)
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers


def test_object_array_of_numbers_is_converted_as_sklearn_does():
    objects = X.astype(object)
    a = KMeans(3, random_state=0).fit(objects)
    b = KMeans(3, random_state=0).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.cluster_centers_.dtype == np.float64


def test_complex_input_is_a_value_error():
    with pytest.raises(ValueError, match="Complex data not supported"):
        KMeans(3).fit(X + 1j)


@pytest.mark.parametrize(
    "make", [lambda: __import__("dkmeans").PCA(2), lambda: __import__("dkmeans").StandardScaler()]
)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_transform_refuses_nonfinite_input(make, bad):
    model = make().fit(X)
    Y = X.copy()
    Y[3, 1] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no numpy "invalid value" warning on the way
        with pytest.raises(ValueError, match="NaN or infinity"):
            model.transform(Y)


def test_errors_belong_to_the_hierarchy_and_to_the_builtin_class():
    from dkmeans.exceptions import DKMeansError, InputError, InputTypeError, ParameterError

    for call, kind, builtin in [
        (lambda: KMeans(3).fit(X[:, 0]), InputError, ValueError),
        (lambda: KMeans(3).fit(np.array([["a", "b"], ["c", "d"]])), InputTypeError, TypeError),
        (lambda: KMeans(0).fit(X), ParameterError, ValueError),
        (lambda: KMeans(3).fit(X[:0]), InputError, ValueError),
    ]:
        with pytest.raises(kind) as info:
            call()
        assert isinstance(info.value, DKMeansError)
        assert isinstance(info.value, builtin)
