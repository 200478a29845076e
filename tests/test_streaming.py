"""The gathering pass (summarize), fits on a sample polished on all rows, and the final
label-and-profile pass: results against NumPy / scikit-learn, and reads counted."""

import itertools
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st
from sklearn.decomposition import PCA as SkPCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler as SkScaler

import dkmeans
from dkmeans import KMeans, label_and_profile, profile_clusters, select_k, summarize
from dkmeans._engine import summary as SM
from dkmeans.io import labels_writer

from .conftest import blobs, counting_array, write_store


def _records(n=6000, d=5, seed=0):
    X, _, _ = blobs(n=n, d=d, k=4, std=1.0, seed=seed, dtype=np.float32)
    return X * np.array([1, 100, 0.01, 10, 1], dtype=np.float32)[:d] + 50


# --------------------------------------------------------------------------- summarize


def test_summary_moments_scaler_and_standardised_pca_match_sklearn():
    X = _records()
    s = summarize(da.from_array(X, chunks=(700, 5)), sample_size=0, covariance=True)
    assert s.n_passes == 1 and s.sample.shape == (0, 5)
    np.testing.assert_allclose(s.mean, X.astype(np.float64).mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(s.var, X.astype(np.float64).var(axis=0), rtol=1e-9)
    scaler = s.standard_scaler()
    sk_scaler = SkScaler().fit(X.astype(np.float64))
    np.testing.assert_allclose(scaler.scale_, sk_scaler.scale_, rtol=1e-9)
    pca = s.pca(3, scaler=scaler)
    sk_pca = SkPCA(3, svd_solver="full").fit(sk_scaler.transform(X.astype(np.float64)))
    np.testing.assert_allclose(pca.explained_variance_, sk_pca.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(np.abs(pca.components_), np.abs(sk_pca.components_), atol=1e-5)
    np.testing.assert_allclose(pca.mean_, 0.0, atol=1e-12)
    # a float share keeps the same number of components as a PCA fitted on the scaled data
    fitted = dkmeans.PCA(0.9).fit(scaler.transform(X))
    assert s.pca(0.9, scaler=scaler).n_components_ == fitted.n_components_


def test_summary_refuses_what_it_cannot_do():
    X = _records(n=500)
    with pytest.raises(ValueError, match="no covariance"):
        summarize(X, sample_size=10).pca(2)
    with pytest.raises(ValueError, match="sample_weight"):
        summarize(X, covariance=True, sample_weight=np.ones(500))
    with pytest.raises(ValueError, match="sample_size"):
        summarize(X, sample_size=-1)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        summarize(X, sample_size=10)


def test_sample_is_uniform_seeded_and_independent_of_grouping_and_scheduler():
    from distributed import Client, LocalCluster

    X = _records(n=8000)
    dX = da.from_array(X, chunks=(500, 5))
    a = summarize(dX, sample_size=600, random_state=3)
    np.testing.assert_array_equal(a.sample, X[a.sample_index])
    assert np.all(np.diff(a.sample_index) > 0) and a.sample_index.shape == (600,)
    with dask.config.set({"dkmeans.task-bytes": 4000}):  # other groups of blocks per task
        b = summarize(dX, sample_size=600, random_state=3)
    np.testing.assert_array_equal(a.sample_index, b.sample_index)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster),
    ):  # fmt: skip
        c = summarize(dX, sample_size=600, random_state=3)
    np.testing.assert_array_equal(a.sample_index, c.sample_index)
    assert not np.array_equal(summarize(dX, sample_size=600, random_state=4).sample_index,
                              a.sample_index)  # fmt: skip
    # uniform: each half of the rows holds about half of the sample
    assert abs(np.mean(a.sample_index < 4000) - 0.5) < 0.06


def test_weighted_sample_follows_the_weights():
    X = _records(n=8000)
    dX = da.from_array(X, chunks=(1000, 5))
    ones = summarize(dX, sample_size=500, sample_weight=np.ones(8000), random_state=1)
    plain = summarize(dX, sample_size=500, random_state=1)
    np.testing.assert_array_equal(ones.sample_index, plain.sample_index)  # unit weights: same
    w = np.where(np.arange(8000) % 2 == 0, 9.0, 1.0)
    w[:1000] = 0.0
    s = summarize(dX, sample_size=500, sample_weight=w, random_state=1)
    assert s.sample_index.min() >= 1000  # weightless rows are never drawn
    assert np.mean(s.sample_index % 2 == 0) > 0.8  # rows of weight 9 against weight 1
    assert s.count == pytest.approx(w.sum())


@given(
    n=st.integers(1, 3000),
    size=st.integers(0, 60),
    cuts=st.lists(st.integers(1, 2999), max_size=6),
    weighted=st.booleans(),
)
def test_gather_combines_like_one_block(n, size, cuts, weighted):
    """Kernel property: gathering blocks (each keeping only its rows below the key
    threshold) then combining gives the moments, the Gram and the smallest-key sample
    of the whole rows, whatever the block boundaries."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 3))
    w = rng.uniform(0.1, 2.0, size=n) if weighted else None
    keep = size + 1  # as the pass: one key past the sample gives the inclusion probabilities
    threshold = SM.key_threshold(keep, n, weighted)
    bounds = sorted({c for c in cuts if c < n} | {0, n})
    parts, keys = [], []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        wb = None if w is None else w[a:b]
        parts.append(SM.gather_chunk(X[a:b], wb, True, (i, keep, a, threshold)))
        keys.append(SM.sample_keys(b - a, i, wb))
    combined = SM.combine_gathered(parts, keep)
    keys = np.concatenate(keys)
    order = np.argsort(keys, kind="stable")
    expected = np.sort(order[:size])
    if combined.sample.index.shape[0] < min(keep, n):  # the pass then draws again
        assert np.isfinite(threshold) and keys[order[: min(keep, n)]].max() >= threshold
    else:
        got = SM.finalize_gathered(combined, size)
        np.testing.assert_array_equal(got.sample.index, expected)
        np.testing.assert_array_equal(got.sample.rows, X[expected])
        if weighted:  # design weights w / π, π = 1 - exp(-w τ) with τ the next key
            tau = keys[order[size]] if n > size else np.inf
            pi = 1.0 if n <= size else -np.expm1(-w[expected] * tau)
            np.testing.assert_allclose(got.sample_weight, w[expected] / pi, rtol=1e-12)
        else:
            assert got.sample_weight is None
    got = combined
    np.testing.assert_allclose(got.moments.mean, np.average(X, axis=0, weights=w), atol=1e-12)
    centred = X - X.mean(axis=0)
    np.testing.assert_allclose(got.gram.payload, centred.T @ centred, atol=1e-9)


def test_blocks_send_only_their_likely_sample_rows():
    n, size = 100_000, 1000
    threshold = SM.key_threshold(size, n, False)
    assert threshold < 2 * size / n and SM.key_threshold(size, n, True) == np.inf
    part = SM.gather_chunk(np.zeros((10_000, 2)), None, False, (5, size, 0, threshold))
    assert part.sample.rows.shape[0] < 200  # about size / 10, not size


# --------------------------------------------------------------------------- KMeans on a sample


@pytest.fixture
def blobs_store(tmp_path):
    X, _, _ = blobs(n=40_000, d=6, k=5, std=1.5, seed=11, dtype=np.float32)
    return write_store(tmp_path / "b.zarr", X, 5000), X


def _lloyd_shift(X, centers):
    """Summed squared move of one more full-data Lloyd step."""
    labels = ((X[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    new = np.array([X[labels == c].mean(axis=0) for c in range(centers.shape[0])])
    return float(((new - centers) ** 2).sum())


def test_streamed_fit_samples_then_polishes_to_a_full_data_fixed_point(blobs_store):
    path, X = blobs_store
    arr, store = counting_array(path)
    km = KMeans(5, random_state=0, persist=False, fit_sample=4000).fit(arr)
    assert km.fit_sample_size_ == 4000 and km.n_seeding_passes_ == 1
    # gather, the polishing Lloyd passes, the labels: each reads every chunk once
    assert km.n_passes_ == 1 + km.n_iter_ + 1 <= 4
    assert store.chunk_reads == km.n_passes_ * 8
    X64 = X.astype(np.float64)
    tol = 1e-4 * X64.var(axis=0).mean()
    assert _lloyd_shift(X64, km.cluster_centers_.astype(np.float64)) <= tol
    full = KMeans(5, random_state=0, fit_sample=None).fit(X)
    assert km.inertia_ <= 1.001 * full.inertia_
    np.testing.assert_array_equal(np.asarray(km.labels_), km.predict(X))


def test_fit_sample_defaults_to_on_only_when_streamed(blobs_store):
    path, X = blobs_store
    assert KMeans(5, random_state=0).fit(X).fit_sample_size_ is None  # in memory
    assert KMeans(5, random_state=0, persist=True).fit(str(path)).fit_sample_size_ is None
    streamed = KMeans(5, random_state=0, persist=False).fit(str(path))
    assert streamed.fit_sample_size_ == 40_000  # the whole store is below the default size
    assert streamed.n_passes_ == 2  # the sample held every row: gather, then labels
    given = KMeans(5, init=streamed.cluster_centers_, persist=False).fit(str(path))
    assert given.fit_sample_size_ is None  # explicit centres: straight to all rows


def test_weighted_streamed_fit_matches_repeated_rows_closely():
    X, _, _ = blobs(n=6000, d=3, k=3, std=0.5, seed=2)
    w = np.random.default_rng(0).integers(1, 4, size=6000).astype(float)
    dX = da.from_array(X, chunks=(1000, 3))
    km = KMeans(3, random_state=0, persist=False, fit_sample=2000).fit(dX, sample_weight=w)
    ref = KMeans(3, random_state=0).fit(np.repeat(X, w.astype(int), axis=0))
    np.testing.assert_allclose(np.sort(km.cluster_centers_, axis=0),
                               np.sort(ref.cluster_centers_, axis=0), atol=1e-6)  # fmt: skip


def test_a_sample_too_small_for_the_smallest_cluster_warns_with_the_numbers():
    X, _, _ = blobs(n=20_000, d=2, k=3, std=0.3, seed=4)
    X = np.vstack([X, np.full((400, 2), 40.0) + np.random.default_rng(1).normal(size=(400, 2))])
    dX = da.from_array(X, chunks=(5000, 2))
    with pytest.warns(UserWarning, match=r"fit sample of 1000 of 20400 rows holds only \d+ rows"):
        km = KMeans(4, random_state=0, persist=False, fit_sample=1000).fit(dX)
    assert km.cluster_sizes_.min() == 400  # the polish places the small cluster exactly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(4, random_state=0, persist=False, fit_sample=10_000).fit(dX)


def test_heavy_rows_keep_their_weight_through_the_sample():
    """A few rows carrying most of the weight are a few rows of the sample: their
    design weights (w / π) make the sample fit see their mass."""
    X, _, _ = blobs(n=30_000, d=2, k=3, std=0.5, seed=6)
    heavy = np.full((20, 2), 25.0) + np.random.default_rng(2).normal(scale=0.5, size=(20, 2))
    X = np.vstack([X, heavy])
    w = np.concatenate([np.ones(30_000), np.full(20, 2000.0)])
    dX = da.from_array(X, chunks=(5000, 2))
    s = summarize(dX, sample_size=2000, sample_weight=w, random_state=0)
    assert s.sample_weight.sum() == pytest.approx(w.sum(), rel=0.05)  # Horvitz-Thompson
    with pytest.warns(UserWarning, match="holds only 20 rows"):  # all 20 heavy rows drawn
        sampled = KMeans(4, random_state=0, persist=False, fit_sample=2000).fit(dX, sample_weight=w)
    full = KMeans(4, random_state=0, fit_sample=None).fit(X, sample_weight=w)
    # both stop at the same tolerance (1e-4 of the variance), from different starts
    np.testing.assert_allclose(np.sort(sampled.cluster_centers_, axis=0),
                               np.sort(full.cluster_centers_, axis=0), atol=1e-3)  # fmt: skip
    assert np.abs(sampled.cluster_centers_ - 25).max(axis=1).min() < 0.5  # the heavy cluster


def test_kmeans_plus_plus_warns_only_when_it_would_stream(blobs_store):
    path, _ = blobs_store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(3, init="k-means++", persist=False, random_state=0, fit_sample=5000).fit(str(path))
    with pytest.warns(UserWarning, match="once per centre"):
        KMeans(3, init="k-means++", persist=False, random_state=0, fit_sample=None,
               max_iter=2).fit(str(path))  # fmt: skip


def test_compute_labels_false_skips_the_label_pass(blobs_store):
    path, X = blobs_store
    arr, store = counting_array(path)
    sel = select_k(arr, range(2, 7), persist=False, random_state=0, fit_sample=4000,
                   compute_labels=False)  # fmt: skip
    km = sel.best_model
    assert not hasattr(km, "labels_") and not hasattr(km, "inertia_")
    assert store.chunk_reads == sel.n_passes * 8 == (1 + km.n_iter_) * 8
    labels = KMeans(5, random_state=0, compute_labels=False).fit_predict(X)
    np.testing.assert_array_equal(labels, KMeans(5, random_state=0).fit(X).labels_)


def test_fit_sample_must_exceed_the_clusters():
    with pytest.raises(ValueError, match="fit_sample=3 must be larger"):
        KMeans(4, fit_sample=3).fit(da.from_array(np.random.rand(100, 2), chunks=50))
    with pytest.raises(ValueError, match="fit_sample"):
        KMeans(4, fit_sample=1.5).fit(np.random.rand(100, 2))


def test_select_k_streamed_sweeps_the_sample_and_polishes_the_chosen_k(blobs_store):
    path, X = blobs_store
    arr, store = counting_array(path)
    sel = select_k(arr, range(2, 9), persist=False, random_state=0, fit_sample=5000)
    assert sel.best_k == select_k(X, range(2, 9), random_state=0).best_k == 5
    assert sel.n_passes <= 4 and store.chunk_reads == sel.n_passes * 8
    km = sel.best_model
    assert km.fit_sample_size_ == 5000
    assert _lloyd_shift(X.astype(np.float64), km.cluster_centers_.astype(np.float64)) <= (
        1e-4 * X.astype(np.float64).var(axis=0).mean()
    )
    auto = KMeans("auto", k_range=range(2, 9), random_state=0, persist=False,
                  fit_sample=5000).fit(str(path))  # fmt: skip
    np.testing.assert_array_equal(auto.cluster_centers_, km.cluster_centers_)


# --------------------------------------------------------------------------- the final pass


def test_label_and_profile_is_one_pass_equal_to_predict_and_profile(tmp_path):
    X = _records(n=8000)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("features", data=X, chunks=(1000, 5))
    arr, store = counting_array(tmp_path / "g.zarr" / "features")
    scaler = dkmeans.StandardScaler().fit(X)
    pca = dkmeans.PCA(3).fit(scaler.transform(X))
    km = KMeans(4, random_state=0).fit(pca.transform(scaler.transform(X)))
    model = Pipeline([("scale", scaler), ("pca", pca), ("kmeans", km)])
    expected_inertia, labels_before = km.inertia_, km.labels_
    with labels_writer(zarr.open_group(str(tmp_path / "g.zarr"))["features"]) as writer:
        result = label_and_profile(da.from_zarr(arr), model, write=writer)
    assert store.chunk_reads == 8  # one read of every chunk
    assert km.labels_ is labels_before  # the model is left alone unless asked
    arch = result.archetypes
    assert result.inertia == pytest.approx(expected_inertia, rel=1e-6)
    del km.inertia_, km.cluster_sizes_
    label_and_profile(X, model, update_model=True)
    assert not hasattr(km, "labels_")
    written = zarr.open_array(writer.path, mode="r")[:]
    np.testing.assert_array_equal(written, model.predict(X))
    ref = profile_clusters(X, written, n_clusters=4)
    np.testing.assert_allclose(arch.means.to_numpy(), ref.means.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(arch.stds.to_numpy(), ref.stds.to_numpy(), rtol=1e-8)
    assert km.inertia_ == pytest.approx(expected_inertia, rel=1e-6)
    np.testing.assert_array_equal(km.cluster_sizes_, np.bincount(written, minlength=4))
    sk_like = dkmeans.simplified_silhouette_score(pca.transform(scaler.transform(X)),
                                                  km.cluster_centers_)  # fmt: skip
    assert km.simplified_silhouette_ == pytest.approx(sk_like, rel=1e-6)


def test_a_failed_final_pass_leaves_no_labels(tmp_path):
    X = _records(n=4000)
    X[3500, 1] = np.inf
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("features", data=X, chunks=(500, 5))
    km = KMeans(3, random_state=0).fit(np.nan_to_num(X, posinf=0.0))
    with (
        pytest.raises(ValueError, match="NaN or infinity"),
        labels_writer(group["features"]) as writer,
    ):
        label_and_profile(da.from_zarr(group["features"]), km, write=writer)
    assert sorted(p.name for p in (tmp_path / "g.zarr").iterdir()
                  if not p.name.startswith("zarr")) == ["features"]  # fmt: skip


def test_labels_writer_refuses_blocks_that_are_not_whole_chunks(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("features", data=np.zeros((100, 2)), chunks=(10, 2))
    with (
        pytest.raises(ValueError, match="whole chunks"),
        labels_writer(group["features"]) as writer,
    ):
        writer(np.zeros(5, dtype=np.int32), 5)
    assert not (tmp_path / "g.zarr" / "cluster").exists()
