"""select_k: the lockstep sweep, its table, and KMeans(n_clusters="auto")."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.base import clone

from dkmeans import KMeans, select_k
from dkmeans import metrics as M

from ._reference import sq_dists
from .conftest import blobs, counting_array


@pytest.mark.parametrize("true_k", [3, 5, 8])
@pytest.mark.parametrize("criterion", ["silhouette", "davies_bouldin", "calinski_harabasz"])
def test_recovers_the_true_k_of_separated_blobs(true_k, criterion):
    X, _, _ = blobs(n=4000, d=6, k=true_k, std=0.4, seed=true_k)
    sel = select_k(X, range(2, 11), criterion=criterion, random_state=0)
    assert sel.best_k == true_k
    assert sel.best_model.cluster_centers_.shape == (true_k, 6)
    assert list(sel.table["k"]) == list(range(2, 11))


def test_table_agrees_with_sklearn_for_every_k():
    X, _, _ = blobs(n=2000, d=4, k=5, std=1.5, seed=1)
    sel = select_k(X, [2, 4, 5, 7], sample_size=2000, random_state=3)
    for row in sel.table.itertuples():
        C = sel.centers[row.k]
        D = sq_dists(X, C)
        labels = D.argmin(axis=1)
        assert row.inertia == pytest.approx(D.min(axis=1).sum(), rel=1e-9)
        assert row.silhouette == pytest.approx(skm.silhouette_score(X, labels), rel=1e-9)
        assert row.davies_bouldin == pytest.approx(skm.davies_bouldin_score(X, labels), rel=1e-9)
        assert row.calinski_harabasz == pytest.approx(
            skm.calinski_harabasz_score(X, labels), rel=1e-9
        )
        assert row.sqeuclidean_silhouette == pytest.approx(
            M.silhouette_score(X, labels, method="sqeuclidean-exact"), rel=1e-9
        )
        assert row.simplified_silhouette == pytest.approx(
            M.simplified_silhouette_score(X, C), rel=1e-9
        )
    best = sel.best_model
    assert best.inertia_ == pytest.approx(sel.table.set_index("k").loc[sel.best_k, "inertia"])
    np.testing.assert_array_equal(best.labels_, sq_dists(X, best.cluster_centers_).argmin(axis=1))


def test_lockstep_sweep_reads_the_store_about_as_often_as_one_fit(zarr_blobs):
    path, _, _ = zarr_blobs
    arr, store = counting_array(path)
    sel = select_k(arr, range(2, 9), persist=False, random_state=0, fit_sample=None)
    fits = {k: KMeans(k, persist=False, random_state=0, fit_sample=None).fit(str(path))
            for k in range(2, 9)}  # fmt: skip
    # each k of the sweep IS the fit of that k alone
    for k, km in fits.items():
        np.testing.assert_array_equal(sel.centers[k], km.cluster_centers_)
        assert sel.table.set_index("k").loc[k, "iterations"] == km.n_iter_
    np.testing.assert_array_equal(sel.best_model.labels_, fits[sel.best_k].labels_)
    assert sel.best_k == 5
    # seeding, Lloyd and the label pass as long as the longest fit's, plus two scoring passes
    seeding = max(km.n_seeding_passes_ for km in fits.values())
    assert sel.n_passes == seeding + max(km.n_iter_ for km in fits.values()) + 1 + 2
    assert sel.n_passes <= max(km.n_passes_ for km in fits.values()) + 2
    # every pass reads each of the 8 chunks once; the first centres' chunk is fetched once
    assert store.chunk_reads == sel.n_passes * 8 + 1


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_sweep_reproduces_each_fit_with_other_inits(init):
    X, _, _ = blobs(n=1500, d=3, k=4, std=1.0, seed=5)
    sel = select_k(X, range(2, 6), init=init, random_state=7)
    for k in range(2, 6):
        km = KMeans(k, init=init, random_state=7).fit(X)
        np.testing.assert_allclose(sel.centers[k], km.cluster_centers_, rtol=1e-10)


def test_persisted_sweep_reads_once(zarr_blobs):
    path, _, _ = zarr_blobs
    arr, store = counting_array(path)
    select_k(arr, range(2, 6), persist=True, random_state=0)
    assert store.chunk_reads == 8


def test_sweep_on_a_sample_then_fit_chosen_k_on_all_rows():
    X, _, _ = blobs(n=6000, d=5, k=4, std=0.4, seed=7)
    sel = select_k(X, range(2, 8), fit_sample=800, random_state=0)
    assert sel.best_k == 4
    assert sel.best_model.labels_.shape == (6000,)
    assert sel.best_model.n_clusters == 4


def test_kmeans_auto():
    X, _, _ = blobs(n=2000, d=3, k=4, std=0.3, seed=2)
    km = KMeans("auto", k_range=range(2, 7), random_state=0).fit(X)
    assert km.n_clusters_ == 4 and km.cluster_centers_.shape == (4, 3)
    assert km.k_selection_.best_k == 4
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert clone(km).get_params()["k_range"] == range(2, 7)
    fixed = KMeans(4, random_state=0).fit(X)
    assert km.inertia_ == pytest.approx(fixed.inertia_, rel=1e-6)
    best = km.k_selection_.best_model  # its own model of the chosen k, as select_k's
    assert best is not km and best.n_clusters == 4
    np.testing.assert_array_equal(best.cluster_centers_, km.cluster_centers_)
    km.fit(X)  # a refit replaces the selection and leaves nothing stale
    assert km.k_selection_ is not best
    km_fixed = KMeans(4, random_state=0).fit(X)
    km_fixed.k_table_ = "from a loaded model"
    assert not hasattr(km_fixed.fit(X), "k_table_")


def test_deterministic():
    X, _, _ = blobs(n=1500, d=3, k=4, std=1.0, seed=5)
    a = select_k(X, range(2, 7), random_state=4).table
    b = select_k(X, range(2, 7), random_state=4).table
    assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))


def test_plot_returns_a_figure():
    import matplotlib

    matplotlib.use("Agg")
    X, _, _ = blobs(n=500, d=2, k=3, std=0.3, seed=1)
    fig = select_k(X, range(2, 5), random_state=0).plot()
    assert len(fig.axes) == 2


@pytest.mark.parametrize(
    ("k_range", "kwargs", "match"),
    [
        ([], {}, "k_range is empty"),
        (range(1, 4), {}, "at least 2"),
        (range(2, 200), {}, "smaller than the number of samples"),
        (range(2, 4), {"criterion": "gap"}, "criterion"),
        (range(2, 4), {"sample_size": 1}, "sample_size"),
        (range(2, 4), {"fit_sample": 2}, "fit_sample"),
        (range(2, 4), {"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_input(k_range, kwargs, match):
    X, _, _ = blobs(n=100, d=2, k=3)
    with pytest.raises(ValueError, match=match):
        select_k(X, k_range, **kwargs)


@pytest.mark.parametrize("k_range", [["a", "b"], 5])
def test_k_range_that_is_not_ints(k_range):
    X, _, _ = blobs(n=100, d=2, k=3)
    with pytest.raises(TypeError, match="iterable of ints"):
        select_k(X, k_range)
