"""What changed since the last run: compare_archetypes against NumPy, the label churn
counted in the final pass, and the planted retrains of notebooks/retrains.ipynb."""

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr
from dkmeans.datasets import COMMUNITY_ARCHETYPES, COMMUNITY_FEATURES, write_communities
from dkmeans.pipeline import Job, run
from sklearn.pipeline import Pipeline

import dkmeans
from dkmeans import (
    Archetypes,
    KMeans,
    LabelChurn,
    compare_archetypes,
    label_and_profile,
    profile_clusters,
)
from dkmeans._engine import summary as SM
from dkmeans.exceptions import InputError, InputTypeError

from .conftest import blobs, counting_array

FEATURES = [f[0] for f in COMMUNITY_FEATURES]

# The notebook's scenario: casual_chat's engagement drifts up, then pop-up events appear.
DRIFTER, DRIFT_FEATURE, DRIFT = "casual_chat", "engagement_rate", 0.7
EMERGING = {"pop_up_events": ((3.0, 10.5, -0.8, 0.25, 2.2, 0.5, -1.0, 0.6, 2.8, 3.0), 0.12)}
SCORE = {"retention_30d": 1.0, "engagement_rate": 1.0, "churn_rate": -1.0}


def drifted():
    means, share = COMMUNITY_ARCHETYPES[DRIFTER]
    moved = list(means)
    moved[FEATURES.index(DRIFT_FEATURE)] += DRIFT
    return {**COMMUNITY_ARCHETYPES, DRIFTER: (tuple(moved), share)}


# --------------------------------------------------------------------------- by hand


def _profile(X, labels, ids, score=None):
    return profile_clusters(X, labels, n_clusters=len(ids), cluster_ids=ids,
                            feature_names=["a", "b"], score=score)  # fmt: skip


def test_compare_archetypes_matches_numpy_on_hand_made_profiles():
    rng = np.random.default_rng(0)
    X0 = rng.normal(size=(300, 2)) * [1.0, 10.0]
    lab0 = np.repeat([0, 1, 2], [100, 150, 50])
    X1 = X0 + np.where(lab0[:, None] == 0, [0.5, -4.0], 0.0)  # cluster 0 moves
    lab1 = np.where(lab0 == 1, 3, lab0)  # 1 vanishes, 3 is new
    then = _profile(X0, lab0, [0, 1, 2], score="a")
    now = _profile(X1, lab1, [0, 2, 3], score="a")
    ch = compare_archetypes(now, then)
    assert ch.new == [3] and ch.vanished == [1] and ch.kept == [0, 2]
    t = ch.table
    assert t.index.tolist() == [0, 1, 2, 3]
    np.testing.assert_array_equal(t["size_then"], [100, 150, 50, 0])
    np.testing.assert_array_equal(t["size_now"], [100, 0, 50, 150])
    np.testing.assert_allclose(t["share_now"], np.array([100, 0, 50, 150]) / 300)
    # moves in units and in the reference's global std, as NumPy has them
    shift0 = X1[lab1 == 0].mean(axis=0) - X0[lab0 == 0].mean(axis=0)
    np.testing.assert_allclose(ch.shift.loc[0], shift0, rtol=1e-12)
    np.testing.assert_allclose(ch.shift_sd.loc[0], shift0 / X0.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(ch.shift.loc[2], 0.0, atol=1e-12)
    assert ch.shift.loc[[1, 3]].isna().all().all()
    assert t.loc[0, "distance_sd"] == pytest.approx(np.linalg.norm(shift0 / X0.std(axis=0)))
    assert t.loc[0, "largest_move"].startswith("a +0.50sd")  # b moved -4 units: -0.4sd
    # ranks by the score ("a": the mean of a), largest first
    means_then = pd.Series({c: X0[lab0 == c, 0].mean() for c in [0, 1, 2]})
    means_now = pd.Series({c: X1[lab1 == c, 0].mean() for c in [0, 2, 3]})
    ranks_then = means_then.rank(ascending=False).astype(int)
    ranks_now = means_now.rank(ascending=False).astype(int)
    for c in (0, 2):
        assert t.loc[c, "rank_change"] == ranks_now[c] - ranks_then[c]
    assert np.isnan(t.loc[3, "rank_then"]) and np.isnan(t.loc[1, "rank_now"])
    assert ch.churn is None and np.isnan(ch.churn_rate)
    assert "not measured" in ch.short()
    assert "new: 3 (50.0% of records)" in ch.short()
    assert "vanished: 1 (50.0% of records)" in ch.short()


def test_report_files_and_forms(tmp_path):
    X = np.array([[0.0, 1.0], [0.2, 1.0], [5.0, 3.0], [5.2, 3.0]])
    then = _profile(X, [0, 0, 1, 1], [0, 1])
    now = _profile(X + np.array([1.0, 0.0]), [0, 0, 1, 1], [0, 1])
    churn = LabelChurn(4, 1, 0, pd.DataFrame([[2, 0], [1, 1]], index=[0, 1], columns=[0, 1]))
    ch = compare_archetypes(now, then, churn=churn)
    assert ch.churn_rate == 0.25
    assert ch.churn.flows().to_dict("records") == [
        {"previous": 1, "now": 0, "records": 1, "share": 0.25}]  # fmt: skip
    np.testing.assert_array_equal(ch.table["records_kept"], [2, 1])
    np.testing.assert_array_equal(ch.table["records_left"], [0, 1])
    np.testing.assert_array_equal(ch.table["records_joined"], [1, 0])
    md = ch.to_markdown()
    assert md.startswith("# What changed since the last run")
    assert "label churn 25.00%: 1 of 4 records changed archetype" in md
    assert "## Where the changed records went" in md
    ch.to_csv(tmp_path / "changes.csv")
    back = pd.read_csv(tmp_path / "changes.csv", index_col=0)
    assert {"status", "rank_change", "a_shift", "a_shift_sd"} <= set(back.columns)
    np.testing.assert_allclose(back["a_shift"], 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["changes.csv"]  # no temporary left


def test_a_reference_model_without_a_profile_compares_what_it_has():
    X, _, _ = blobs(n=900, d=3, k=3, std=0.5, seed=1)
    scaler = dkmeans.StandardScaler().fit(X)
    ref = Pipeline([("scale", scaler),
                    ("kmeans", KMeans(3, random_state=0).fit(scaler.transform(X)))])  # fmt: skip
    moved = KMeans(3, random_state=1).fit(scaler.transform(X + 1.0))
    model = Pipeline([("scale", scaler), ("kmeans", moved)])
    dkmeans.align_labels(model, ref)
    now = label_and_profile(X + 1.0, model).archetypes
    ch = compare_archetypes(now, ref, model=model)
    assert ch.table["rank_then"].isna().all()  # no ranks saved
    np.testing.assert_array_equal(ch.table["size_then"], ref[-1].cluster_sizes_)
    np.testing.assert_allclose(ch.shift, 1.0, atol=0.05)  # model centres against model centres
    np.testing.assert_allclose(ch.shift_sd, np.tile(1.0 / scaler.scale_, (3, 1)), rtol=0.05)
    assert ch.std_source == "the reference's StandardScaler scale_"
    assert any("no archetype profile" in n for n in ch.notes)
    assert "rank changes" not in ch.short()
    del ref[-1].cluster_sizes_
    bare = compare_archetypes(now, ref)  # neither sizes nor this run's model
    assert bare.table["size_then"].isna().all()
    assert any("no cluster sizes" in n for n in bare.notes)
    assert any("pass model=" in n for n in bare.notes)


def test_compare_archetypes_refuses_what_it_cannot_compare():
    X = np.array([[0.0, 1.0], [5.0, 3.0]])
    then = _profile(X, [0, 1], [0, 1])
    other = profile_clusters(X, [0, 1], feature_names=["a", "c"])
    with pytest.raises(InputError, match="same features"):
        compare_archetypes(other, then)
    with pytest.raises(InputTypeError, match="Archetypes or its fitted model"):
        compare_archetypes(then, "model-dir")
    with pytest.raises(InputTypeError, match="this run's Archetypes"):
        compare_archetypes(X, then)


def test_archetypes_round_trip_through_json():
    X = np.array([[0.0, 1.0], [0.4, 1.0], [5.0, 3.0], [5.2, 0.0]])
    arch = _profile(X, [0, 0, 7, 7], [0, 7], score={"a": 1.0})
    back = Archetypes.from_dict(json.loads(json.dumps(arch.to_dict())))
    pd.testing.assert_frame_equal(back.table, arch.table, check_dtype=False)
    pd.testing.assert_frame_equal(back.z, arch.z)
    assert arch.to_dict()["rank"] == [2, 1]
    with pytest.raises(InputError, match=r"Archetypes\.to_dict"):
        Archetypes.from_dict({"clusters": [0]})


# --------------------------------------------------------------------------- the final pass


def test_label_counts_kernel_matches_numpy():
    rng = np.random.default_rng(2)
    previous = rng.integers(-1, 9, size=1000)
    labels = rng.integers(0, 4, size=1000)
    ids = np.array([2, 3, 5, 11])
    parts = [SM.label_counts_chunk(previous[i : i + 90], labels[i : i + 90], ids, 4)
             for i in range(0, 1000, 90)]  # fmt: skip
    got = SM.combine_label_counts(parts)
    known = previous >= 0
    assert got.changed == int(np.sum(previous[known] != ids[labels][known]))
    assert got.unlabelled == int(np.sum(~known))
    expected = np.zeros((9, 4), dtype=np.int64)
    np.add.at(expected, (previous[known], labels[known]), 1)
    np.testing.assert_array_equal(got.transitions, expected)


@pytest.mark.parametrize("chunks", [500, 1000])
def test_churn_rides_along_the_one_read_of_the_records(tmp_path, chunks):
    X, _, _ = blobs(n=8000, d=4, k=4, std=1.5, seed=4, dtype=np.float32)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("features", data=X, chunks=(1000, 4))
    km = KMeans(4, random_state=0).fit(X)
    rng = np.random.default_rng(0)
    old = np.asarray(km.predict(X)).astype(np.int32)
    flip = rng.random(8000) < 0.1
    old[flip] = rng.integers(0, 4, size=int(flip.sum()))
    old[:30] = -1  # unlabelled before (a labels array's fill)
    prev = zarr.open_group(str(tmp_path / "l.zarr"), mode="w")
    prev.create_array("cluster", data=old, chunks=(chunks,))
    arr, store = counting_array(tmp_path / "g.zarr" / "features")
    result = label_and_profile(da.from_zarr(arr), km, previous_labels=prev["cluster"])
    assert store.chunk_reads == 8  # the records read once: the churn costs no extra read
    new = np.asarray(km.predict(X))
    churn = result.churn
    labelled = old >= 0
    assert churn.n_changed == int(np.sum(old[labelled] != new[labelled]))
    assert churn.n_unlabelled_before == 30
    assert churn.rate == pytest.approx(np.mean(old[labelled] != new[labelled]))
    naive = pd.crosstab(old[labelled], new[labelled])
    np.testing.assert_array_equal(churn.transitions.to_numpy(), naive.to_numpy())
    # a NumPy array and a path give the same counts
    again = label_and_profile(X, km, previous_labels=str(tmp_path / "l.zarr" / "cluster"))
    pd.testing.assert_frame_equal(again.churn.transitions, churn.transitions)
    assert label_and_profile(X, km, previous_labels=old).churn.n_changed == churn.n_changed


def test_previous_labels_must_be_the_records_labels():
    X, _, _ = blobs(n=300, d=2, k=2, seed=0)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(InputError, match=r"shape \(299,\) but the records have 300 rows"):
        label_and_profile(X, km, previous_labels=np.zeros(299, dtype=np.int32))
    with pytest.raises(InputTypeError, match="integer cluster IDs"):
        label_and_profile(X, km, previous_labels=np.zeros(300))
    with pytest.raises(InputError, match="hold the ID 100000"):
        label_and_profile(X, km, previous_labels=np.full(300, 100_000))


# --------------------------------------------------------------------------- planted retrains


@pytest.fixture(scope="module")
def retrains(tmp_path_factory):
    """The notebook's three weeks on small stores: week 2 drifts, week 3 gains an
    archetype; the labels go to one labels store that every week replaces."""
    w = tmp_path_factory.mktemp("retrains")
    stores = [
        write_communities(w / "w1.zarr", 6000, chunks=1000, random_state=3),
        write_communities(w / "w2.zarr", 6000, chunks=1000, random_state=3,
                          archetypes=drifted()),
        write_communities(w / "w3.zarr", 6000, chunks=1000, random_state=3,
                          archetypes=drifted(), emerging=EMERGING),
    ]  # fmt: skip
    labels = w / "labels.zarr"
    out = {"stores": stores, "labels": [], "results": [], "dir": w}
    for week, (store, k) in enumerate(zip(stores, [5, 5, 6], strict=True), start=1):
        job = Job(store=str(store), k=k, labels_out=f"{labels}:cluster", overwrite=True,
                  model_out=str(w / f"m{week}"), score=SCORE, profile_out=str(w / f"p{week}"),
                  align_to=None if week == 1 else str(w / f"m{week - 1}"))  # fmt: skip
        out["results"].append(run(job))
        out["labels"].append(zarr.open_array(str(labels / "cluster"), mode="r")[:])
    return out


def _planted(store):
    return zarr.open_array(str(store / "archetype"), mode="r")[:]


def _majority(found, planted, j):
    return int(np.bincount(found[planted == j]).argmax())


def test_the_report_finds_the_drifting_archetype(retrains):
    first, second = retrains["results"][:2]
    ch = second.changes
    assert ch.new == [] and ch.vanished == []
    planted = _planted(retrains["stores"][0])
    drifter = _majority(retrains["labels"][0], planted, list(COMMUNITY_ARCHETYPES).index(DRIFTER))
    assert ch.largest_moves(1).index[0] == drifter
    assert ch.shift_sd.loc[drifter].abs().idxmax() == DRIFT_FEATURE
    # the move, against NumPy on the planted rows of the two weeks' records
    j = list(COMMUNITY_ARCHETYPES).index(DRIFTER)
    x1 = zarr.open_array(str(retrains["stores"][0] / "features"), mode="r")[:].astype(np.float64)
    x2 = zarr.open_array(str(retrains["stores"][1] / "features"), mode="r")[:].astype(np.float64)
    col = FEATURES.index(DRIFT_FEATURE)
    expected = x2[planted == j, col].mean() - x1[planted == j, col].mean()
    assert expected > 1.0
    assert ch.shift.loc[drifter, DRIFT_FEATURE] == pytest.approx(expected, rel=0.1)
    assert ch.shift_sd.loc[drifter, DRIFT_FEATURE] == pytest.approx(
        expected / x1[:, col].std(), rel=0.1)  # fmt: skip
    # exactly this run's means minus the reference's
    np.testing.assert_allclose(ch.shift, second.archetypes.means - first.archetypes.means,
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    others = ch.table.drop(index=drifter)
    assert (others["distance_sd"] < 0.1).all()
    np.testing.assert_array_equal(ch.table["size_then"], first.archetypes.sizes)
    np.testing.assert_array_equal(ch.table["size_now"], second.archetypes.sizes)


def test_the_report_finds_the_new_archetype(retrains):
    third = retrains["results"][2]
    ch = third.changes
    assert ch.vanished == []
    assert len(ch.new) == 1 and ch.new[0] > 4  # above the reference's IDs
    planted_share = np.mean(_planted(retrains["stores"][2]) == len(COMMUNITY_ARCHETYPES))
    assert ch.table.loc[ch.new[0], "share_now"] == pytest.approx(planted_share, abs=0.01)
    assert ch.table.loc[ch.new[0], "size_then"] == 0
    assert np.isnan(ch.table.loc[ch.new[0], "distance_sd"])
    assert "new: " + str(ch.new[0]) in ch.short()


@pytest.mark.parametrize("week", [2, 3])
def test_churn_matches_the_two_labels_arrays(retrains, week):
    before, after = retrains["labels"][week - 2], retrains["labels"][week - 1]
    churn = retrains["results"][week - 1].changes.churn
    assert churn.rate == pytest.approx(np.mean(before != after), abs=0)
    assert churn.n_changed == int(np.sum(before != after))
    np.testing.assert_array_equal(churn.transitions.to_numpy(),
                                  pd.crosstab(before, after).to_numpy())  # fmt: skip


@pytest.mark.parametrize("week", [2, 3])
def test_rank_changes_match_the_archetype_tables(retrains, week):
    read = lambda w: pd.read_csv(retrains["dir"] / f"p{w}" / "archetypes.csv", index_col=0)  # noqa: E731
    then, now = read(week - 1), read(week)
    table = retrains["results"][week - 1].changes.table
    for c in now.index.intersection(then.index):
        assert table.loc[c, "rank_change"] == now.loc[c, "rank"] - then.loc[c, "rank"]
        assert table.loc[c, "rank_then"] == then.loc[c, "rank"]


def test_the_job_writes_the_report_and_saves_the_profile(retrains):
    w, third = retrains["dir"], retrains["results"][2]
    assert sorted(p.name for p in (w / "p3").iterdir()) == [
        "archetypes.csv", "archetypes.md", "changes.csv", "changes.md"]  # fmt: skip
    assert third.profile_paths[-2:] == [str(w / "p3" / "changes.csv"), str(w / "p3" / "changes.md")]
    assert (w / "p3" / "changes.md").read_text() == third.changes.to_markdown()
    assert not (w / "p1" / "changes.md").exists()  # the first week has no reference
    assert retrains["results"][0].changes is None
    saved = dkmeans.load(w / "m3")[-1].metadata_["archetypes"]
    pd.testing.assert_frame_equal(Archetypes.from_dict(saved).table, third.archetypes.table,
                                  check_dtype=False)  # fmt: skip


def test_a_vanished_archetype_and_no_previous_labels(retrains, tmp_path):
    names = list(COMMUNITY_ARCHETYPES)
    gone = "spam_farm"
    store = write_communities(tmp_path / "v.zarr", 6000, chunks=1000, random_state=3,
                              archetypes={n: v for n, v in COMMUNITY_ARCHETYPES.items()
                                          if n != gone})  # fmt: skip
    result = run(Job(store=str(store), k=4, score=SCORE, align_to=str(retrains["dir"] / "m1"),
                     labels_out=f"{tmp_path / 'fresh.zarr'}:cluster"))  # fmt: skip
    ch = result.changes
    planted = _planted(retrains["stores"][0])
    assert ch.vanished == [_majority(retrains["labels"][0], planted, names.index(gone))]
    assert ch.new == []
    assert ch.table.loc[ch.vanished[0], "size_now"] == 0
    assert ch.churn is None
    assert any("no previous labels" in n for n in ch.notes)
    assert "label churn: not measured" in ch.short()
