"""MiniBatchKMeans: partial_fit over a stream of chunks, fit over a store."""

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from dkmeans import KMeans, MiniBatchKMeans, load, save
from dkmeans._engine import reductions as R

from ._reference import sq_dists
from .conftest import blobs, counting_array


def test_update_is_the_running_mean_of_attracted_rows():
    """Two batches equal one batch of both (scikit-learn's learning rate 1/count)."""
    rng = np.random.default_rng(0)
    C = rng.normal(size=(3, 2)) * 5
    a, b = rng.normal(size=(40, 2)) * 5, rng.normal(size=(30, 2)) * 5
    counts = np.array([2.0, 0.0, 5.0])
    c1, n1, _ = R.minibatch_update(a, None, C, counts)
    labels_b = sq_dists(b, c1).argmin(axis=1)
    c2, n2, _ = R.minibatch_update(b, None, c1, n1)
    # reference: centre = (count·centre + Σ attracted rows) / (count + n), batch by batch
    ref, cnt = C.copy(), counts.copy()
    for batch, labels in ((a, sq_dists(a, C).argmin(axis=1)), (b, labels_b)):
        for j in range(3):
            rows = batch[labels == j]
            if len(rows):
                ref[j] = (cnt[j] * ref[j] + rows.sum(axis=0)) / (cnt[j] + len(rows))
                cnt[j] += len(rows)
    np.testing.assert_allclose(c2, ref, rtol=1e-12)
    np.testing.assert_array_equal(n2, cnt)


def test_partial_fit_over_a_stream_finds_the_blobs():
    X, y, _ = blobs(n=20_000, d=4, k=6, std=0.8, seed=3)
    mbk = MiniBatchKMeans(6, batch_size=500, random_state=0)
    for start in range(0, len(X), 2_000):
        mbk.partial_fit(da.from_array(X[start : start + 2_000], chunks=700))
    assert adjusted_rand_score(y, mbk.predict(X)) > 0.99
    assert mbk.n_steps_ == sum(-(-n // 500) for n in [700, 700, 600] * 10)
    assert mbk.counts_.sum() == len(X)


def test_fit_over_a_store_matches_kmeans_quality_and_counts_passes(zarr_blobs):
    path, X, _ = zarr_blobs
    arr, store = counting_array(path)
    mbk = MiniBatchKMeans(5, batch_size=256, max_iter=5, random_state=0, persist=False).fit(arr)
    full = KMeans(5, random_state=0).fit(X)
    assert mbk.inertia_ <= 1.01 * full.inertia_
    assert mbk.n_passes_ == mbk.n_seeding_passes_ + mbk.n_iter_ + 1
    assert store.chunk_reads == mbk.n_passes_ * 8 + 1
    np.testing.assert_array_equal(np.asarray(mbk.labels_), mbk.predict(X))
    assert clone(mbk).get_params()["batch_size"] == 256


def test_deterministic_across_chunkings_of_the_same_blocks_and_schedulers():
    from distributed import Client, LocalCluster

    X, _, _ = blobs(n=6000, d=3, k=4, std=1.0, seed=8)
    Xd = da.from_array(X, chunks=(1000, -1))
    a = MiniBatchKMeans(4, batch_size=300, random_state=1).fit(Xd)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):  # fmt: skip
        b = MiniBatchKMeans(4, batch_size=300, random_state=1).fit(Xd)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_save_load_round_trip(tmp_path):
    X, _, _ = blobs(n=2000, d=3, k=3, seed=2)
    mbk = MiniBatchKMeans(3, random_state=0).fit(X)
    save(mbk, tmp_path / "m")
    back = load(tmp_path / "m")
    assert isinstance(back, MiniBatchKMeans)
    np.testing.assert_array_equal(back.predict(X), mbk.predict(X))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MiniBatchKMeans(5).partial_fit(np.zeros((3, 2))), "at least n_clusters=5"),
        (lambda: MiniBatchKMeans(2, batch_size=0).fit(np.zeros((9, 2))), "batch_size=0"),
        (lambda: MiniBatchKMeans(2).partial_fit(np.full((9, 2), np.nan)), "NaN or infinity"),
        (lambda: MiniBatchKMeans(2).partial_fit(np.eye(9)[:, :2]).partial_fit(np.ones((9, 3))),
         "X has 3 features"),
    ],
)  # fmt: skip
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
