"""MiniBatchKMeans: partial_fit over a stream of chunks, fit over a store."""

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from dkmeans import KMeans, MiniBatchKMeans, load, save
from dkmeans._engine import reductions as R

from ._device import device, on_device  # noqa: F401  (device is a fixture)
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
        (lambda: MiniBatchKMeans(5).partial_fit(np.zeros((3, 2))), "n_clusters=5 is larger"),
        (lambda: MiniBatchKMeans(5).partial_fit(da.zeros((9, 2), chunks=3)),
         "first block of the chunk has 3 rows"),
        (lambda: MiniBatchKMeans(2, batch_size=0).fit(np.zeros((9, 2))), "batch_size=0"),
        (lambda: MiniBatchKMeans(2).partial_fit(np.full((9, 2), np.nan)), "NaN or infinity"),
        (lambda: MiniBatchKMeans(2).partial_fit(np.eye(9)[:, :2]).partial_fit(np.ones((9, 3))),
         "X has 3 features"),
    ],
)  # fmt: skip
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_too_small_first_block_is_not_enough_data():
    from dkmeans.exceptions import NotEnoughDataError

    with pytest.raises(NotEnoughDataError, match="first block"):
        MiniBatchKMeans(5).partial_fit(da.zeros((9, 2), chunks=3))


# --------------------------------------------------------------------------- scikit-learn's
# parameters: n_init, init_size, max_no_improvement, reassignment_ratio, compute_labels


def _grid_blobs(seed, n=5000):
    """10 well-separated blobs on a 5 x 2 grid and one outlier (row 0, label -1)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[10.0 * (i % 5), 10.0 * (i // 5)] for i in range(10)])
    y = rng.integers(10, size=n)
    X = centers[y] + 0.5 * rng.standard_normal((n, 2))
    X[0], y[0] = [20.0, 30.0], -1
    return X, y, rng


def _outlier_start(X, y, rng):
    """One centre in each of 6 blobs, 4 on the outlier: 4 blobs start without one."""
    blobs_ = rng.choice(10, 6, replace=False)
    init = np.array([X[rng.choice(np.flatnonzero(y == b))] for b in blobs_])
    return np.r_[init, np.repeat(X[:1], 4, axis=0)]


@pytest.mark.parametrize("ratio", [0.01, 0.0])
def test_reassignment_moves_centres_that_attract_nothing(ratio):
    """scikit-learn's scenario: a bad start leaves centres on an outlier; reassignment
    moves them into the blobs without a centre (without it, 3 stay unused)."""
    for seed in range(3):
        X, y, rng = _grid_blobs(seed)
        mbk = MiniBatchKMeans(10, init=_outlier_start(X, y, rng), batch_size=256,
                              reassignment_ratio=ratio, random_state=seed)  # fmt: skip
        for _ in range(2):
            for start in range(0, len(X), 1000):
                mbk.partial_fit(X[start : start + 1000])
        used = np.unique(mbk.predict(X)).size
        on_outlier = np.sum(np.abs(mbk.cluster_centers_ - X[0]).max(axis=1) < 1)
        if ratio:
            assert used == 10
            assert on_outlier <= 1
        else:
            assert on_outlier == 4
            assert used == 7  # 6 blob centres, one on the outlier


def test_fit_reassigns_from_its_second_epoch():
    """fit moves the centres a bad start put on the outlier once every block has been
    read (and does not stop before: this seed's first epoch ends with no improvement);
    a fit from k-means|| seeds on a store sorted by cluster keeps its seeds."""
    X, y, rng = _grid_blobs(9)
    init = _outlier_start(X, y, rng)
    fits = {}
    for r in (0.01, 0.0):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fits[r] = MiniBatchKMeans(10, init=init, batch_size=256, random_state=9,
                                      max_iter=4, reassignment_ratio=r).fit(X)  # fmt: skip
        assert [str(w.message)[:32] for w in caught] == (
            ["Number of distinct clusters (7) "] if r == 0 else []
        )
    assert np.unique(fits[0.01].labels_).size == 10
    assert fits[0.01].n_iter_ >= 2
    assert (np.unique(fits[0.0].labels_).size, fits[0.0].n_iter_) == (7, 1)
    assert fits[0.01].inertia_ < 0.5 * fits[0.0].inertia_
    # sorted by cluster: the first batches see 1-2 clusters only
    order = np.argsort(y, kind="stable")
    Xs = da.from_array(X[order], chunks=(500, -1))
    mbk = MiniBatchKMeans(10, batch_size=256, random_state=0).fit(Xs)
    full = KMeans(10, random_state=0).fit(X)
    assert mbk.inertia_ <= 1.02 * full.inertia_


def test_reassignment_step_with_perfect_centres():
    """One batch (scikit-learn's test): reassignment_ratio=1 moves centres off perfect
    positions, a tiny ratio moves none; the moved ones take the smallest kept count."""
    X, y, _ = blobs(n=600, d=3, k=5, std=0.5, seed=4)
    perfect = np.array([X[y == j].mean(axis=0) for j in range(5)])
    tiny = MiniBatchKMeans(5, init=perfect, batch_size=600, reassignment_ratio=1e-15,
                           random_state=0).partial_fit(X)  # fmt: skip
    np.testing.assert_allclose(tiny.cluster_centers_, perfect, atol=1e-12)
    big = MiniBatchKMeans(5, init=perfect, batch_size=600, reassignment_ratio=1.0,
                          random_state=0).partial_fit(X)  # fmt: skip
    assert big.inertia_ > 1.2 * tiny.inertia_
    sizes = np.bincount(y, minlength=5)
    moved = sizes < sizes.max()
    np.testing.assert_array_equal(big.counts_[moved], sizes.max())
    np.testing.assert_array_equal(big.counts_[~moved], sizes[~moved])


def test_many_reassignments_take_at_most_half_a_batch():
    X, _, _ = blobs(n=400, d=2, k=4, seed=5)
    mbk = MiniBatchKMeans(100, batch_size=10, init_size=400, random_state=0, max_iter=2)
    mbk.fit(X)  # more centres to reassign than a batch has rows (scikit-learn's test)
    assert mbk.cluster_centers_.shape == (100, 2)
    assert np.isfinite(mbk.cluster_centers_).all()


def test_labels_after_partial_fit_are_those_of_the_last_chunk():
    X, _, _ = blobs(n=3000, d=3, k=4, seed=6)
    mbk = MiniBatchKMeans(4, batch_size=200, random_state=0)
    mbk.partial_fit(X[:1000]).partial_fit(X[1000:2000])
    np.testing.assert_array_equal(mbk.labels_, mbk.predict(X[1000:2000]))
    assert mbk.inertia_ == pytest.approx(-mbk.score(X[1000:2000]), rel=1e-9)
    chunk = da.from_array(X[2000:], chunks=300)
    mbk.partial_fit(chunk)
    np.testing.assert_array_equal(np.asarray(mbk.labels_), mbk.predict(X[2000:]))
    off = MiniBatchKMeans(4, batch_size=200, compute_labels=False, random_state=0)
    off.partial_fit(X[:1000])
    assert not hasattr(off, "labels_") and not hasattr(off, "inertia_")
    np.testing.assert_array_equal(off.cluster_centers_, clone(off).partial_fit(X[:1000])
                                  .cluster_centers_)  # fmt: skip


def test_max_no_improvement_stops_early_and_none_disables_it():
    X, _, _ = blobs(n=4000, d=3, k=4, std=1.0, seed=7)
    X = da.from_array(X, chunks=(1000, -1))
    per_epoch = 4000 // 100
    early = MiniBatchKMeans(4, batch_size=100, max_iter=20, tol=0, random_state=0).fit(X)
    assert per_epoch <= early.n_steps_ < 20 * per_epoch  # never before an epoch's end
    assert early.n_iter_ == -(-early.n_steps_ // per_epoch)  # epochs begun (sklearn: ceil)
    full = MiniBatchKMeans(4, batch_size=100, max_iter=20, tol=0, max_no_improvement=None,
                           random_state=0).fit(X)  # fmt: skip
    assert (full.n_iter_, full.n_steps_) == (20, 20 * per_epoch)
    assert early.inertia_ <= 1.01 * full.inertia_
    # without the label pass, inertia_ is the smoothed batch inertia times the weight
    quick = clone(early).set_params(compute_labels=False).fit(X)
    assert not hasattr(quick, "labels_")
    assert quick.inertia_ == pytest.approx(early.inertia_, rel=0.2)


def test_inertia_close_to_scikit_learn():
    from sklearn.cluster import MiniBatchKMeans as SkMiniBatchKMeans

    X, _, _ = blobs(n=20_000, d=5, k=8, std=1.5, seed=9)
    ours = [MiniBatchKMeans(8, batch_size=1024, random_state=s).fit(X).inertia_
            for s in range(2)]  # fmt: skip
    sk = [SkMiniBatchKMeans(8, batch_size=1024, random_state=s).fit(X).inertia_
          for s in range(2)]  # fmt: skip
    assert max(ours) <= 1.03 * min(sk)


def test_n_init_and_init_size(monkeypatch):
    X, _, _ = blobs(n=3000, d=3, k=4, seed=10)
    seen = []
    seed_on_rows = MiniBatchKMeans._seed_on_rows

    def spy(self, rows, w, init, rng):
        seen.append((rows.shape[0], init))
        return seed_on_rows(self, rows, w, init, rng)

    monkeypatch.setattr(MiniBatchKMeans, "_seed_on_rows", spy)
    MiniBatchKMeans(4, init="random", batch_size=100, random_state=0).fit(X)
    assert seen == [(300, "random")] * 3  # "auto": 3 for random, on 3 * batch_size rows
    seen.clear()
    MiniBatchKMeans(4, init="k-means++", batch_size=100, random_state=0).partial_fit(X)
    assert seen == [(300, "k-means++")]  # "auto": 1 otherwise
    seen.clear()
    MiniBatchKMeans(4, n_init=2, init_size=5000, random_state=0).partial_fit(X[:700])
    assert seen == [(700, "k-means||")] * 2  # at most the rows of the first block
    seen.clear()
    MiniBatchKMeans(4, n_init=2, random_state=0).fit(X)  # k-means|| over the store
    assert seen == []
    with pytest.warns(RuntimeWarning, match="init_size=2 should be larger"):
        MiniBatchKMeans(4, init_size=2, random_state=0).partial_fit(X)
    assert seen[-1] == (12, "k-means||")
    with pytest.warns(RuntimeWarning, match="only one init"):
        MiniBatchKMeans(4, init=X[:4], n_init=3).fit(X)


def test_same_random_state_same_centres_with_reassignment():
    X, y, rng = _grid_blobs(2, n=3000)
    init = _outlier_start(X, y, rng)
    runs = []
    for _ in range(2):
        mbk = MiniBatchKMeans(10, init=init, batch_size=128, random_state=3)
        for start in range(0, len(X), 600):
            mbk.partial_fit(da.from_array(X[start : start + 600], chunks=200))
        runs.append(mbk.cluster_centers_)
    np.testing.assert_array_equal(*runs)


@pytest.mark.parametrize(
    "params",
    [{"n_init": 0}, {"n_init": "many"}, {"init_size": 0}, {"max_no_improvement": -1},
     {"max_no_improvement": 1.5}, {"reassignment_ratio": -0.1},
     {"compute_labels": "yes"}],
)  # fmt: skip
def test_invalid_parameters(params):
    (name,) = params
    with pytest.raises(ValueError, match=f"{name}="):
        MiniBatchKMeans(2, **params).fit(np.eye(9)[:, :2])
    with pytest.raises(ValueError, match=f"{name}="):
        MiniBatchKMeans(2, **params).partial_fit(np.eye(9)[:, :2])


@pytest.mark.usefixtures("device")
def test_reassignment_on_device_blocks_matches_numpy():
    """Reassignment draws on the host; device blocks give NumPy blocks' centres."""
    X, y, rng = _grid_blobs(4, n=2000)
    init = _outlier_start(X, y, rng)
    Xn = da.from_array(X, chunks=(500, -1))
    got, want = (MiniBatchKMeans(10, init=init, batch_size=128, random_state=4)
                 for _ in range(2))  # fmt: skip
    for start in range(0, 2000, 1000):
        want.partial_fit(Xn[start : start + 1000])
        got.partial_fit(on_device(Xn[start : start + 1000]))
    assert np.unique(want.predict(X)).size == 10
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-10)
    np.testing.assert_array_equal(got.labels_.compute(), want.labels_.compute())
    fit_want = MiniBatchKMeans(10, init=init, batch_size=128, random_state=4).fit(Xn)
    fit_got = MiniBatchKMeans(10, init=init, batch_size=128, random_state=4).fit(on_device(Xn))
    np.testing.assert_allclose(fit_got.cluster_centers_, fit_want.cluster_centers_, rtol=1e-10)
