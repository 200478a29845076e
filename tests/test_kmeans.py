"""KMeans against scikit-learn and invariances, on NumPy, dask, xarray and Zarr input."""

import contextlib
import logging
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.cluster import KMeans as SkKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from dkmeans import KMeans

from .conftest import blobs, counting_array


def _sk_from(init, X, **kw):
    return SkKMeans(init.shape[0], init=init, n_init=1, **kw).fit(X)


@pytest.mark.parametrize("form", ["numpy", "dask", "zarr"])
def test_lloyd_from_given_init_matches_sklearn(form, tmp_path):
    X, _, centers = blobs(n=3000, d=5, k=4, std=2.5, seed=1)
    init = centers + 3.0
    ref = _sk_from(init, X)
    if form == "dask":
        data = da.from_array(X, chunks=(700, 5))
    elif form == "zarr":
        import zarr

        z = zarr.create_array(
            str(tmp_path / "x.zarr"), shape=X.shape, chunks=(512, 5), dtype=X.dtype
        )
        z[:] = X
        data = str(tmp_path / "x.zarr")
    else:
        data = X
    km = KMeans(4, init=init).fit(data)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-8)
    assert km.n_iter_ == ref.n_iter_
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)
    labels = np.asarray(km.labels_)
    np.testing.assert_array_equal(labels, ref.labels_)
    if form == "numpy":
        assert isinstance(km.labels_, np.ndarray)
    else:
        assert isinstance(km.labels_, da.Array)


def test_weighted_lloyd_matches_sklearn():
    X, _, centers = blobs(n=2000, d=3, k=3, std=2.0, seed=2)
    w = np.random.default_rng(0).uniform(0.1, 3, size=len(X))
    init = centers + 1.5
    ref = SkKMeans(3, init=init, n_init=1).fit(X, sample_weight=w)
    km = KMeans(3, init=init).fit(da.from_array(X, chunks=300), sample_weight=w)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-5)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)
    assert km.n_iter_ == ref.n_iter_


def test_integer_weights_equal_repeated_rows():
    X, _, centers = blobs(n=500, d=3, k=3, std=2.0, seed=4)
    reps = np.random.default_rng(1).integers(0, 4, size=len(X))
    init = centers + 1.0
    a = KMeans(3, init=init).fit(X, sample_weight=reps.astype(float))
    b = KMeans(3, init=init).fit(np.repeat(X, reps, axis=0))
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-10)
    assert a.n_iter_ == b.n_iter_


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_kmeans_parallel_quality_against_sklearn_kmeans_plusplus(seed):
    X, y, _ = blobs(n=6000, d=6, k=10, std=1.5, seed=seed)
    ours = KMeans(10, random_state=seed).fit(da.from_array(X, chunks=1000))
    ref = SkKMeans(10, n_init=1, random_state=seed).fit(X)
    # k-means|| should be at least as good as one k-means++ run, up to noise
    assert ours.inertia_ <= ref.inertia_ * 1.02
    assert adjusted_rand_score(y, np.asarray(ours.labels_)) > 0.95
    assert ours.n_seeding_passes_ == ours.init_rounds + 1


def test_kmeans_parallel_never_fewer_distinct_centres_than_k():
    # many duplicates and a tiny oversampling: still k distinct centres
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(12, 2)), 50, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        km = KMeans(12, oversampling_factor=0.1, init_rounds=1, random_state=0).fit(X)
    assert len(np.unique(km.cluster_centers_, axis=0)) == 12
    assert km.inertia_ == pytest.approx(0.0, abs=1e-9)


def test_fewer_distinct_points_than_k_warns():
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 10, axis=0)
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        KMeans(3, random_state=0).fit(X)


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_every_init_finds_the_blobs(init):
    X, y, _ = blobs(n=2000, d=4, k=5, std=0.5, seed=5)
    km = KMeans(5, init=init, random_state=0).fit(da.from_array(X, chunks=400))
    assert adjusted_rand_score(y, np.asarray(km.labels_)) > 0.99


def test_float32_stays_float32():
    X, _, _ = blobs(n=1000, d=4, k=3, dtype=np.float32)
    km = KMeans(3, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X).dtype == np.float32
    km64 = KMeans(3, random_state=0).fit(X.astype(np.float64))
    np.testing.assert_allclose(km.cluster_centers_, km64.cluster_centers_, rtol=1e-4, atol=1e-4)


def test_integer_input_becomes_float64():
    X = np.random.default_rng(0).integers(0, 10, size=(200, 3))
    assert KMeans(2, random_state=0).fit(X).cluster_centers_.dtype == np.float64


def test_in_memory_input_is_read_in_place_not_copied():
    # dask's from_array copies a NumPy array whole (and hashes its bytes) on every call
    from dkmeans._engine.validation import as_input, as_sample_weight

    X, _, _ = blobs(n=5000, d=4, k=3, dtype=np.float32)
    w = np.random.default_rng(0).random(X.shape[0])
    arrays = {"X": as_input(X).array, "w": as_sample_weight(w, as_input(X).array)}
    for array, source in zip(arrays.values(), (X, w), strict=True):
        blocks = [v for k, v in dict(array.dask).items() if k[0] == array.name]
        assert len(blocks) == array.numblocks[0] > 1
        assert all(np.shares_memory(getattr(b, "value", b), source) for b in blocks)
        np.testing.assert_array_equal(array.compute(), source)
    assert as_input(X).array.name != as_input(X).array.name  # unique without a hash
    km = KMeans(3, random_state=0).fit(X, sample_weight=w)
    ref = KMeans(3, random_state=0).fit(X.copy(), sample_weight=w.copy())
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)


def test_empty_cluster_relocated_to_farthest_point():
    X = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [5.0, 0], [5.1, 0], [20.0, 0]])
    init = np.array([[0.1, 0], [5.0, 0], [1000.0, 0]])  # third centre attracts nothing
    km = KMeans(3, init=init).fit(X)
    ref = _sk_from(init, X)
    np.testing.assert_allclose(
        np.sort(km.cluster_centers_[:, 0]), np.sort(ref.cluster_centers_[:, 0])
    )
    assert km.inertia_ == pytest.approx(ref.inertia_)
    assert np.all(km.cluster_sizes_ > 0)


def test_same_seed_same_result_and_chunking_invariance():
    X, _, _ = blobs(n=3000, d=4, k=6, std=1.0, seed=6)
    a = KMeans(6, random_state=7).fit(da.from_array(X, chunks=500))
    b = KMeans(6, random_state=7).fit(da.from_array(X, chunks=500))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert a.inertia_ == b.inertia_


def test_n_init_keeps_best_run_and_shares_passes():
    X, _, _ = blobs(n=3000, d=4, k=8, std=2.0, seed=8)
    one = [KMeans(8, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(3)]
    km = KMeans(8, init="random", n_init=6, random_state=0).fit(X)
    assert km.inertia_ <= min(one) * 1.01
    # lockstep: passes are the longest run's iterations + cost + labels, not the sum over runs
    assert km.n_passes_ <= km.max_iter + 2
    assert km.n_passes_ < 6 * km.n_iter_


def test_xarray_labels_come_back_on_sample_coordinate():
    X, _, _ = blobs(n=600, d=3, k=3)
    ids = np.arange(600) * 10
    arr = xr.DataArray(
        X.T, dims=("feature", "community"),
        coords={"feature": ["posts", "retention", "vocab"], "community": ids},
    )  # fmt: skip
    km = KMeans(3, random_state=0).fit(arr)
    assert isinstance(km.labels_, xr.DataArray)
    assert km.labels_.dims == ("community",)
    np.testing.assert_array_equal(km.labels_["community"], ids)
    assert list(km.feature_names_in_) == ["posts", "retention", "vocab"]
    np.testing.assert_array_equal(km.predict(arr).values, km.labels_.values)
    dist = km.transform(arr)
    assert dist.dims == ("community", "cluster")
    np.testing.assert_array_equal(dist["community"], ids)
    with pytest.raises(ValueError, match="feature names"):
        km.predict(arr.assign_coords(feature=["a", "b", "c"]))


def test_dask_labels_do_not_reread_the_store(zarr_blobs):
    path, _X, _ = zarr_blobs
    arr, store = counting_array(path)
    km = KMeans(5, random_state=0, persist=False).fit(arr)
    before = store.chunk_reads
    np.asarray(km.labels_)
    km.labels_.sum().compute()
    assert store.chunk_reads == before


def test_streamed_passes_counted_by_the_store(zarr_blobs):
    path, _X, _ = zarr_blobs
    arr, store = counting_array(path)
    km = KMeans(5, random_state=0, persist=False, fit_sample=None).fit(arr)
    n_chunks = 8
    # every pass reads each chunk once; k-means|| also reads the one chunk of its first centre
    assert store.chunk_reads == km.n_passes_ * n_chunks + 1
    assert km.n_passes_ == km.n_seeding_passes_ + km.n_iter_ + 1
    assert km.n_seeding_passes_ <= 6
    assert not km.persisted_


def test_persisted_data_is_read_once(zarr_blobs):
    path, _X, _ = zarr_blobs
    arr, store = counting_array(path)
    km = KMeans(5, random_state=0, persist=True).fit(arr)
    assert km.persisted_
    assert store.chunk_reads == 8
    streamed = KMeans(5, random_state=0, persist=False, fit_sample=None).fit(str(path))
    np.testing.assert_array_equal(km.cluster_centers_, streamed.cluster_centers_)
    assert km.n_passes_ == streamed.n_passes_


def test_predict_transform_score_agree_with_sklearn():
    X, _, _centers = blobs(n=1500, d=4, k=4, std=1.0)
    km = KMeans(4, random_state=0).fit(X)
    ref = _sk_from(km.cluster_centers_.copy(), X, max_iter=1)
    ref.cluster_centers_ = km.cluster_centers_
    new = X[:100] + 0.1
    np.testing.assert_array_equal(km.predict(new), ref.predict(new))
    np.testing.assert_allclose(km.transform(new), ref.transform(new), rtol=1e-6, atol=1e-6)
    assert km.score(new) == pytest.approx(ref.score(new), rel=1e-9)
    lazy = km.predict(da.from_array(new, chunks=30))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), km.predict(new))
    np.testing.assert_array_equal(km.fit_predict(X), np.asarray(km.labels_))
    assert km.fit_transform(X).shape == (len(X), 4)


def test_sklearn_pipeline_and_clone():
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _, _ = blobs(n=500, d=3, k=3)
    pipe = make_pipeline(StandardScaler(), KMeans(3, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (500,)
    assert clone(KMeans(5, tol=0.1)).get_params()["tol"] == 0.1
    assert list(KMeans(3).fit(X).get_feature_names_out()) == ["kmeans0", "kmeans1", "kmeans2"]


def test_per_iteration_log_lines(caplog):
    """Each module logs on its own logger under dkmeans."""
    X, _, _ = blobs(n=500, d=3, k=3)
    with caplog.at_level("INFO", logger="dkmeans"):
        KMeans(3, random_state=0).fit(X)
    lines = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("dkmeans._engine.lloyd", "Iteration 1, inertia") in [(n, m[:20]) for n, m in lines]
    assert ("dkmeans._engine.driver", "Initialization complete") in lines


def test_verbose_prints_like_sklearn_and_touches_no_logger(capsys):
    X, _, _ = blobs(n=500, d=3, k=3)
    root = logging.getLogger("dkmeans")
    before = (list(root.handlers), root.level, logging.getLogger().handlers[:])
    KMeans(3, init=X[:3], verbose=1).fit(X)
    assert (list(root.handlers), root.level, logging.getLogger().handlers[:]) == before
    ours = capsys.readouterr().out.splitlines()
    SkKMeans(3, init=X[:3], n_init=1, verbose=1).fit(X)
    theirs = capsys.readouterr().out.splitlines()
    assert ours[0] == theirs[0] == "Initialization complete"
    assert ours[1].startswith("Iteration 1, inertia ") and theirs[1].startswith("Iteration ")
    assert ours[-1].startswith("Converged at iteration")
    assert theirs[-1].startswith("Converged at iteration")
    KMeans(3, init=X[:3]).fit(X)  # verbose=0 prints nothing
    assert capsys.readouterr().out == ""


def test_concurrent_fits_keep_their_own_verbose(capsys):
    """verbose is per call (a context variable), not a global logger setting."""
    from concurrent.futures import ThreadPoolExecutor

    X, _, _ = blobs(n=2000, d=3, k=3)
    with ThreadPoolExecutor(2) as pool:
        quiet = [pool.submit(KMeans(3, random_state=s).fit, X) for s in range(4)]
        for f in quiet:
            f.result()
    assert capsys.readouterr().out == ""
    with ThreadPoolExecutor(2) as pool:
        loud = pool.submit(KMeans(3, init=X[:3], verbose=1).fit, X)
        quiet = pool.submit(KMeans(3, init=X[:3], verbose=0).fit, X)
        loud.result(), quiet.result()
    lines = capsys.readouterr().out.splitlines()
    assert lines.count("Initialization complete") == 1


@pytest.mark.parametrize("init", ["k-means||", "random", "k-means++"])
@pytest.mark.parametrize("chunked", [False, True])
def test_unit_weights_give_the_same_labels_as_no_weights(init, chunked):
    """Equal weights draw the same rows as no weights: identical labels, numbering too."""
    X, _, _ = blobs(3000, 5, 6, std=2.0)
    data = da.from_array(X, chunks=500) if chunked else X
    plain = KMeans(6, init=init, random_state=1).fit(data)
    ones = KMeans(6, init=init, random_state=1).fit(data, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(np.asarray(ones.labels_), np.asarray(plain.labels_))
    np.testing.assert_allclose(ones.cluster_centers_, plain.cluster_centers_)


@pytest.mark.parametrize("algorithm", ["lloyd", "elkan"])
def test_algorithm_is_accepted_as_in_sklearn(algorithm):
    X, _, _ = blobs(1500, 4, 3)
    init = X[:3]
    ours = KMeans(3, init=init, algorithm=algorithm).fit(X)
    theirs = SkKMeans(3, init=init, n_init=1, algorithm=algorithm).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, theirs.cluster_centers_, rtol=1e-6)
    with pytest.raises(ValueError, match="algorithm"):
        KMeans(3, algorithm="full").fit(X)


def test_transform_is_as_precise_as_sklearn_in_float32():
    """A point on a centre is at distance 0; distances are accurate to float32."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(3000, 8)) * 3 + 100).astype(np.float32)
    model = KMeans(4, random_state=0).fit(X)
    on_centres = model.transform(model.cluster_centers_)
    assert on_centres.dtype == np.float32
    np.testing.assert_array_equal(on_centres.min(axis=1), 0.0)
    exact = np.sqrt(
        ((X.astype(np.float64)[:, None] - model.cluster_centers_.astype(np.float64)) ** 2).sum(-1)
    )
    np.testing.assert_allclose(model.transform(X), exact, rtol=1e-6, atol=1e-5)


def test_transform_dtype_follows_sklearn():
    """float64 unless both the model and X are float32."""
    X, _, _ = blobs(600, 3, 3)
    X32 = X.astype(np.float32)
    for fit_on, data in [(X, X32), (X32, X), (X, X), (X32, X32)]:
        ours = KMeans(3, init=X[:3], random_state=0).fit(fit_on).transform(data)
        theirs = SkKMeans(3, init=X[:3], n_init=1).fit(fit_on).transform(data)
        assert ours.dtype == theirs.dtype, (fit_on.dtype, data.dtype)


def test_callable_init_as_in_sklearn():
    X, _, _ = blobs(2000, 4, 5, std=1.5)
    calls = []

    def init(data, n_clusters, random_state):
        calls.append(type(data))
        return data[random_state.permutation(len(data))[:n_clusters]]

    ours = KMeans(5, init=init, random_state=0).fit(X)
    assert len(calls) == 10 and calls[0] is np.ndarray  # n_init="auto" is 10, as sklearn
    best = min(
        SkKMeans(5, init=c, n_init=1).fit(X).inertia_
        for c in [X[np.random.RandomState(s).permutation(len(X))[:5]] for s in range(10)]
    )
    assert ours.inertia_ <= best * 1.05
    again = KMeans(5, init=init, random_state=0).fit(da.from_array(X, chunks=400))
    # the same partition (runs that tie may be kept in another order of their centres)
    order = np.lexsort(again.cluster_centers_.T), np.lexsort(ours.cluster_centers_.T)
    np.testing.assert_allclose(again.cluster_centers_[order[0]], ours.cluster_centers_[order[1]])
    with pytest.raises(ValueError, match="init array has shape"):
        KMeans(5, init=lambda data, k, random_state: data[:2]).fit(X)


@pytest.mark.parametrize("on_cluster", [False, True])
def test_progress_bars_name_their_pass(on_cluster):
    import io

    from dkmeans._engine.log import progress

    X, _, _ = blobs(n=4000, d=3, k=3)
    data = da.from_array(X, chunks=1000)
    out = io.StringIO()
    with contextlib.ExitStack() as stack:
        if on_cluster:
            from distributed import Client, LocalCluster

            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
                )
            )
            stack.enter_context(Client(cluster))
        stack.enter_context(progress(out, minimum=0))
        KMeans(3, random_state=0, persist=False, fit_sample=None, max_iter=3).fit(data)
    lines = {line.split("[")[0].strip() for line in out.getvalue().replace("\r", "\n").splitlines()}
    for label in ("seeding round 1/5", "seeding weights", "Lloyd 1", "labels"):
        assert label in lines, sorted(lines)
