"""select_k: the lockstep sweep, its table, and KMeans(n_clusters="auto")."""

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.base import clone

from dkmeans import KMeans, load, select_k
from dkmeans import metrics as M
from dkmeans._engine import selection
from dkmeans._engine.cluster_stats import RowSample
from dkmeans.model_selection import STABILITY_THRESHOLD, KConfidence, kneedle

from ._reference import sq_dists
from .conftest import blobs, close_pair, counting_array


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


# --------------------------------------------------------------------------- k confidence


def _knee_by_distance_to_chord(x, y):
    """Brute force: the point farthest below the chord from the first point to the last,
    on both axes scaled to [0, 1] (Kneedle's difference curve, geometrically)."""
    x = (np.asarray(x, float) - x[0]) / (x[-1] - x[0])
    y = (np.asarray(y, float) - min(y)) / (max(y) - min(y))
    p0, p1 = np.array([x[0], y[0]]), np.array([x[-1], y[-1]])
    best, arg = -np.inf, None
    for i in range(len(x)):
        d = p1 - p0
        v = np.array([x[i], y[i]]) - p0
        below = d[1] * v[0] - d[0] * v[1]  # cross product: > 0 below the chord
        if below / np.hypot(*d) > best + 1e-12:
            best, arg = below / np.hypot(*d), i
    return arg


def test_kneedle_on_a_hand_made_curve():
    ks = list(range(1, 11))
    inertia = [100, 60, 35, 20, 18, 16.5, 15, 14, 13.2, 12.5]  # the elbow planted at 4
    assert kneedle(ks, inertia) == ks[_knee_by_distance_to_chord(ks, inertia)] == 4
    assert kneedle([2, 3, 5, 9], [90, 80, 20, 10]) == 5  # uneven ks count as distances
    assert kneedle([2, 3], [10, 5]) is None  # no knee between two points
    assert kneedle([2, 3, 4], [7, 7, 7]) is None  # flat
    assert kneedle([2, 3, 4, 5], [100, np.nan, 20, 15]) == 4  # NaN points left out


@given(
    st.lists(st.integers(1, 10_000), min_size=3, max_size=12, unique=True),
    st.integers(-20, 20),
    st.integers(-1000, 1000),
)
def test_kneedle_is_invariant_to_the_scale_and_offset_of_inertia(values, power, offset):
    y = np.sort(np.asarray(values, float))[::-1]  # a decreasing curve
    ks = list(range(2, 2 + y.shape[0]))
    knee = kneedle(ks, y)
    assert knee in ks
    assert knee == ks[_knee_by_distance_to_chord(ks, y)]
    assert kneedle(ks, y * 2.0**power) == knee  # exact in floating point
    assert kneedle(ks, y + offset) == knee


def test_close_pair_the_silhouette_prefers_5_the_elbow_6_and_confidence_is_low():
    X, _ = close_pair()
    sel = select_k(X, range(2, 11), n_init=3, random_state=0)
    # scikit-learn's own silhouette of the same partitions also prefers 5
    sk = {k: skm.silhouette_score(X, sq_dists(X, C).argmin(axis=1)) for k, C in sel.centers.items()}
    assert max(sk, key=sk.get) == 5
    inertia = sel.table.set_index("k")["inertia"]
    assert inertia[5] / inertia[6] > 2 and inertia[6] / inertia[7] < 1.3  # then flat
    assert sel.best_k == sel.preferred["silhouette"] == 5
    assert sel.preferred["elbow"] == 6
    conf = sel.confidence
    assert conf.level == "low" and conf.low and {5, 6} <= set(conf.candidates)
    assert conf.candidates == tuple(sorted(set(sel.preferred.values())))
    assert any("elbow prefers 6" in r for r in conf.reasons)
    assert conf.warning.startswith("k choice is uncertain: silhouette")
    said = {int(k): re.split(", | and ", names) for names, k in
            re.findall(r"((?:\w+, )*\w+(?: and \w+)?) prefers? (\d+)", conf.warning)}  # fmt: skip
    assert "silhouette" in said[5] and "elbow" in said[6]
    assert sorted(n for names in said.values() for n in names) == sorted(sel.preferred)
    assert f"{sel.stability:.2f}" in conf.warning
    assert conf.summary().startswith("k confidence: low — silhouette")
    assert select_k(X, range(2, 11), criterion="elbow", n_init=3, random_state=0).best_k == 6


def test_well_separated_blobs_give_high_confidence():
    X, _, _ = blobs(n=2000, d=3, k=4, std=0.3, seed=0)
    sel = select_k(X, range(2, 9), random_state=0)
    assert sel.preferred == dict.fromkeys(selection.CRITERIA, 4)
    assert sel.stability > 0.9
    assert sel.confidence == KConfidence("high", 4, "silhouette", sel.preferred, sel.stability,
                                         (), (4,), None)  # fmt: skip
    assert sel.confidence.summary() == f"k confidence: high; stability {sel.stability:.2f}"


def test_confidence_is_low_when_the_chosen_k_is_unstable():
    agree = dict.fromkeys(selection.CRITERIA, 4)
    below = selection.assess(4, "silhouette", agree, STABILITY_THRESHOLD - 0.01)
    assert below.low and below.reasons == (f"stability 0.79 is below {STABILITY_THRESHOLD}",)
    assert not selection.assess(4, "silhouette", agree, STABILITY_THRESHOLD).low
    assert not selection.assess(4, "silhouette", agree, math.nan).low  # not measured
    # most of the other criteria against the chosen k, the elbow with it
    split = {**agree, "davies_bouldin": 5, "calinski_harabasz": 5, "stratified_silhouette": 6}
    assert selection.assess(4, "silhouette", split, 1.0).low
    assert not selection.assess(4, "silhouette", {**agree, "davies_bouldin": 5}, 1.0).low


@pytest.mark.parametrize("fit_sample", [None, 1500])
def test_stability_reads_no_extra_data_pass(zarr_blobs, monkeypatch, fit_sample):
    path, _, _ = zarr_blobs

    def sweep():
        arr, store = counting_array(path)
        sel = select_k(arr, range(2, 7), persist=False, fit_sample=fit_sample, random_state=0)
        return sel, store.chunk_reads

    sel, reads = sweep()
    assert 0.9 < sel.stability <= 1.0
    monkeypatch.setattr(selection, "_stability", lambda *args: math.nan)  # as before it
    without, reads_without = sweep()
    assert math.isnan(without.stability)
    assert sel.n_passes == without.n_passes and reads == reads_without


def test_stability_is_deterministic():
    X, _ = close_pair()
    a = select_k(X, range(4, 8), random_state=3)
    b = select_k(X, range(4, 8), random_state=3)
    assert a.stability == b.stability and a.confidence == b.confidence
    rows = RowSample(np.zeros(9), X[:9], None, np.arange(9), None)  # halves of 4 rows
    assert math.isnan(selection._stability(rows, 4, np.random.default_rng(0), KMeans))


def _stratified_reference(X, labels, keys, per_cluster):
    """scikit-learn's silhouette_samples on each cluster's rows of smallest key,
    macro-averaged by cluster."""
    rows = np.concatenate([
        np.flatnonzero(labels == c)[np.argsort(keys[labels == c])[:per_cluster]]
        for c in np.unique(labels)
    ])  # fmt: skip
    s = skm.silhouette_samples(X[rows], labels[rows])
    return np.mean([s[labels[rows] == c].mean() for c in np.unique(labels)])


def test_stratified_silhouette_matches_sklearn_on_the_same_rows():
    X, _, _ = blobs(n=900, d=3, k=4, std=1.5, seed=4)
    keys = np.random.default_rng(1).random(X.shape[0])
    ks = [2, 3, 5]
    labelings = [KMeans(k, random_state=0).fit(X).labels_ for k in ks]
    sample = RowSample(keys, X, None, np.arange(X.shape[0]), None)
    uniform, stratified = selection._silhouettes(sample, labelings, ks)
    for k, labels, u, s in zip(ks, labelings, uniform, stratified, strict=True):
        assert u == pytest.approx(skm.silhouette_score(X, labels), rel=1e-9)
        assert s == pytest.approx(_stratified_reference(X, labels, keys, 900 // k), rel=1e-9)
    # equal clusters, all in the sample: every row is kept, so the table's value is
    # the macro average of the exact silhouettes
    y = np.repeat(np.arange(3), 200)
    Xe = np.array([[0.0, 0], [9, 0], [0, 9]])[y] + np.random.default_rng(2).normal(size=(600, 2))
    sel = select_k(Xe, [3, 4], sample_size=600, random_state=0)
    labels = sq_dists(Xe, sel.centers[3]).argmin(axis=1)
    assert np.bincount(labels).tolist() == [200, 200, 200]
    s = skm.silhouette_samples(Xe, labels)
    expected = np.mean([s[labels == c].mean() for c in range(3)])
    assert sel.table.set_index("k").loc[3, "stratified_silhouette"] == pytest.approx(expected)


def test_stratified_silhouette_weighs_a_small_cluster_like_a_large_one():
    """Three overlapping large clusters and one small, tight, far one (the best
    separated): the uniform mean hardly sees it, the stratified one weighs it 1/4."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [600, 600, 600, 30])
    spread = np.array([1.0, 1.0, 1.0, 0.3])[y][:, None]
    X = np.array([[0, 0], [6, 0], [3, 5.2], [30, 30]])[y] + spread * rng.normal(size=(1830, 2))
    sel = select_k(X, range(2, 7), sample_size=5000, n_init=3, random_state=0)
    labels = sq_dists(X, sel.centers[4]).argmin(axis=1)
    assert skm.adjusted_rand_score(y, labels) > 0.99  # the small cluster is found
    s = skm.silhouette_samples(X, labels)
    per_cluster = np.array([s[labels == c].mean() for c in range(4)])
    small = np.bincount(labels).argmin()
    assert per_cluster[small] > np.delete(per_cluster, small).max() + 0.2  # planted
    row = sel.table.set_index("k").loc[4]
    assert row.silhouette == pytest.approx(s.mean(), rel=1e-9)
    assert row.stratified_silhouette > row.silhouette + 0.05  # the expected direction
    assert row.stratified_silhouette == pytest.approx(per_cluster.mean(), abs=0.01)


def test_k_confidence_survives_save_and_load(tmp_path):
    X, _ = close_pair()
    km = KMeans("auto", k_range=range(2, 11), n_init=3, random_state=0).fit(X)
    km.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.k_confidence_ == km.k_selection_.confidence
    assert loaded.k_confidence_.low and loaded.k_confidence_.preferred["elbow"] == 6
    assert list(loaded.k_table_.columns) == list(km.k_selection_.table.columns)
    nan = KConfidence("high", 3, "elbow")  # NaN stability goes through JSON as null
    assert math.isnan(KConfidence.from_dict(nan.to_dict()).stability)


def test_elbow_needs_three_ks():
    X, _, _ = blobs(n=100, d=2, k=3)
    with pytest.raises(ValueError, match="at least 3 ks"):
        select_k(X, [2, 3], criterion="elbow")
